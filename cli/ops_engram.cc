// dsv4 op: Engram conditional memory — the n-gram hash, the table lookup and the gated mix with
// its short convolution (docs/engram.md; contract: docs/op-contract.md).
#include <algorithm>
#include <cstdint>
#include <limits>
#include <map>
#include <string>
#include <vector>

#include "cli/op_engram.h"
#include "cli/op_spec.h"
#include "reference/engram.h"

namespace dsv4::cli {

namespace {

constexpr const char* kSpec = "engram.md";

// Integer tensor values -> int32, each within [lo, hi); names the tensor, value and index.
std::vector<int32_t> ids_within(const std::string& op, const std::string& tensor,
                                const std::vector<int64_t>& v, int64_t lo, int64_t hi,
                                const std::string& range_name) {
  std::vector<int32_t> out(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    require(v[i] >= lo && v[i] < hi, "op '" + op + "': tensor '" + tensor + "': value " +
                                         std::to_string(v[i]) + " at flat index " +
                                         std::to_string(i) + " is outside " + range_name + " [" +
                                         std::to_string(lo) + ", " + std::to_string(hi) + ")");
    out[i] = int32_t(v[i]);
  }
  return out;
}

// A key of comma-separated positive integers ("646400,646400").
std::vector<int64_t> positive_list(const Keys& k, const std::string& op, const std::string& key) {
  const std::string s = k.str(key);
  std::vector<int64_t> out;
  size_t at = 0;
  while (true) {
    const size_t comma = s.find(',', at);
    const std::string item =
        s.substr(at, comma == std::string::npos ? std::string::npos : comma - at);
    size_t used = 0;
    int64_t v = 0;
    try {
      v = std::stoll(item, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    require(!item.empty() && used == item.size() && v > 0,
            "op '" + op + "': key '" + key +
                "': expected comma-separated positive integers, found '" + s + "'");
    out.push_back(v);
    if (comma == std::string::npos) break;
    at = comma + 1;
  }
  return out;
}

// An integer key >= lo.
int64_t integer_at_least(const Keys& k, const std::string& op, const std::string& key, int64_t lo) {
  const int64_t v = k.integer(key);
  require(v >= lo, "op '" + op + "': key '" + key + "': expected an integer >= " +
                       std::to_string(lo) + ", found " + std::to_string(v));
  return v;
}

OpSpec engram_hash_op() {
  const std::string op = "engram_hash";
  OpSpec s;
  s.name = op;
  s.summary =
      "Engram n-gram addresses: row offset(n,j) + (XOR_k c[t-k] mult[k]) mod prime(n,j), c = "
      "token_map[ids]";
  s.spec_ref = std::string(kSpec) + " step 2";
  s.cuda_kernel = "optimized/engram.cuh";
  s.inputs = {
      {"ids", {"T"}, Elem::integer, false, false, "raw token ids"},
      {"token_map", {"V"}, Elem::integer, true, false, "raw id -> canonical id (absent: identity)"},
      {"history",
       {"N-1"},
       Elem::integer,
       true,
       false,
       "canonical ids of the N-1 tokens before ids[0], oldest first; -1: before the sequence "
       "(absent: all -1)"}};
  s.outputs = {{"rows",
                {"T", "(N-1)*heads"},
                Elem::integer,
                "rows of the concatenated table, (order, head) order"},
               {"history", {"N-1"}, Elem::integer, "the history to pass with the next chunk"},
               {"primes",
                {"(N-1)*heads"},
                Elem::integer,
                "table size of each (order, head); the table has their sum of rows"}};
  s.keys = {{"max_ngram", "3", "N: n-gram orders 2..N"},
            {"heads", "", "hash heads per order"},
            {"vocab_size", "",
             "base table size per order 2..N, comma-separated (the primes start there)"},
            {"layer", "0", "main-stack layer id (seeds the multipliers)"},
            {"layer_index", "0", "which Engram layer in config order (the primes depend on it)"},
            {"n_layers", "1", "Engram layers in the config (earlier ones take their primes first)"},
            {"seed", "0", "seeds the multipliers"},
            {"pad_id", "2", "raw token id read before the first token"},
            {"vocab", "", "raw vocabulary size V (required without token_map)"}};
  s.bind_keys = [op](const Keys& k, Dims& d) {
    d.bind("N", integer_at_least(k, op, "max_ngram", 2));
    if (k.given("vocab")) d.bind("V", integer_at_least(k, op, "vocab", 1));
  };
  s.check = [op](const Keys&, const Dims& d, const std::map<std::string, bool>& present) {
    require(present.at("token_map") || d.bound("V"),
            "op '" + op + "': key 'vocab' is required when tensor 'token_map' is absent");
  };
  return with_run(s, [](auto& c) {
    const int64_t T_ = c.dims["T"];
    const auto setup = engram_hash_setup(c.keys, c.dims, c.has("token_map") ? &c.integer("token_map") : nullptr,
                                         c.integer("ids"), c.has("history") ? &c.integer("history") : nullptr);
    const int64_t slots = setup->hash.slots();
    std::vector<int64_t> rows(size_t(T_ * slots));
    EngramHashParams p;
    p.hash = &setup->hash;
    p.ids = setup->ids.data();
    p.n = T_;
    p.history = setup->history.data();
    p.rows = view2(rows.data(), T_, slots);
    ref::engram_hash(p);
    const EngramHashOutputs out = engram_hash_outputs(*setup, rows);
    c.out_i32("rows", {T_, slots}) = out.rows;
    c.out_i32("history", {c.dims["N"] - 1}) = out.history;
    c.out_i32("primes", {slots}) = out.primes;
  });
}

}  // namespace

std::unique_ptr<EngramHashSetup> engram_hash_setup(const Keys& keys, const Dims& dims,
                                                   const std::vector<int64_t>* token_map,
                                                   const std::vector<int64_t>& ids,
                                                   const std::vector<int64_t>* history) {
  const std::string op = "engram_hash";
  const int64_t N = dims["N"], V = dims["V"];
  const int64_t heads = integer_at_least(keys, op, "heads", 1);
  const std::vector<int64_t> base = positive_list(keys, op, "vocab_size");
  require(int64_t(base.size()) == N - 1, "op '" + op + "': key 'vocab_size': expected " + std::to_string(N - 1) +
                                             " sizes (orders 2.." + std::to_string(N) + "), found " +
                                             std::to_string(base.size()));
  const int64_t n_layers = integer_at_least(keys, op, "n_layers", 1);
  const int64_t layer_index = integer_at_least(keys, op, "layer_index", 0);
  require(layer_index < n_layers, "op '" + op + "': key 'layer_index': expected < n_layers = " +
                                      std::to_string(n_layers) + ", found " + std::to_string(layer_index));
  const int64_t layer = integer_at_least(keys, op, "layer", 0);
  const int64_t seed = integer_at_least(keys, op, "seed", 0);
  const int64_t pad = keys.integer("pad_id");
  require(pad >= 0 && pad < V, "op '" + op + "': key 'pad_id': expected a token id in [0, " + std::to_string(V) +
                                   "), found " + std::to_string(pad));

  auto s = std::make_unique<EngramHashSetup>();
  if (token_map) s->map = ids_within(op, "token_map", *token_map, 0, V, "the vocabulary");
  s->ids = ids_within(op, "ids", ids, 0, V, "the vocabulary");
  s->history.assign(size_t(N - 1), -1);
  if (history) s->history = ids_within(op, "history", *history, -1, V, "-1 or the vocabulary");

  s->primes = engram_primes(n_layers, base, heads)[size_t(layer_index)];
  s->hash = engram_layer_hash(s->primes, engram_multipliers(uint64_t(seed), layer, N, V), N, heads,
                              s->map.empty() ? nullptr : s->map.data(), V, pad);
  require(s->hash.table_rows <= std::numeric_limits<int32_t>::max(),
          "op '" + op + "': the tables have " + std::to_string(s->hash.table_rows) +
              " rows in all, more than the I32 'rows' output of dsv4 op can address");
  return s;
}

EngramHashOutputs engram_hash_outputs(const EngramHashSetup& s, const std::vector<int64_t>& rows) {
  EngramHashOutputs out;
  out.rows.assign(rows.begin(), rows.end());  // < table_rows <= INT32_MAX (engram_hash_setup)
  out.history = engram_advance_history(s.hash, s.history, s.ids.data(), int64_t(s.ids.size()));
  out.primes.assign(s.primes.begin(), s.primes.end());
  return out;
}

namespace {

OpSpec engram_lookup_op() {
  const std::string op = "engram_lookup";
  OpSpec s;
  s.name = op;
  s.summary = "Engram lookup: e[t] = the table rows rows[t, :] concatenated";
  s.spec_ref = std::string(kSpec) + " step 3";
  s.cuda_kernel = "optimized/engram.cuh";
  s.inputs = {{"table",
               {"R", "de"},
               Elem::real,
               false,
               false,
               "every (order, head) table stacked; F32 or BF16 values"},
              {"rows", {"T", "slots"}, Elem::integer, false, false, "table rows (engram_hash)"}};
  s.outputs = {{"e", {"T", "slots*de"}}};
  return with_run(s, [op](auto& c) {
    using T = ctx_t<decltype(c)>;
    const int64_t R = c.dims["R"], de = c.dims["de"], T_ = c.dims["T"], slots = c.dims["slots"];
    const std::vector<int64_t>& rows = c.integer("rows");
    for (size_t i = 0; i < rows.size(); ++i)
      require(rows[i] >= 0 && rows[i] < R,
              "op '" + op + "': tensor 'rows': value " + std::to_string(rows[i]) +
                  " at flat index " + std::to_string(i) + " is outside the table's rows [0, " +
                  std::to_string(R) + ")");
    // The op reads F32 or BF16 tables as stored; the runner decoded this one to T. Every F32,
    // BF16 or F16 value is an F32 value, so the F32 view loses nothing; an F64 table must hold
    // F32 values.
    const std::vector<T>& decoded = c.real("table");
    std::vector<float> table(decoded.size());
    for (size_t i = 0; i < decoded.size(); ++i) {
      table[i] = float(decoded[i]);
      require(T(table[i]) == decoded[i], "op '" + op + "': tensor 'table': value at flat index " +
                                             std::to_string(i) +
                                             " is not an F32 value (tables are F32 or BF16)");
    }
    EngramLookupParams<T> p;
    p.table = {table.data(), TableDType::f32, R, de};
    p.rows = view2(rows.data(), T_, slots);
    p.e = c.out_view("e", {T_, slots * de}, T_);
    ref::engram_lookup(p);
  });
}

OpSpec engram_mix_op() {
  const std::string op = "engram_mix";
  OpSpec s;
  s.name = op;
  s.summary =
      "Engram gate, value and causal conv: V = sigmoid(gate(k(e), q(x))) (Wv e + bv); y = V + "
      "SiLU(conv(RMSNorm V))";
  s.spec_ref = std::string(kSpec) + " step 4";
  s.cuda_kernel = "optimized/engram.cuh";
  s.inputs = {{"x", {"T", "S*D"}, Elem::real, false, false, "mHC residual streams"},
              {"e", {"T", "E"}, Elem::real, false, false, "looked-up embeddings (engram_lookup)"},
              {"value_w", {"D", "E"}},
              {"value_b", {"D"}},
              {"key_w", {"S", "D", "E"}},
              {"key_b", {"S", "D"}},
              {"key_norm", {"S", "D"}},
              {"query_norm", {"S", "D"}},
              {"conv_w",
               {"S*D", "K"},
               Elem::real,
               false,
               false,
               "depthwise; [., K-1] weighs the current token"},
              {"conv_norm", {"S", "D"}},
              {"history",
               {"(K-1)*dil", "S*D"},
               Elem::real,
               true,
               false,
               "RMSNorm(V) of the (K-1)*dil tokens before x[0], oldest first (absent: zeros)"}};
  s.outputs = {
      {"y", {"T", "S*D"}, Elem::real, "to add to x"},
      {"history", {"(K-1)*dil", "S*D"}, Elem::real, "the history to pass with the next chunk"}};
  s.keys = {{"streams", "", "S: mHC streams (hc_mult)"},
            {"kernel", "4", "K: convolution taps"},
            {"dilation", "3", "dil: tap spacing in tokens (max_ngram_size)"},
            {"eps", "1e-6", "eps of key_norm and query_norm"}};
  s.bind_keys = [op](const Keys& k, Dims& d) {
    d.bind("S", integer_at_least(k, op, "streams", 1));
    d.bind("K", integer_at_least(k, op, "kernel", 1));
    d.bind("dil", integer_at_least(k, op, "dilation", 1));
  };
  return with_run(s, [](auto& c) {
    using T = ctx_t<decltype(c)>;
    const int64_t T_ = c.dims["T"], S = c.dims["S"], D = c.dims["D"], K = c.dims["K"],
                  dil = c.dims["dil"];
    const int64_t H = (K - 1) * dil, W = S * D;
    EngramMixParams<T> p;
    p.y = c.out_view("y", {T_, W}, T_);
    // The history buffer is the op's in/out: the given history (or zeros), updated in place.
    std::vector<T>& hist = c.out("history", {H, W});
    if (c.has("history"))
      hist = c.real("history");
    else
      std::fill(hist.begin(), hist.end(), T(0));
    p.history = view2(hist.data(), H, W);
    p.x = c.view("x", T_);
    p.e = c.view("e", T_);
    p.w = {c.ptr("value_w"),  c.ptr("value_b"),    c.ptr("key_w"),  c.ptr("key_b"),
           c.ptr("key_norm"), c.ptr("query_norm"), c.ptr("conv_w"), c.ptr("conv_norm")};
    p.streams = S;
    p.kernel = K;
    p.dilation = dil;
    p.norm_eps = c.keys.real("eps");
    ref::engram_mix(p);
  });
}

}  // namespace

std::vector<OpSpec> engram_ops() {
  return {engram_hash_op(), engram_lookup_op(), engram_mix_op()};
}

}  // namespace dsv4::cli
