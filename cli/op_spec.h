// The `dsv4 op` contract machinery: an op is described once (inputs with shape letters,
// outputs, keys with defaults, the spec section) and run on the reference in float or
// double. Contract: docs/op-contract.md.
//
// Shape patterns are lists of dimension expressions over letters bound from the inputs:
//   "T"        binds T on first sight, must match afterwards
//   "H*d"      an expression (+ - * / and parentheses, integer literals), checked once every
//              plain letter is bound
//   "h?"       an optional dimension: the tensor may omit it (it then counts as 1)
// Letters can also be bound from keys before the inputs are read (bind_keys hook).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "model/dtype.h"
#include "reference/errors.h"
#include "reference/view.h"

namespace dsv4::cli {

enum class Elem { real, integer };

struct TensorSpec {
  std::string name;
  std::vector<std::string> dims;
  Elem elem = Elem::real;
  bool optional = false;
  bool allow_neg_inf = false;  // e.g. a sink of -inf means "no sink"
  std::string help;
};

struct OutputSpec {
  std::string name;
  std::vector<std::string> dims;  // documentation only
  Elem elem = Elem::real;
  std::string help;
};

struct KeySpec {
  std::string name;
  std::string default_value;  // "" = none (optional key with no default)
  std::string help;
};

// Keys as given on the command line, with the op's defaults filled in.
class Keys {
 public:
  Keys(std::string op, std::map<std::string, std::string> values,
       std::map<std::string, bool> explicit_set)
      : op_(std::move(op)), values_(std::move(values)), explicit_(std::move(explicit_set)) {}
  bool given(const std::string& k) const;  // set on the command line
  bool has(const std::string& k) const;    // given or has a default
  std::string str(const std::string& k) const;
  int64_t integer(const std::string& k) const;
  double real(const std::string& k) const;
  bool flag(const std::string& k) const;  // 0/1, true/false
  // One of `choices`.
  std::string choice(const std::string& k, const std::vector<std::string>& choices) const;

 private:
  std::string op_;
  std::map<std::string, std::string> values_;
  std::map<std::string, bool> explicit_;
};

// Dimension letters bound so far.
class Dims {
 public:
  bool bound(const std::string& l) const { return v_.count(l) != 0; }
  int64_t operator[](const std::string& l) const;
  void bind(const std::string& l, int64_t value) { v_[l] = value; }
  // Evaluates an expression over bound letters; throws std::out_of_range naming an
  // unbound letter.
  int64_t eval(const std::string& expr) const;
  // "[T, H, d] = [5, 4, 512]" with unbound letters left as letters.
  std::string render(const std::vector<std::string>& dims) const;

 private:
  std::map<std::string, int64_t> v_;
};

// What a run function sees: decoded inputs, bound dims, keys, and the outputs it makes.
template <class T>
class OpContext {
 public:
  using value_type = T;
  OpContext(const Keys& keys, const Dims& dims) : keys(keys), dims(dims) {}
  const Keys& keys;
  const Dims& dims;

  bool has(const std::string& n) const { return shapes_.count(n) != 0; }
  const std::vector<int64_t>& shape(const std::string& n) const { return shapes_.at(n); }
  const std::vector<T>& real(const std::string& n) const { return real_.at(n); }
  const std::vector<int64_t>& integer(const std::string& n) const { return int_.at(n); }
  const T* ptr(const std::string& n) const { return has(n) ? real_.at(n).data() : nullptr; }
  // Input viewed as [rows, numel/rows].
  View2<const T> view(const std::string& n, int64_t rows) const;

  std::vector<T>& out(const std::string& n, std::vector<int64_t> shape);
  std::vector<int32_t>& out_i32(const std::string& n, std::vector<int64_t> shape);
  View2<T> out_view(const std::string& n, std::vector<int64_t> shape, int64_t rows);

  // Filled by the runner.
  std::map<std::string, std::vector<int64_t>> shapes_;
  std::map<std::string, std::vector<T>> real_;
  std::map<std::string, std::vector<int64_t>> int_;
  struct Output {
    std::vector<int64_t> shape;
    std::vector<T> real;
    std::vector<int32_t> i32;
    Elem elem;
  };
  std::vector<std::pair<std::string, Output>> outputs_;
};

struct OpSpec {
  std::string name;
  std::string summary;
  std::string spec_ref;  // e.g. "v4-architecture.md §2.3"
  // The optimized/ header of the op's CUDA twin ("optimized/rmsnorm.cuh"); empty: no kernel
  // yet. The one place that says which ops have one (cli/op_status.h derives the status).
  std::string cuda_kernel;
  std::vector<TensorSpec> inputs;
  std::vector<OutputSpec> outputs;
  std::vector<KeySpec> keys;
  // Optional: bind letters from keys before the inputs (e.g. c from `overlap`).
  std::function<void(const Keys&, Dims&)> bind_keys;
  // Optional: extra checks once every input is bound (throw InputError).
  std::function<void(const Keys&, const Dims&, const std::map<std::string, bool>& present)> check;
  std::function<void(OpContext<float>&)> run_f32;
  std::function<void(OpContext<double>&)> run_f64;
  // `--backend cuda` (f32 only): uploads the inputs, runs the optimized/ twin, downloads the
  // outputs into the context. Set only in CUDA builds, by cli/ops_cuda.cc (one table entry per
  // op: see there); empty: dsv4 op does not run this op on the GPU.
  std::function<void(OpContext<float>&)> run_cuda;
};

// The element type of a context: `using T = ctx_t<decltype(c)>;` in a generic run lambda.
template <class C>
using ctx_t = typename std::decay_t<C>::value_type;

// Attaches one generic run function, instantiated for float and double.
template <class F>
OpSpec with_run(OpSpec s, F f) {
  s.run_f32 = [f](OpContext<float>& c) { f(c); };
  s.run_f64 = [f](OpContext<double>& c) { f(c); };
  return s;
}

// Every op, in --list order.
const std::vector<OpSpec>& op_registry();
const OpSpec* find_op(const std::string& name);

// Families (one file each).
std::vector<OpSpec> basic_ops();      // ops_basic.cc
std::vector<OpSpec> attention_ops();  // ops_attention.cc
std::vector<OpSpec> mhc_moe_ops();    // ops_mhc_moe.cc
std::vector<OpSpec> predecessor_ops();  // ops_predecessors.cc
std::vector<OpSpec> engram_ops();       // ops_engram.cc

// Rope keys shared by every op that rotates (see rope_from_keys in op_rope_keys.h).
std::vector<KeySpec> rope_keys(const std::string& default_preset);

}  // namespace dsv4::cli
