// dsv4 init: a random V4 checkpoint in the official layout and the release encodings
// (docs/v4-architecture.md §7), so that everything downstream runs with no download.
//
// Init (chosen so that activations stay O(1) through every layer; n = hc_mult, D = dim):
//   projections [out, in]     N(0, 1/in)   variance-preserving; MTP e_proj / h_proj
//                             N(0, 1/(2D)) because their outputs are summed
//   embed                     N(0, 1)      the residual stream starts at RMS 1
//   head                      N(0, 1/D)    logits ~ N(0, 1)
//   RMSNorm weights           1 + U(-0.1, 0.1)
//   hc_*_fn, hc_head_fn       N(0, 0.01/(nD)): the normalised mixer input mu has std ~0.1
//   hc_*_base (M = (2+n)n)    pre: -ln(n-1) -> sigmoid = 1/n, so u = mean of the streams;
//                             post: 0 -> post = 2 sigmoid(0) = 1; comb: 2 on the diagonal,
//                             0 off it -> Sinkhorn gives a near-identity doubly stochastic
//                             mix (diagonal ~0.7); each + N(0, 0.1^2)
//   hc_head_base              -ln(n-1) + N(0, 0.1^2);  hc_*_scale, hc_head_scale 1 + U(-0.1, 0.1)
//   attn_sink N(0, 0.25); ape N(0, 0.01); gate.bias N(0, 0.01)
//   tid2eid                   k distinct experts per row, uniform (§9.7: no duplicates)
// Each tensor draws from its own stream, seeded by (seed, name): the bytes do not depend on
// the order or the sharding. FP8: 128x128 blocks, scale 2^ceil(log2(amax/448)) (UE8M0),
// codes e4m3 RNE; FP4: blocks of 32 inputs, scale 2^ceil(log2(amax/6)), e2m1 RNE, element
// 2k in the low nibble (reference/quant_fp4.h's encoder).
#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>
#include <sstream>

#include "model/checkpoint.h"
#include "model/engram_map.h"
#include "model/tokenizer.h"
#include "model/safetensors.h"
#include "reference/constants.h"
#include "reference/errors.h"
#include "reference/formats.h"
#include "reference/quant_fp4.h"

namespace dsv4 {

namespace fs = std::filesystem;
namespace json = boost::json;

namespace {

uint64_t splitmix64(uint64_t& s) {
  uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

class Rng {
 public:
  Rng(uint64_t seed, const std::string& name) {
    uint64_t h = 0xCBF29CE484222325ull;  // FNV-1a of the name
    for (unsigned char ch : name) h = (h ^ ch) * 0x100000001B3ull;
    s_ = seed ^ h;
    splitmix64(s_);
  }
  double uniform() { return double(splitmix64(s_) >> 11) * 0x1.0p-53; }  // [0, 1)
  double normal() {                                                      // Box-Muller
    const double u1 = 1.0 - uniform(), u2 = uniform();
    return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * M_PI * u2);
  }
  uint64_t below(uint64_t n) { return splitmix64(s_) % n; }

 private:
  uint64_t s_;
};

std::vector<float> init_values(const ModelConfig& c, const TensorSpec& s, Rng& rng) {
  const int64_t n = s.numel(), hc = c.hc_mult;
  const double pre_base = hc > 1 ? -std::log(double(hc - 1)) : 4.0;
  std::vector<float> v(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) {
    double x = 0;
    switch (s.init) {
      case InitKind::norm:
      case InitKind::hc_scale: x = 1.0 + 0.2 * (rng.uniform() - 0.5); break;
      case InitKind::normal: x = s.init_std * rng.normal(); break;
      case InitKind::hc_head_base: x = pre_base + 0.1 * rng.normal(); break;
      case InitKind::hc_base: {
        double b = 0;
        if (i < hc) {
          b = pre_base;
        } else if (i >= 2 * hc) {
          const int64_t j = (i - 2 * hc) / hc, k = (i - 2 * hc) % hc;
          b = j == k ? 2.0 : 0.0;
        }
        x = b + 0.1 * rng.normal();
        break;
      }
      case InitKind::tid2eid:
      case InitKind::token_map: break;
    }
    v[size_t(i)] = float(x);
  }
  return v;
}

std::vector<int64_t> init_tid2eid(const ModelConfig& c, const TensorSpec& s, Rng& rng) {
  const int64_t rows = s.shape[0], k = s.shape[1], E = c.n_routed_experts;
  std::vector<int64_t> out(size_t(rows * k)), perm(static_cast<size_t>(E));
  for (int64_t r = 0; r < rows; ++r) {
    std::iota(perm.begin(), perm.end(), 0);
    for (int64_t j = 0; j < k; ++j) {  // partial Fisher-Yates: k distinct experts
      const int64_t pick = j + int64_t(rng.below(uint64_t(E - j)));
      std::swap(perm[size_t(j)], perm[size_t(pick)]);
      out[size_t(r * k + j)] = perm[size_t(j)];
    }
  }
  return out;
}

// Encodes one tensor (and its scale) into w, its values from `contents`.
void encode(const ModelConfig& c, const TensorSpec& s, Encoding e, const CheckpointContents& contents,
            SafetensorsWriter& w) {
  if (e == Encoding::i64) {
    const auto v = contents.indices(s);
    require(int64_t(v.size()) == s.numel(), "checkpoint writer: tensor '" + s.name + "' got " +
                                                std::to_string(v.size()) + " values, expected " + std::to_string(s.numel()));
    w.add(s.name, DType::I64, s.shape, v.data(), v.size() * 8);
    return;
  }
  const std::vector<float> v = contents.values(s);
  require(int64_t(v.size()) == s.numel(), "checkpoint writer: tensor '" + s.name + "' got " + std::to_string(v.size()) +
                                              " values, expected " + std::to_string(s.numel()));
  const StoredShape st = stored_shape(c, s, e);
  const std::string scale = s.name.substr(0, s.name.size() - 7) + ".scale";  // "...weight" -> "...scale"
  switch (e) {
    case Encoding::bf16: w.add_float(s.name, s.shape, v.data(), DType::BF16); break;
    case Encoding::f32: w.add(s.name, DType::F32, s.shape, v.data(), v.size() * 4); break;
    case Encoding::fp8: {
      const int64_t R = s.shape[0], K = s.shape[1], B = c.weight_block;
      const int64_t SR = st.scale_shape[0], SC = st.scale_shape[1];
      std::vector<uint8_t> codes(size_t(R * K)), sc(size_t(SR * SC));
      for (int64_t bi = 0; bi < SR; ++bi) {
        for (int64_t bj = 0; bj < SC; ++bj) {
          const int64_t r1 = std::min(R, (bi + 1) * B), k1 = std::min(K, (bj + 1) * B);
          double amax = 0;
          for (int64_t r = bi * B; r < r1; ++r)
            for (int64_t k = bj * B; k < k1; ++k) amax = std::max(amax, std::fabs(double(v[size_t(r * K + k)])));
          const int ex = fmt::ue8m0_scale_exp(amax, kFp8AmaxFloor, kFp8Max);
          sc[size_t(bi * SC + bj)] = fmt::ue8m0_encode_exp(ex);
          for (int64_t r = bi * B; r < r1; ++r)
            for (int64_t k = bj * B; k < k1; ++k)
              codes[size_t(r * K + k)] =
                  fmt::e4m3_encode(std::clamp(std::ldexp(double(v[size_t(r * K + k)]), -ex), -kFp8Max, kFp8Max));
        }
      }
      w.add(s.name, DType::F8_E4M3, s.shape, codes.data(), codes.size());
      w.add(scale, DType::F8_E8M0, st.scale_shape, sc.data(), sc.size());
      break;
    }
    case Encoding::fp4: {
      const int64_t R = s.shape[0], K = s.shape[1], BPR = st.shape[1], SC = st.scale_shape[1];
      std::vector<uint8_t> packed(size_t(R * BPR)), sc(size_t(R * SC));
      std::vector<float> blk(static_cast<size_t>(kFp4ScaleBlock));
      for (int64_t r = 0; r < R; ++r) {
        for (int64_t b = 0; b < SC; ++b) {
          const int64_t k0 = b * kFp4ScaleBlock, nb = std::min(kFp4ScaleBlock, K - k0);
          std::fill(blk.begin(), blk.end(), 0.0f);
          std::copy_n(v.begin() + r * K + k0, nb, blk.begin());
          sc[size_t(r * SC + b)] = ref::fp4_encode_block(blk.data(), nb + (nb % 2), packed.data() + r * BPR + k0 / 2);
        }
      }
      w.add(s.name, DType::I8, st.shape, packed.data(), packed.size());
      w.add(scale, DType::F8_E8M0, st.scale_shape, sc.data(), sc.size());
      break;
    }
    case Encoding::i64: break;
  }
}

void write_text(const fs::path& p, const std::string& text) {
  const int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("cannot create '" + p.string() + "': " + std::strerror(errno));
  const char* d = text.data();
  size_t n = text.size();
  while (n) {
    const ssize_t k = ::write(fd, d, n);
    if (k < 0 && errno == EINTR) continue;
    if (k < 0) {
      ::close(fd);
      throw std::runtime_error("cannot write '" + p.string() + "': " + std::strerror(errno));
    }
    d += k;
    n -= size_t(k);
  }
  const bool ok = ::fsync(fd) == 0;
  if (::close(fd) != 0 || !ok) throw std::runtime_error("cannot write '" + p.string() + "': " + std::strerror(errno));
}

void fsync_dir(const fs::path& p) {
  const int fd = ::open(p.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd >= 0) {
    ::fsync(fd);
    ::close(fd);
  }
}

std::string gb(double bytes) {
  char b[32];
  std::snprintf(b, sizeof b, "%.1f GB", bytes / 1e9);
  return b;
}

std::string shard_name(int64_t i, int64_t n) {
  char b[64];
  std::snprintf(b, sizeof b, "model-%05lld-of-%05lld.safetensors", (long long)i, (long long)n);
  return b;
}

// Largest token id of a tokenizer.json (model.vocab and added_tokens), or -1 if unreadable.
int64_t tokenizer_max_id(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return -1;
  std::stringstream ss;
  ss << in.rdbuf();
  try {
    const json::value root = json::parse(ss.str());
    int64_t mx = -1;
    auto id_of = [](const json::value& v) { return v.is_int64() ? v.as_int64() : v.is_uint64() ? int64_t(v.as_uint64()) : -1; };
    if (const auto* m = root.as_object().if_contains("model"))
      if (const auto* voc = m->as_object().if_contains("vocab"); voc && voc->is_object())
        for (const auto& kv : voc->as_object()) mx = std::max(mx, id_of(kv.value()));
    if (const auto* at = root.as_object().if_contains("added_tokens"); at && at->is_array())
      for (const auto& t : at->as_array())
        if (t.is_object())
          if (const auto* id = t.as_object().if_contains("id")) mx = std::max(mx, id_of(*id));
    return mx;
  } catch (const std::exception&) {
    return -1;
  }
}

}  // namespace

std::string default_tokenizer_asset() {
  if (const char* env = std::getenv("DSV4_ASSETS")) return (fs::path(env) / "tokenizer-tiny.json").string();
  return (fs::path(__FILE__).parent_path() / "assets" / "tokenizer-tiny.json").string();
}

namespace {

// The Engram canonical-id map of the tokenizer the checkpoint will carry (the identity when
// that tokenizer is absent or does not fit the vocabulary: write_checkpoint then writes none).
std::vector<int64_t> init_token_map(const ModelConfig& c, const std::string& tokenizer) {
  std::error_code ec;
  if (fs::exists(tokenizer, ec)) {
    const int64_t mx = tokenizer_max_id(tokenizer);
    if (mx >= 0 && mx < c.vocab_size) return engram_token_map(Tokenizer(tokenizer), c.vocab_size);
  }
  return engram_identity_map(c.vocab_size);
}

}  // namespace

WriteSummary write_random_checkpoint(const ModelConfig& c, uint64_t seed, const std::string& dir, int64_t shard_bytes,
                                     const WriteOptions& opts) {
  CheckpointContents contents;
  contents.values = [&c, seed](const TensorSpec& s) {
    Rng rng(seed, s.name);
    return init_values(c, s, rng);
  };
  const std::string tok = opts.tokenizer.empty() ? default_tokenizer_asset() : opts.tokenizer;
  contents.indices = [&c, seed, tok](const TensorSpec& s) {
    if (s.init == InitKind::token_map) return init_token_map(c, tok);
    Rng rng(seed, s.name);
    return init_tid2eid(c, s, rng);
  };
  contents.seed = seed;
  return write_checkpoint(c, contents, dir, shard_bytes, opts);
}

WriteSummary write_checkpoint(const ModelConfig& c, const CheckpointContents& contents, const std::string& dir,
                              int64_t shard_bytes, const WriteOptions& opts) {
  config_validate(c);
  require(contents.values && contents.indices, "checkpoint writer: no tensor values given");
  // The stored encoding of a spec: the release one, or F32 for every float with exact_float.
  auto encoding = [&](const TensorSpec& s) {
    const Encoding e = release_encoding(c, s.role);
    return contents.exact_float && e != Encoding::i64 ? Encoding::f32 : e;
  };
  const std::vector<TensorSpec> specs = expected_tensors(c);
  WriteSummary sum;
  sum.size = checkpoint_size(c);
  char params[32];
  std::snprintf(params, sizeof params, "%.2fB", double(sum.size.parameters) / 1e9);
  if (contents.exact_float) {  // F32 everywhere: recount the stored bytes
    sum.size.stored_bytes = 0;
    for (const auto& s : specs) sum.size.stored_bytes += stored_shape(c, s, encoding(s)).bytes;
  }
  const std::string what = "model '" + c.name + "' (" + params + " parameters, " +
                           gb(double(sum.size.stored_bytes)) + " on disk in " +
                           (contents.exact_float ? "F32)" : "the release encodings)");

  // ---- refuse what cannot fit ----
  fs::path dest = fs::absolute(fs::path(dir)).lexically_normal();
  if (dest.filename().empty()) dest = dest.parent_path();  // "out/"
  const fs::path parent = dest.has_parent_path() ? dest.parent_path() : fs::path(".");
  std::error_code ec;
  // Missing parent folders are created (mkdir -p), as for every other output of dsv4.
  if (!fs::exists(parent, ec)) fs::create_directories(parent, ec);
  if (!fs::is_directory(parent, ec))
    throw InputError("dsv4 init: '" + parent.string() + "' is not a directory" + (ec ? " (" + ec.message() + ")" : ""));
  const fs::space_info sp = fs::space(parent, ec);
  if (!ec && double(sum.size.stored_bytes) * 1.02 > double(sp.available))
    throw InputError("dsv4 init: " + what + " does not fit: only " + gb(double(sp.available)) + " free under '" +
                     parent.string() + "'");
  if (opts.max_bytes > 0 && sum.size.stored_bytes > opts.max_bytes)
    throw InputError("dsv4 init: " + what + " exceeds the limit of " + gb(double(opts.max_bytes)) +
                     " (raise it with --max-gb)");
  // ---- plan the shards: a tensor and its scale stay together ----
  std::vector<std::vector<size_t>> plan(1);
  std::vector<int64_t> plan_bytes(1, 0);
  int64_t largest_tensor = 0;
  for (size_t i = 0; i < specs.size(); ++i) {
    const int64_t b = stored_shape(c, specs[i], encoding(specs[i])).bytes;
    largest_tensor = std::max(largest_tensor, specs[i].numel());
    if (shard_bytes > 0 && !plan.back().empty() && plan_bytes.back() + b > shard_bytes) {
      plan.emplace_back();
      plan_bytes.push_back(0);
    }
    plan.back().push_back(i);
    plan_bytes.back() += b;
  }
  const int64_t mem = 2 * *std::max_element(plan_bytes.begin(), plan_bytes.end()) + 4 * largest_tensor;
  const int64_t phys = int64_t(::sysconf(_SC_PHYS_PAGES)) * int64_t(::sysconf(_SC_PAGESIZE));
  if (mem > phys)
    throw InputError("dsv4 init: " + what + ": writing one shard needs " + gb(double(mem)) + " of memory; this machine has " +
                     gb(double(phys)) + " (use a smaller --shard-mb)");

  // ---- the destination ----
  const bool exists = fs::exists(dest, ec);
  if (exists && !fs::is_directory(dest, ec)) throw InputError("dsv4 init: '" + dest.string() + "' exists and is not a directory");
  const bool nonempty = exists && !fs::is_empty(dest, ec);
  if (nonempty && !opts.force)
    throw InputError("dsv4 init: '" + dest.string() + "' exists and is not empty (--force replaces it)");

  std::string tmpl = dest.string() + ".tmp-XXXXXX";
  if (!::mkdtemp(tmpl.data())) throw InputError("dsv4 init: cannot create '" + tmpl + "': " + std::strerror(errno));
  const fs::path tmp(tmpl);
  ::chmod(tmp.c_str(), 0755);
  try {
    write_text(tmp / "config.json", config_to_json(c) + "\n");
    json::object weight_map;
    const int64_t n = int64_t(plan.size());
    for (int64_t si = 0; si < n; ++si) {
      SafetensorsWriter w;
      w.set_metadata("format", "pt");
      for (size_t i : plan[size_t(si)]) encode(c, specs[i], encoding(specs[i]), contents, w);
      const std::string file = shard_name(si + 1, n);
      w.write((tmp / file).string());
      SafetensorsReader check((tmp / file).string());  // names of what was written (scales included)
      for (const auto& t : check.tensors()) weight_map[t.name] = file;
      sum.file_bytes += int64_t(fs::file_size(tmp / file));
    }
    sum.shards = n;
    json::object index{{"metadata", json::object{{"total_size", sum.file_bytes}, {"generator", contents.generator},
                                                 {"seed", contents.seed}}},
                       {"weight_map", std::move(weight_map)}};
    write_text(tmp / "model.safetensors.index.json", json::serialize(index) + "\n");

    bool tokenizer_given = false;  // contents.files may carry the tokenizer.json
    for (const auto& [name, text] : contents.files) {
      require(!name.empty() && name.find('/') == std::string::npos && name != "config.json" &&
                  name.find(".safetensors") == std::string::npos,
              "checkpoint writer: extra file name '" + name + "' is not allowed");
      write_text(tmp / name, text);
      tokenizer_given = tokenizer_given || name == "tokenizer.json";
    }
    const std::string tok = opts.tokenizer.empty() ? default_tokenizer_asset() : opts.tokenizer;
    if (tokenizer_given) {
      sum.tokenizer_note = "tokenizer.json written by the generator";
    } else if (!fs::exists(tok, ec)) {
      if (!opts.tokenizer.empty()) throw InputError("dsv4 init: tokenizer '" + tok + "' does not exist");
      sum.tokenizer_note = "no tokenizer asset at '" + tok + "'; tokenizer.json not written";
    } else {
      const int64_t mx = tokenizer_max_id(tok);
      if (mx < 0 || mx >= c.vocab_size) {
        const std::string why = mx < 0 ? "is not a readable tokenizer.json" :
                                         "has token ids up to " + std::to_string(mx) + ", beyond vocab_size " + std::to_string(c.vocab_size);
        if (!opts.tokenizer.empty()) throw InputError("dsv4 init: tokenizer '" + tok + "' " + why);
        sum.tokenizer_note = "'" + tok + "' " + why + "; tokenizer.json not written";
      } else {
        fs::copy_file(tok, tmp / "tokenizer.json");
        sum.tokenizer_copied = true;
        sum.tokenizer_note = "tokenizer.json copied from '" + tok + "'";
      }
    }
    fsync_dir(tmp);

    // ---- into place ----
    if (nonempty) {
      std::string old = dest.string() + ".old-XXXXXX";
      if (!::mkdtemp(old.data())) throw std::runtime_error("cannot create '" + old + "': " + std::strerror(errno));
      if (::rename(dest.c_str(), old.c_str()) != 0) {
        const int err = errno;
        fs::remove(old, ec);
        throw std::runtime_error("cannot move '" + dest.string() + "' aside: " + std::strerror(err));
      }
      if (::rename(tmp.c_str(), dest.c_str()) != 0) {
        const int err = errno;
        ::rename(old.c_str(), dest.c_str());
        throw std::runtime_error("cannot rename into '" + dest.string() + "': " + std::strerror(err));
      }
      fs::remove_all(old, ec);
    } else if (::rename(tmp.c_str(), dest.c_str()) != 0) {  // DIR absent or an empty directory
      throw std::runtime_error("cannot rename into '" + dest.string() + "': " + std::strerror(errno));
    }
    fsync_dir(parent);
  } catch (const InputError&) {
    fs::remove_all(tmp, ec);
    throw;
  } catch (const std::exception& e) {
    fs::remove_all(tmp, ec);
    throw InputError("dsv4 init: " + std::string(e.what()));
  }
  return sum;
}

}  // namespace dsv4
