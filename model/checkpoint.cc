// The checkpoint loader: index and shards, name mapping, shape/dtype checks against the
// table of expected tensors, dequantisation to float (docs/v4-architecture.md §7).
#include "model/checkpoint.h"

#include <sys/resource.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <set>
#include <sstream>

#include "model/checkpoint_names.h"
#include "model/safetensors.h"
#include "reference/errors.h"
#include "reference/formats.h"

namespace dsv4 {

namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

std::string read_text(const fs::path& p, const std::string& what) {
  std::ifstream in(p, std::ios::binary);
  if (!in) throw InputError(what + " '" + p.string() + "' cannot be read");
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

std::string gb(double bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.2f GB", bytes / 1e9);
  return b;
}

bool is_plain_float(DType t) {
  return t == DType::F32 || t == DType::BF16 || t == DType::F16 || t == DType::F64;
}

int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

// One stored tensor (or a slice of a packed one) that supplies an official tensor.
struct Source {
  size_t shard = 0;
  const TensorInfo* t = nullptr;
  bool transformers = false;
  bool packed = false;          // a slice of a packed transformers expert tensor
  int64_t elem_offset = 0;      // packed: first element of the slice
  std::vector<int64_t> shape;   // the slice's (or tensor's) logical shape
};

class Loader {
 public:
  Loader(std::string dir, const LoadOptions& o) : dir_(std::move(dir)), opts_(o) {}

  ModelWeights run(LoadInfo* info);

 private:
  InputError fail(const std::string& what) const { return InputError("checkpoint '" + dir_ + "': " + what); }
  InputError fail(const Source& s, const std::string& official, const std::string& what) const {
    std::string n = "file '" + shards_[s.shard]->path() + "': tensor '" + s.t->name + "'";
    if (s.t->name != official) n += " (official '" + official + "')";
    return fail(n + ": " + what);
  }

  void open_shards();
  void collect_sources(const ModelConfig& c);
  void load_one(const ModelConfig& c, const TensorSpec& spec, ModelWeights& w);
  void decode_plain(const Source& s, const std::string& name, float* out) const;
  std::vector<float> decode_scales(const Source& s, const std::string& name, const std::vector<int64_t>& shape) const;
  void check_finite(const Source& s, const std::string& name, const float* v, int64_t n, int64_t cols) const;
  const Source* take(const std::string& official);

  std::string dir_;
  LoadOptions opts_;
  std::vector<std::shared_ptr<SafetensorsReader>> shards_;
  std::map<std::string, Source> src_;      // official name -> source
  std::set<std::string> used_;             // official names consumed
  std::vector<std::string> unknown_;       // stored names that map to nothing
  std::vector<std::string> notes_;
  int64_t skipped_ = 0;
  bool mapped_ = false;  // an Engram table points into shards_
};

void Loader::open_shards() {
  const fs::path d(dir_);
  const fs::path index = d / "model.safetensors.index.json";
  const fs::path single = d / "model.safetensors";
  std::error_code ec;
  if (!fs::exists(index, ec)) {
    if (!fs::exists(single, ec)) throw fail("has neither model.safetensors.index.json nor model.safetensors");
    shards_.push_back(std::make_shared<SafetensorsReader>(single.string()));
    return;
  }
  const std::string ip = index.string();
  json::value root;
  try {
    root = json::parse(read_text(index, "index"));
  } catch (const InputError&) {
    throw;
  } catch (const std::exception& e) {
    throw fail("index '" + ip + "' is not valid JSON: " + e.what());
  }
  const json::value* wm = root.is_object() ? root.as_object().if_contains("weight_map") : nullptr;
  if (!wm || !wm->is_object()) throw fail("index '" + ip + "' has no 'weight_map' object");
  std::map<std::string, size_t> file_id;
  std::map<std::string, std::string> listed;  // tensor -> file
  for (const auto& kv : wm->as_object()) {
    const std::string tensor(kv.key());
    if (!kv.value().is_string())
      throw fail("index '" + ip + "': weight_map entry of tensor '" + tensor + "' is not a file name");
    const std::string file(kv.value().as_string());
    if (file.empty() || fs::path(file).is_absolute() || file.find("..") != std::string::npos)
      throw fail("index '" + ip + "': tensor '" + tensor + "' names shard '" + file + "' outside the directory");
    if (!file_id.count(file)) {
      const fs::path p = d / file;
      if (!fs::is_regular_file(p, ec))
        throw fail("index '" + ip + "' names shard '" + file + "' (tensor '" + tensor + "'), which does not exist");
      file_id[file] = shards_.size();
      shards_.push_back(std::make_shared<SafetensorsReader>(p.string()));
    }
    listed[tensor] = file;
  }
  if (shards_.empty()) throw fail("index '" + ip + "' lists no tensors");
  for (const auto& [tensor, file] : listed) {
    if (!shards_[file_id[file]]->find(tensor))
      throw fail("index '" + ip + "' maps tensor '" + tensor + "' to shard '" + file + "', which has no such tensor");
  }
  for (const auto& [file, id] : file_id) {
    for (const auto& t : shards_[id]->tensors()) {
      auto it = listed.find(t.name);
      if (it == listed.end())
        throw fail("file '" + shards_[id]->path() + "': tensor '" + t.name + "' is not listed in index '" + ip + "'");
      if (it->second != file)
        throw fail("file '" + shards_[id]->path() + "': tensor '" + t.name + "' is also in shard '" + it->second +
                   "', which the index names");
    }
  }
}

void Loader::collect_sources(const ModelConfig& c) {
  auto add = [&](const std::string& official, Source s) {
    auto [it, fresh] = src_.emplace(official, s);
    if (!fresh) {
      const Source& o = it->second;
      throw fail("tensor '" + s.t->name + "' in file '" + shards_[s.shard]->path() + "' and tensor '" + o.t->name +
                 "' in file '" + shards_[o.shard]->path() + "' are both '" + official + "'");
    }
  };
  for (size_t i = 0; i < shards_.size(); ++i) {
    for (const auto& t : shards_[i]->tensors()) {
      const CanonicalName cn = canonical_name(t.name);
      Source s{i, &t, cn.transformers, false, 0, t.shape};
      switch (cn.kind) {
        case CanonicalName::Kind::unknown: unknown_.push_back(shards_[i]->path() + ": " + t.name); break;
        case CanonicalName::Kind::skip: ++skipped_; break;
        case CanonicalName::Kind::tensor: add(cn.official, s); break;
        case CanonicalName::Kind::packed_gate_up:
        case CanonicalName::Kind::packed_down: {
          const bool up = cn.kind == CanonicalName::Kind::packed_gate_up;
          const int64_t E = c.n_routed_experts, I = c.moe_inter_dim, D = c.dim;
          const std::vector<int64_t> want = up ? std::vector<int64_t>{E, 2 * I, D} : std::vector<int64_t>{E, D, I};
          if (t.shape != want)
            throw fail(s, cn.official, "packed experts: expected shape " + shape_string(want) + ", found " +
                                           shape_string(t.shape));
          if (!is_plain_float(t.dtype))
            throw fail(s, cn.official, "packed experts: expected F32, BF16, F16 or F64, found " +
                                           std::string(dtype_name(t.dtype)));
          s.packed = true;
          for (int64_t e = 0; e < E; ++e) {
            const std::string p = cn.official + "." + std::to_string(e) + ".";
            if (up) {  // [w1; w3] along dim 1 (transformers' Concatenate(dim=1))
              s.shape = {I, D};
              s.elem_offset = e * 2 * I * D;
              add(p + "w1.weight", s);
              s.elem_offset = e * 2 * I * D + I * D;
              add(p + "w3.weight", s);
            } else {
              s.shape = {D, I};
              s.elem_offset = e * D * I;
              add(p + "w2.weight", s);
            }
          }
          break;
        }
      }
    }
  }
}

const Source* Loader::take(const std::string& official) {
  auto it = src_.find(official);
  if (it == src_.end()) return nullptr;
  used_.insert(official);
  return &it->second;
}

void Loader::decode_plain(const Source& s, const std::string&, float* out) const {
  const std::byte* b = shards_[s.shard]->bytes(*s.t).data() + s.elem_offset * int64_t(dtype_size(s.t->dtype));
  int64_t n = 1;
  for (int64_t d : s.shape) n *= d;
  switch (s.t->dtype) {
    case DType::F32: std::memcpy(out, b, size_t(n) * 4); break;
    case DType::F64:
      for (int64_t i = 0; i < n; ++i) {
        double v;
        std::memcpy(&v, b + 8 * i, 8);
        out[i] = float(v);
      }
      break;
    case DType::BF16:
    case DType::F16:
      for (int64_t i = 0; i < n; ++i) {
        uint16_t v;
        std::memcpy(&v, b + 2 * i, 2);
        out[i] = s.t->dtype == DType::BF16 ? fmt::bf16_decode(v) : fmt::f16_decode(v);
      }
      break;
    default: break;
  }
}

std::vector<float> Loader::decode_scales(const Source& s, const std::string& name,
                                         const std::vector<int64_t>& shape) const {
  if (s.t->dtype != DType::F8_E8M0 && s.t->dtype != DType::F32)
    throw fail(s, name, "scale must be F8_E8M0 (or F32), found " + std::string(dtype_name(s.t->dtype)));
  if (s.t->shape != shape)
    throw fail(s, name, "scale must have shape " + shape_string(shape) + ", found " + shape_string(s.t->shape));
  const int64_t n = s.t->numel();
  std::vector<float> v(static_cast<size_t>(n));
  const std::byte* b = shards_[s.shard]->bytes(*s.t).data();
  for (int64_t i = 0; i < n; ++i) {
    if (s.t->dtype == DType::F32) {
      std::memcpy(&v[size_t(i)], b + 4 * i, 4);
    } else {
      v[size_t(i)] = float(fmt::ue8m0_decode(std::to_integer<uint8_t>(b[i])));
    }
    if (!(std::isfinite(v[size_t(i)]) && v[size_t(i)] > 0))
      throw fail(s, name, "scale element [" + std::to_string(i / shape[1]) + ", " + std::to_string(i % shape[1]) +
                              "] is " + std::to_string(v[size_t(i)]) + "; scales must be finite and positive");
  }
  return v;
}

void Loader::check_finite(const Source& s, const std::string& name, const float* v, int64_t n, int64_t cols) const {
  for (int64_t i = 0; i < n; ++i) {
    if (!std::isfinite(v[i])) {
      const std::string where = cols > 0 ? "[" + std::to_string(i / cols) + ", " + std::to_string(i % cols) + "]"
                                         : "[" + std::to_string(i) + "]";
      throw fail(s, name, std::string("element ") + where + " is " + (std::isnan(v[i]) ? "NaN" : "infinite"));
    }
  }
}

void Loader::load_one(const ModelConfig& c, const TensorSpec& spec, ModelWeights& w) {
  const Source* sp = take(spec.name);
  if (!sp) {
    const std::string tf = transformers_name(spec.name);
    throw fail("missing tensor '" + spec.name + "'" + (tf.empty() ? "" : " (transformers: '" + tf + "')") +
               ", expected shape " + shape_string(spec.shape));
  }
  const Source& s = *sp;
  const DType dt = s.t->dtype;
  const std::string& name = spec.name;
  const bool matrix = spec.shape.size() == 2 && name.size() > 7 && name.compare(name.size() - 7, 7, ".weight") == 0;
  const std::string scale_name = matrix ? name.substr(0, name.size() - 7) + ".scale" : "";
  auto shape_error = [&](const std::vector<int64_t>& want) {
    return fail(s, name, "expected shape " + shape_string(want) + ", found " + shape_string(s.shape));
  };

  if (spec.role == TensorRole::index) {
    if (dt != DType::I64 && dt != DType::I32)
      throw fail(s, name, "expected I64 (or I32), found " + std::string(dtype_name(dt)));
    if (s.shape != spec.shape) throw shape_error(spec.shape);
    std::vector<int64_t> v = shards_[s.shard]->read_int(*s.t);
    const int64_t k = spec.shape.size() == 2 ? spec.shape[1] : 1;
    for (size_t i = 0; i < v.size(); ++i) {
      if (v[i] < 0 || v[i] >= spec.index_bound)
        throw fail(s, name, "entry " + (k > 1 ? "[" + std::to_string(int64_t(i) / k) + ", " + std::to_string(int64_t(i) % k) + "]"
                                              : "[" + std::to_string(i) + "]") +
                                " = " + std::to_string(v[i]) + " is outside [0, " + spec.index_bound_name + " = " +
                                std::to_string(spec.index_bound) + ")");
    }
    if (spec.init == InitKind::token_map) {  // surjective onto [0, #canonical ids)
      std::vector<bool> hit(v.size(), false);
      int64_t top = -1;
      for (int64_t x : v) hit[size_t(x)] = true, top = std::max(top, x);
      for (int64_t x = 0; x <= top; ++x)
        if (!hit[size_t(x)])
          throw fail(s, name, "canonical id " + std::to_string(x) + " is never used while " + std::to_string(top) +
                                  " is (the map must be onto [0, number of canonical ids))");
    }
    int64_t dup_rows = 0;
    for (size_t r = 0; r < v.size() / size_t(k); ++r) {
      bool dup = false;
      for (int64_t i = 0; i < k && !dup; ++i)
        for (int64_t j = 0; j < i && !dup; ++j) dup = v[r * size_t(k) + size_t(i)] == v[r * size_t(k) + size_t(j)];
      dup_rows += dup;
    }
    if (dup_rows)
      notes_.push_back(name + ": " + std::to_string(dup_rows) +
                       " row(s) repeat an expert (the official code applies a repeated expert once, §9.7)");
    std::vector<int64_t>* dst = spec.dest_int(w);
    dst->resize(size_t(spec.dest_numel));
    std::copy(v.begin(), v.end(), dst->begin() + spec.offset);
    return;
  }

  if (spec.dest_mapped && opts_.map_engram_tables && (dt == DType::F32 || dt == DType::BF16)) {
    if (s.shape != spec.shape) throw shape_error(spec.shape);
    EngramTableView* v = spec.dest_mapped(w);
    v->data = shards_[s.shard]->bytes(*s.t).data();
    v->dtype = dt == DType::F32 ? TableDType::f32 : TableDType::bf16;
    v->rows = spec.shape[0];
    v->dim = spec.shape[1];
    mapped_ = true;
    return;  // not scanned for non-finite values: that would page in the whole table
  }
  std::vector<float>* dst = spec.dest(w);
  if (int64_t(dst->size()) != spec.dest_numel) dst->assign(size_t(spec.dest_numel), std::nanf(""));
  float* out = dst->data() + spec.offset;
  const int64_t n = spec.numel();
  const int64_t cols = spec.shape.size() == 2 ? spec.shape[1] : 0;

  if (is_plain_float(dt)) {
    if (s.shape != spec.shape) throw shape_error(spec.shape);
    if (matrix && src_.count(scale_name)) {
      const Source& sc = src_.at(scale_name);
      throw fail(sc, scale_name, "a scale for '" + name + "', which is stored as " + std::string(dtype_name(dt)) +
                                     " (only FP8/FP4 weights have scales)");
    }
    decode_plain(s, name, out);
  } else if (dt == DType::F8_E4M3 || dt == DType::I8 || dt == DType::U8) {
    const bool fp8 = dt == DType::F8_E4M3;
    if (!matrix || (fp8 && spec.role != TensorRole::fp8_linear && spec.role != TensorRole::expert) ||
        (!fp8 && spec.role != TensorRole::expert))
      throw fail(s, name, "dtype " + std::string(dtype_name(dt)) + " is not allowed for this tensor (expected " +
                              (spec.role == TensorRole::f32 ? "F32" : "BF16") + " or another plain float)");
    const int64_t out_dim = spec.shape[0], in = spec.shape[1];
    const std::vector<int64_t> want = fp8 ? spec.shape : std::vector<int64_t>{out_dim, cdiv(in, 2)};
    if (s.t->shape != want) throw fail(s, name, std::string(fp8 ? "" : "packed FP4: ") + "expected shape " +
                                                    shape_string(want) + ", found " + shape_string(s.t->shape));
    const Source* sc = take(scale_name);
    if (!sc) throw fail(s, name, "missing scale tensor '" + scale_name + "'");
    const int64_t B = fp8 ? c.weight_block : 0;
    const std::vector<int64_t> sshape =
        fp8 ? std::vector<int64_t>{cdiv(out_dim, B), cdiv(in, B)} : std::vector<int64_t>{out_dim, cdiv(in, kFp4ScaleBlock)};
    const std::vector<float> scale = decode_scales(*sc, scale_name, sshape);
    const auto* code = reinterpret_cast<const uint8_t*>(shards_[s.shard]->bytes(*s.t).data());
    if (fp8) {
      dequantize_fp8(code, out_dim, in, scale.data(), B, out);
    } else {
      dequantize_fp4(code, out_dim, in, scale.data(), out);
    }
  } else {
    std::string accepted = "F32, BF16, F16 or F64";
    if (spec.role == TensorRole::fp8_linear) accepted += ", or F8_E4M3 with a scale";
    if (spec.role == TensorRole::expert) accepted += ", or F8_E4M3 / packed FP4 (I8, U8) with a scale";
    throw fail(s, name, "dtype " + std::string(dtype_name(dt)) + " is not allowed; expected " + accepted);
  }
  check_finite(s, name, out, n, cols);
}

ModelWeights Loader::run(LoadInfo* info) {
  const auto t0 = std::chrono::steady_clock::now();
  ModelConfig c = checkpoint_config(dir_);
  require(c.arch == Arch::v4, "checkpoint '" + dir_ + "': config is " + arch_name(c.arch) +
                                  "; only deepseek_v4 checkpoints can be loaded");
  open_shards();
  collect_sources(c);

  bool has_mtp = false;
  for (const auto& [name, s] : src_) has_mtp = has_mtp || name.rfind("mtp.", 0) == 0;
  const bool drop_mtp = c.n_mtp_layers > 0 && (opts_.mtp == LoadOptions::Mtp::skip ||
                                               (opts_.mtp == LoadOptions::Mtp::if_present && !has_mtp));
  if (drop_mtp) {
    notes_.push_back(opts_.mtp == LoadOptions::Mtp::skip
                         ? "MTP modules skipped (LoadOptions::Mtp::skip)"
                         : "no mtp.* tensors: the " + std::to_string(c.n_mtp_layers) + " MTP module(s) of the config are dropped");
    c.n_mtp_layers = 0;
    c.compress_ratios.resize(size_t(c.n_layers));
    for (const auto& [name, s] : src_)
      if (name.rfind("mtp.", 0) == 0) used_.insert(name);
  }

  const std::vector<TensorSpec> specs = expected_tensors(c);
  int64_t need = 0;
  for (const auto& s : specs) need += s.numel() * int64_t(s.role == TensorRole::index ? 8 : 4);
  int64_t have = opts_.max_bytes;
  if (have <= 0) have = int64_t(::sysconf(_SC_PHYS_PAGES)) * int64_t(::sysconf(_SC_PAGESIZE));
  if (need > have)
    throw fail("loading needs " + gb(double(need)) + " of float weights (" + std::to_string(specs.size()) +
               " tensors); only " + gb(double(have)) + " are available");

  ModelWeights w;
  w.config = c;
  w.layers.resize(size_t(c.n_layers));
  w.mtp.resize(size_t(c.n_mtp_layers));
  for (const auto& s : specs) load_one(c, s, w);
  if (mapped_) {  // the weights keep the mapped shards alive
    w.mapped_files = std::make_shared<std::vector<std::shared_ptr<SafetensorsReader>>>(shards_);
    notes_.push_back("Engram tables memory-mapped from the shards (not decoded)");
  }

  std::vector<std::string> unexpected = unknown_;
  for (const auto& [name, s] : src_)
    if (!used_.count(name)) unexpected.push_back(shards_[s.shard]->path() + ": " + s.t->name + " ('" + name + "')");
  if (!unexpected.empty()) {
    std::string list;
    for (size_t i = 0; i < unexpected.size() && i < 5; ++i) list += (i ? "; " : "") + unexpected[i];
    if (unexpected.size() > 5) list += "; and " + std::to_string(unexpected.size() - 5) + " more";
    if (!opts_.allow_unexpected)
      throw fail(std::to_string(unexpected.size()) + " tensor(s) the config does not use: " + list);
    notes_.push_back("ignored " + std::to_string(unexpected.size()) + " unexpected tensor(s): " + list);
  }
  if (skipped_) notes_.push_back("skipped " + std::to_string(skipped_) + " mtp.*.embed/head copies (the main ones are shared)");

  if (info) {
    int64_t official = 0, tf = 0, reads = 0;
    std::set<const TensorInfo*> seen;
    for (const auto& name : used_) {
      const Source& s = src_.at(name);
      (s.transformers ? tf : official) += 1;
      if (seen.insert(s.t).second) ++reads;
    }
    info->naming = tf == 0 ? "official" : official == 0 ? "transformers" : "mixed";
    info->shards = int64_t(shards_.size());
    info->tensors_read = reads;
    info->file_bytes = 0;
    std::error_code ec;
    for (const auto& r : shards_) info->file_bytes += int64_t(fs::file_size(r->path(), ec));
    info->notes = notes_;
    info->seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    struct rusage ru {};
    ::getrusage(RUSAGE_SELF, &ru);
    info->peak_rss_bytes = int64_t(ru.ru_maxrss) * 1024;
  }
  return w;
}

}  // namespace

void dequantize_fp8(const uint8_t* codes, int64_t rows, int64_t cols, const float* scales, int64_t block,
                    float* out) {
  float lut[256];
  for (int i = 0; i < 256; ++i) lut[i] = fmt::e4m3_decode(uint8_t(i));
  const int64_t sc = cdiv(cols, block);
  for (int64_t r = 0; r < rows; ++r) {
    const float* srow = scales + (r / block) * sc;
    for (int64_t k = 0; k < cols; ++k) out[r * cols + k] = lut[codes[r * cols + k]] * srow[k / block];
  }
}

void dequantize_fp4(const uint8_t* packed, int64_t rows, int64_t cols, const float* scales, float* out) {
  const int64_t bpr = cdiv(cols, 2), sc = cdiv(cols, kFp4ScaleBlock);
  for (int64_t r = 0; r < rows; ++r) {
    const float* srow = scales + r * sc;
    for (int64_t k = 0; k < cols; ++k) {
      const uint8_t byte = packed[r * bpr + k / 2];
      const uint8_t nib = (k % 2) ? uint8_t(byte >> 4) : uint8_t(byte & 0xF);  // element 2j: low nibble
      out[r * cols + k] = fmt::e2m1_decode(nib) * srow[k / kFp4ScaleBlock];
    }
  }
}

LoadOptions engram_load_options(const std::string& name) {
  if (name != "memory" && name != "mmap")
    throw InputError("--engram-tables: expected memory or mmap, found '" + name + "'");
  LoadOptions o;
  o.map_engram_tables = name == "mmap";
  return o;
}

ModelConfig checkpoint_config(const std::string& dir) {
  const fs::path p = fs::path(dir) / "config.json";
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) throw InputError("checkpoint '" + dir + "': not a directory");
  if (!fs::exists(p, ec)) throw InputError("checkpoint '" + dir + "': no config.json");
  const std::string text = read_text(p, "config");
  return config_from_json(normalize_config_json(text, p.string()), p.string());
}

ModelWeights load_checkpoint(const std::string& dir, const LoadOptions& opts, LoadInfo* info) {
  Loader l(dir, opts);
  return l.run(info);
}

}  // namespace dsv4
