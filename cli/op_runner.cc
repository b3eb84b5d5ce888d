#include "cli/op_runner.h"

#include <fmt/core.h>

#include <cmath>
#include <filesystem>
#include <map>

#include "cli/op_cuda.h"
#include "cli/op_spec.h"
#include "cli/op_status.h"
#include "model/safetensors.h"

namespace dsv4::cli {

namespace {

std::string join(const std::vector<std::string>& v, const std::string& sep = ", ") {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
}

std::string pattern(const std::vector<std::string>& dims) {
  std::vector<std::string> d;
  for (auto x : dims) d.push_back(x);
  return "[" + join(d) + "]";
}

Keys parse_keys(const OpSpec& spec, const std::vector<std::string>& sets) {
  std::map<std::string, std::string> values;
  std::map<std::string, bool> given;
  for (const auto& k : spec.keys) values[k.name] = k.default_value;
  for (const auto& s : sets) {
    const auto eq = s.find('=');
    if (eq == std::string::npos || eq == 0)
      throw InputError("op '" + spec.name + "': --set expects KEY=VALUE, found '" + s + "'");
    const std::string key = s.substr(0, eq);
    if (!values.count(key)) {
      std::vector<std::string> known;
      for (const auto& k : spec.keys) known.push_back(k.name);
      throw InputError("op '" + spec.name + "': unknown key '" + key + "' (known: " +
                       (known.empty() ? "none" : join(known)) + ")");
    }
    if (given[key]) throw InputError("op '" + spec.name + "': key '" + key + "' set twice");
    values[key] = s.substr(eq + 1);
    given[key] = true;
  }
  return Keys(spec.name, values, given);
}

// Binds the letters of every input; throws InputError naming the first offender.
void bind_inputs(const OpSpec& spec, const SafetensorsReader& r, Dims& dims,
                 std::map<std::string, bool>& present) {
  const std::string op = "op '" + spec.name + "': ";
  for (const auto& t : spec.inputs) {
    const TensorInfo* info = r.find(t.name);
    present[t.name] = info != nullptr;
    if (!info) {
      if (t.optional) continue;
      throw InputError(op + "tensor '" + t.name + "' is missing from '" + r.path() +
                       "' (expected shape " + pattern(t.dims) + ")");
    }
    if (t.elem == Elem::real) {
      const DType dt = info->dtype;
      if (!(dt == DType::F32 || dt == DType::F64 || dt == DType::BF16 || dt == DType::F16))
        throw InputError(op + "tensor '" + t.name + "': expected dtype F32, F64, BF16 or F16, found " +
                         std::string(dtype_name(dt)));
    } else if (info->dtype != DType::I32 && info->dtype != DType::I64) {
      throw InputError(op + "tensor '" + t.name + "': expected dtype I32 or I64, found " +
                       std::string(dtype_name(info->dtype)));
    }
    // Optional dims ("h?") are dropped when the rank says they are absent.
    int64_t n_opt = 0;
    for (const auto& d : t.dims) n_opt += (!d.empty() && d.back() == '?');
    const int64_t rank = int64_t(info->shape.size()), full = int64_t(t.dims.size());
    const bool with_opt = rank == full;
    if (!with_opt && rank != full - n_opt)
      throw InputError(op + "tensor '" + t.name + "': expected shape " + dims.render(t.dims) +
                       ", found " + shape_string(info->shape) + " (rank " + std::to_string(rank) + ")");
    size_t k = 0;
    for (const auto& d0 : t.dims) {
      std::string d = d0;
      const bool opt = !d.empty() && d.back() == '?';
      if (opt) d.pop_back();
      if (opt && !with_opt) {
        if (!dims.bound(d)) dims.bind(d, 1);
        continue;
      }
      const int64_t actual = info->shape[k++];
      const bool letter = d.find_first_of("+-*/() ") == std::string::npos &&
                          !std::isdigit(static_cast<unsigned char>(d[0]));
      if (letter) {
        if (!dims.bound(d)) dims.bind(d, actual);
        if (dims[d] != actual)
          throw InputError(op + "tensor '" + t.name + "': expected shape " + dims.render(t.dims) +
                           ", found " + shape_string(info->shape));
      }
    }
  }
  // Second pass: expressions and literals, now that every letter is bound.
  for (const auto& t : spec.inputs) {
    if (!present[t.name]) continue;
    const TensorInfo* info = r.find(t.name);
    const bool with_opt = info->shape.size() == t.dims.size();
    size_t k = 0;
    for (const auto& d0 : t.dims) {
      std::string d = d0;
      const bool opt = !d.empty() && d.back() == '?';
      if (opt) d.pop_back();
      if (opt && !with_opt) continue;
      const int64_t actual = info->shape[k++];
      int64_t want;
      try {
        want = dims.eval(d);
      } catch (const std::exception& e) {
        throw InputError(op + "tensor '" + t.name + "': cannot check dimension '" + d + "': " + e.what());
      }
      if (want != actual)
        throw InputError(op + "tensor '" + t.name + "': expected shape " + dims.render(t.dims) +
                         ", found " + shape_string(info->shape));
    }
  }
}

template <class T>
void load_inputs(const OpSpec& spec, const SafetensorsReader& r, OpContext<T>& ctx,
                 const std::map<std::string, bool>& present) {
  for (const auto& t : spec.inputs) {
    if (!present.at(t.name)) continue;
    const TensorInfo& info = *r.find(t.name);
    ctx.shapes_[t.name] = info.shape;
    if (t.elem == Elem::integer) {
      ctx.int_[t.name] = r.read_int(info);
      continue;
    }
    auto v = r.template read_float<T>(info);
    for (size_t i = 0; i < v.size(); ++i) {
      const bool bad = std::isnan(v[i]) || (std::isinf(v[i]) && !(t.allow_neg_inf && v[i] < 0));
      if (bad)
        throw InputError("op '" + spec.name + "': tensor '" + t.name + "': " +
                         (std::isnan(v[i]) ? "NaN" : "infinity") + " at flat index " +
                         std::to_string(i) + " (not allowed)");
    }
    ctx.real_[t.name] = std::move(v);
  }
}

template <class T>
void write_outputs(const OpSpec& spec, const OpRunArgs& a, const OpContext<T>& ctx) {
  SafetensorsWriter w;
  w.set_metadata("dsv4_op", spec.name);
  w.set_metadata("backend", a.backend);
  w.set_metadata("precision", a.precision);
  std::string sets = join(a.sets, " ");
  w.set_metadata("keys", sets);
  const DType real = std::is_same_v<T, double> ? DType::F64 : DType::F32;
  for (const auto& [name, o] : ctx.outputs_) {
    if (o.elem == Elem::integer)
      w.add(name, DType::I32, o.shape, o.i32.data(), o.i32.size() * sizeof(int32_t));
    else
      w.add(name, real, o.shape, o.real.data(), o.real.size() * sizeof(T));
  }
  w.write(a.out);
}

template <class T>
void run_typed(const OpSpec& spec, const OpRunArgs& a, const SafetensorsReader& r, const Keys& keys,
               const Dims& dims, const std::map<std::string, bool>& present,
               const std::function<void(OpContext<T>&)>& run) {
  OpContext<T> ctx(keys, dims);
  load_inputs(spec, r, ctx, present);
  run(ctx);
  write_outputs(spec, a, ctx);
}

// `--backend cuda`, before any file is read: the op must have a kernel that dsv4 op runs, in
// f32, in a CUDA build (InputError, status 2), on a usable device (std::runtime_error naming the
// device problem, status 1). Nothing is written when any of this fails.
void check_cuda_backend(const OpSpec& spec, const OpRunArgs& a) {
  const std::string op = "--backend cuda: op '" + spec.name + "': ";
  const std::string see = " (dsv4 op --list --json shows each op's status)";
  if (spec.cuda_kernel.empty()) throw InputError(op + "no CUDA kernel yet" + see);
  if (!built_with_cuda())
    throw InputError(op + "this dsv4 was built without CUDA; its kernel (" + spec.cuda_kernel +
                     ") needs a CUDA build" + see);
  if (!spec.run_cuda)
    throw InputError(op + "its CUDA kernel (" + spec.cuda_kernel + ") is not run by dsv4 op yet" + see);
  if (a.precision != "f32")
    throw InputError(op + "the CUDA kernels compute in f32 only, found --precision " + a.precision);
  const std::string problem = cuda_backend_problem();
  if (!problem.empty()) throw std::runtime_error(op + "cannot run on the GPU: " + problem);
}

}  // namespace

int run_op(const OpRunArgs& a) {
  try {
    const OpSpec* spec = find_op(a.op);
    if (!spec) throw InputError("unknown op '" + a.op + "' (dsv4 op --list shows them)");
    if (a.precision != "f32" && a.precision != "f64")
      throw InputError("--precision: expected f32 or f64, found '" + a.precision + "'");
    if (a.backend != "ref" && a.backend != "cuda")
      throw InputError("--backend: expected ref or cuda, found '" + a.backend + "'");
    if (a.backend == "cuda") check_cuda_backend(*spec, a);
    if (a.in.empty()) throw InputError("--in is required");
    if (a.out.empty()) throw InputError("--out is required");
    {
      namespace fs = std::filesystem;
      std::error_code ec;
      if (fs::exists(a.out, ec) && fs::equivalent(a.in, a.out, ec))
        throw InputError("--out '" + a.out + "' is the input file; refusing to overwrite it");
      const fs::path parent = fs::path(a.out).has_parent_path() ? fs::path(a.out).parent_path() : ".";
      if (!fs::is_directory(parent, ec))
        throw InputError("--out: directory '" + parent.string() + "' does not exist");
    }
    const Keys keys = parse_keys(*spec, a.sets);
    const SafetensorsReader r(a.in);
    Dims dims;
    if (spec->bind_keys) spec->bind_keys(keys, dims);
    std::map<std::string, bool> present;
    bind_inputs(*spec, r, dims, present);
    if (spec->check) spec->check(keys, dims, present);
    if (a.backend == "cuda")
      run_typed<float>(*spec, a, r, keys, dims, present, spec->run_cuda);
    else if (a.precision == "f64")
      run_typed<double>(*spec, a, r, keys, dims, present, spec->run_f64);
    else
      run_typed<float>(*spec, a, r, keys, dims, present, spec->run_f32);
    return 0;
  } catch (const InputError& e) {
    fmt::print(stderr, "dsv4 op: {}\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    fmt::print(stderr, "dsv4 op: error: {}\n", e.what());
    return 1;
  }
}

void print_op_list() {
  for (const auto& s : op_registry()) {
    fmt::print("{:<16} {}\n", s.name, s.summary);
    std::vector<std::string> in, out, keys;
    for (const auto& t : s.inputs)
      in.push_back(t.name + (t.optional ? "?" : "") + " " + pattern(t.dims) +
                   (t.elem == Elem::integer ? " int" : ""));
    for (const auto& t : s.outputs)
      out.push_back(t.name + " " + pattern(t.dims) + (t.elem == Elem::integer ? " i32" : ""));
    for (const auto& k : s.keys)
      keys.push_back(k.name + (k.default_value.empty() ? "" : "=" + k.default_value));
    fmt::print("{:<16}   in:   {}\n", "", join(in));
    fmt::print("{:<16}   out:  {}\n", "", join(out));
    if (!keys.empty()) fmt::print("{:<16}   keys: {}\n", "", join(keys));
  }
}

bool print_op_help(const std::string& op) {
  const OpSpec* s = find_op(op);
  if (!s) return false;
  fmt::print("dsv4 op {} --in IN.safetensors --out OUT.safetensors [--backend ref|cuda] [--precision f32|f64] "
             "[--set KEY=VALUE]...\n\n{}\nSpec: {}\n\nInputs (F32, F64, BF16 or F16 unless "
             "marked int = I32/I64):\n",
             s->name, s->summary, s->spec_ref);
  for (const auto& t : s->inputs)
    fmt::print("  {:<36} {:<22} {}{}\n", t.name, pattern(t.dims) + (t.elem == Elem::integer ? " int" : ""),
               t.optional ? "(optional) " : "", t.help);
  fmt::print("\nOutputs (F32, or F64 with --precision f64; i32 = I32):\n");
  for (const auto& t : s->outputs)
    fmt::print("  {:<36} {:<22} {}\n", t.name, pattern(t.dims) + (t.elem == Elem::integer ? " i32" : ""), t.help);
  if (!s->keys.empty()) {
    fmt::print("\nKeys (--set KEY=VALUE):\n");
    for (const auto& k : s->keys)
      fmt::print("  {:<16} {:<10} {}\n", k.name, k.default_value.empty() ? "-" : k.default_value, k.help);
  }
  fmt::print("\nShape letters bind on first sight and must agree everywhere; '?' marks a "
             "dimension that may be omitted.\nBad input exits with status 2 and one line naming "
             "the tensor or key; the output file is written atomically.\n");
  return true;
}

}  // namespace dsv4::cli
