#include "cli/op_spec.h"

#include <cctype>
#include <cmath>
#include <stdexcept>

#include "cli/op_cuda.h"
#include "cli/op_rope_keys.h"

namespace dsv4::cli {

// ---- keys -------------------------------------------------------------------------------

bool Keys::given(const std::string& k) const {
  auto it = explicit_.find(k);
  return it != explicit_.end() && it->second;
}
bool Keys::has(const std::string& k) const {
  auto it = values_.find(k);
  return it != values_.end() && !it->second.empty();
}
std::string Keys::str(const std::string& k) const {
  auto it = values_.find(k);
  if (it == values_.end() || it->second.empty())
    throw InputError("op '" + op_ + "': key '" + k + "' is required");
  return it->second;
}
int64_t Keys::integer(const std::string& k) const {
  const std::string v = str(k);
  size_t used = 0;
  int64_t x = 0;
  try {
    x = std::stoll(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != v.size() || v.empty())
    throw InputError("op '" + op_ + "': key '" + k + "': expected an integer, found '" + v + "'");
  return x;
}
double Keys::real(const std::string& k) const {
  const std::string v = str(k);
  size_t used = 0;
  double x = 0;
  try {
    x = std::stod(v, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used != v.size() || v.empty() || std::isnan(x))
    throw InputError("op '" + op_ + "': key '" + k + "': expected a number, found '" + v + "'");
  return x;
}
bool Keys::flag(const std::string& k) const {
  const std::string v = str(k);
  if (v == "1" || v == "true") return true;
  if (v == "0" || v == "false") return false;
  throw InputError("op '" + op_ + "': key '" + k + "': expected 0 or 1, found '" + v + "'");
}
std::string Keys::choice(const std::string& k, const std::vector<std::string>& choices) const {
  const std::string v = str(k);
  std::string all;
  for (const auto& c : choices) {
    if (c == v) return v;
    all += (all.empty() ? "" : ", ") + c;
  }
  throw InputError("op '" + op_ + "': key '" + k + "': expected one of " + all + ", found '" + v + "'");
}

// ---- dims -------------------------------------------------------------------------------

int64_t Dims::operator[](const std::string& l) const {
  auto it = v_.find(l);
  if (it == v_.end()) throw std::out_of_range("dimension '" + l + "' is not bound");
  return it->second;
}

namespace {
// Recursive descent over  expr := term (('+'|'-') term)*,  term := atom (('*'|'/') atom)*,
// atom := integer | letter | '(' expr ')'.
struct Parser {
  const std::string& s;
  const Dims& d;
  size_t i = 0;
  void skip() {
    while (i < s.size() && s[i] == ' ') ++i;
  }
  int64_t atom() {
    skip();
    if (i < s.size() && s[i] == '(') {
      ++i;
      const int64_t v = expr();
      skip();
      if (i >= s.size() || s[i] != ')') throw std::invalid_argument("unbalanced '(' in '" + s + "'");
      ++i;
      return v;
    }
    const size_t j = i;
    if (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
      while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
      return std::stoll(s.substr(j, i - j));
    }
    while (i < s.size() && (std::isalnum(static_cast<unsigned char>(s[i])) || s[i] == '_')) ++i;
    if (i == j) throw std::invalid_argument("bad dimension expression '" + s + "'");
    return d[s.substr(j, i - j)];
  }
  int64_t term() {
    int64_t v = atom();
    for (skip(); i < s.size() && (s[i] == '*' || s[i] == '/'); skip()) {
      const char op = s[i++];
      const int64_t r = atom();
      if (op == '*') {
        v *= r;
      } else {
        if (r == 0) throw std::invalid_argument("division by zero in '" + s + "'");
        v /= r;
      }
    }
    return v;
  }
  int64_t expr() {
    int64_t v = term();
    for (skip(); i < s.size() && (s[i] == '+' || s[i] == '-'); skip()) {
      const char op = s[i++];
      const int64_t r = term();
      v = op == '+' ? v + r : v - r;
    }
    return v;
  }
};
}  // namespace

int64_t Dims::eval(const std::string& expr) const {
  Parser p{expr, *this};
  const int64_t v = p.expr();
  p.skip();
  if (p.i != expr.size()) throw std::invalid_argument("bad dimension expression '" + expr + "'");
  return v;
}

std::string Dims::render(const std::vector<std::string>& dims) const {
  std::string names = "[", values = "[";
  bool all_known = true;
  for (size_t i = 0; i < dims.size(); ++i) {
    std::string n = dims[i];
    if (!n.empty() && n.back() == '?') n.pop_back();
    names += (i ? ", " : "") + n;
    std::string v;
    try {
      v = std::to_string(eval(n));
    } catch (const std::exception&) {
      v = n;
      all_known = false;
    }
    values += (i ? ", " : "") + v;
  }
  names += "]";
  values += "]";
  (void)all_known;
  return names == values ? names : names + " = " + values;
}

// ---- context ----------------------------------------------------------------------------

template <class T>
View2<const T> OpContext<T>::view(const std::string& n, int64_t rows) const {
  const auto& v = real_.at(n);
  const int64_t cols = rows ? int64_t(v.size()) / rows : 0;
  return {v.data(), rows, cols, cols};
}

template <class T>
std::vector<T>& OpContext<T>::out(const std::string& n, std::vector<int64_t> shape) {
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  Output o;
  o.shape = std::move(shape);
  o.elem = Elem::real;
  o.real.assign(size_t(numel), std::numeric_limits<T>::quiet_NaN());  // poisoned
  outputs_.emplace_back(n, std::move(o));
  return outputs_.back().second.real;
}

template <class T>
std::vector<int32_t>& OpContext<T>::out_i32(const std::string& n, std::vector<int64_t> shape) {
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  Output o;
  o.shape = std::move(shape);
  o.elem = Elem::integer;
  o.i32.assign(size_t(numel), INT32_MIN);  // poisoned
  outputs_.emplace_back(n, std::move(o));
  return outputs_.back().second.i32;
}

template <class T>
View2<T> OpContext<T>::out_view(const std::string& n, std::vector<int64_t> shape, int64_t rows) {
  auto& v = out(n, std::move(shape));
  const int64_t cols = rows ? int64_t(v.size()) / rows : 0;
  return {v.data(), rows, cols, cols};
}

template class OpContext<float>;
template class OpContext<double>;

// ---- rope keys ---------------------------------------------------------------------------

std::vector<KeySpec> rope_keys(const std::string& default_preset) {
  return {
      {"preset", "", "v4-compressed | v4-swa | v3 | v32-indexer (default " + default_preset + ")"},
      {"rope_dim", "", "rotated dims (64)"},
      {"theta", "", "RoPE base"},
      {"yarn_factor", "", "YaRN factor, 1 = off"},
      {"yarn_orig", "", "YaRN original context"},
      {"beta_fast", "", "YaRN beta_fast (32)"},
      {"beta_slow", "", "YaRN beta_slow (1)"},
      {"attn_factor", "", "magnitude multiplier of the rotated dims (1)"},
      {"layout", "", "interleaved | half_split"},
      {"placement", "", "last | first (which dims of a head rotate)"},
  };
}

RopeConfig rope_from_keys(const Keys& k, const std::string& default_preset) {
  const std::string preset =
      k.given("preset") ? k.choice("preset", {"v4-compressed", "v4-swa", "v3", "v32-indexer"})
      : k.given("theta") ? "v4-swa"
                         : default_preset;
  RopeConfig c = preset == "v4-compressed" ? rope_v4_compressed()
                 : preset == "v3"          ? rope_v3()
                 : preset == "v32-indexer" ? rope_v32_indexer()
                                           : rope_v4_swa();
  if (k.given("rope_dim")) c.rope_dim = k.integer("rope_dim");
  if (k.given("theta")) c.theta = k.real("theta");
  if (k.given("yarn_factor")) c.yarn_factor = k.real("yarn_factor");
  if (k.given("yarn_orig")) c.yarn_orig = k.integer("yarn_orig");
  if (k.given("beta_fast")) c.beta_fast = k.real("beta_fast");
  if (k.given("beta_slow")) c.beta_slow = k.real("beta_slow");
  if (k.given("attn_factor")) c.attn_factor = k.real("attn_factor");
  if (k.given("layout"))
    c.layout = k.choice("layout", {"interleaved", "half_split"}) == "interleaved"
                   ? RopeLayout::interleaved
                   : RopeLayout::half_split;
  if (k.given("placement"))
    c.placement = k.choice("placement", {"last", "first"}) == "last" ? RopePlacement::last
                                                                      : RopePlacement::first;
  if (c.rope_dim <= 0 || c.rope_dim % 2)
    throw InputError("key 'rope_dim': expected a positive even number, found " + std::to_string(c.rope_dim));
  if (!(c.theta > 1)) throw InputError("key 'theta': expected a number > 1");
  if (c.yarn_factor > 1 && c.yarn_orig <= 0)
    throw InputError("key 'yarn_orig': expected a positive integer when yarn_factor > 1");
  return c;
}

// ---- registry ----------------------------------------------------------------------------

const std::vector<OpSpec>& op_registry() {
  static const std::vector<OpSpec> all = [] {
    std::vector<OpSpec> v;
    for (auto f : {basic_ops, attention_ops, mhc_moe_ops, predecessor_ops, engram_ops})
      for (auto& s : f()) v.push_back(std::move(s));
    attach_cuda_runners(v);  // --backend cuda (cli/ops_cuda.cc; nothing without CUDA)
    return v;
  }();
  return all;
}

const OpSpec* find_op(const std::string& name) {
  for (const auto& s : op_registry())
    if (s.name == name) return &s;
  return nullptr;
}

}  // namespace dsv4::cli
