// dsv4 op engram_hash / engram_lookup / engram_mix through files (op-contract.md): each op's
// outputs equal a direct call of the reference on the same inputs (bitwise: the CLI only reads,
// converts exactly and writes), the chunked CLI runs carry their history, and bad input exits
// with status 2, one stderr line naming the culprit, and no output file.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "model/safetensors.h"
#include "reference/engram.h"
#include "tests/cli/cli_harness.h"
#include "tests/support/compare.h"
#include "tests/support/random.h"
#include "tests/support/vectors.h"

namespace dsv4::test {
namespace {

// One input tensor: integers (I32 / I64), floats converted to `dtype`, or raw bytes (BF16 bits).
struct Tensor {
  std::vector<int64_t> shape;
  DType dtype = DType::F32;
  std::vector<double> real;
  std::vector<int64_t> ints;
  std::vector<uint16_t> bf16_bits;
};

Tensor reals(std::vector<int64_t> shape, std::vector<double> v, DType dt = DType::F32) {
  return {std::move(shape), dt, std::move(v), {}, {}};
}
Tensor integers(std::vector<int64_t> shape, std::vector<int64_t> v, DType dt = DType::I64) {
  return {std::move(shape), dt, {}, std::move(v), {}};
}
// Uniform in [-scale, scale), rounded to float so F32 files and float runs see the same values.
Tensor random_f32(std::vector<int64_t> shape, uint64_t seed, double scale = 1.0) {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return reals(std::move(shape), float_exact(uniform(size_t(n), seed, -scale, scale)));
}

void write_file(const std::string& path, const std::map<std::string, Tensor>& ts) {
  SafetensorsWriter w;
  for (const auto& [name, t] : ts) {
    if (t.dtype == DType::I64) {
      w.add(name, t.dtype, t.shape, t.ints.data(), t.ints.size() * 8);
    } else if (t.dtype == DType::I32) {
      const std::vector<int32_t> v(t.ints.begin(), t.ints.end());
      w.add(name, t.dtype, t.shape, v.data(), v.size() * 4);
    } else if (!t.bf16_bits.empty()) {
      w.add(name, DType::BF16, t.shape, t.bf16_bits.data(), t.bf16_bits.size() * 2);
    } else {
      w.add_float(name, t.shape, t.real.data(), t.dtype);
    }
  }
  w.write(path);
}

std::string q(const std::string& s) {
  return "'" + s + "'";
}

// Runs `dsv4 op NAME` on the inputs; returns the reader of the output (fails the test on a
// non-zero status).
struct OpRun {
  TempDir tmp;
  std::unique_ptr<SafetensorsReader> out;
  CmdResult result;
};
std::unique_ptr<OpRun> run_op(const std::string& op, const std::map<std::string, Tensor>& in,
                              const std::string& args) {
  auto r = std::make_unique<OpRun>();
  const std::string in_path = r->tmp.file("in.safetensors"),
                    out_path = r->tmp.file("out.safetensors");
  write_file(in_path, in);
  r->result =
      run_dsv4("op " + op + " --in " + q(in_path) + " --out " + q(out_path) + " " + args, r->tmp);
  EXPECT_EQ(r->result.status, 0) << op << " " << args << ": " << r->result.err;
  if (r->result.status == 0) r->out = std::make_unique<SafetensorsReader>(out_path);
  return r;
}

std::vector<int64_t> ints_of(const SafetensorsReader& r, const std::string& name) {
  const TensorInfo* t = r.find(name);
  EXPECT_NE(t, nullptr) << name;
  if (!t) return {};
  EXPECT_EQ(t->dtype, DType::I32) << name;
  return r.read_int(*t);
}
template <class T>
std::vector<T> reals_of(const SafetensorsReader& r, const std::string& name) {
  const TensorInfo* t = r.find(name);
  EXPECT_NE(t, nullptr) << name;
  if (!t) return {};
  EXPECT_EQ(t->dtype, (std::is_same_v<T, double> ? DType::F64 : DType::F32)) << name;
  return r.read_float<T>(*t);
}

// ---- engram_hash ----------------------------------------------------------------------------

constexpr int64_t kVocab = 40;
const std::vector<int64_t> kBase = {101, 211};  // vocab_size, orders 2 and 3
constexpr int64_t kHeads = 2, kLayers = 2, kLayerIndex = 1, kLayerId = 3, kSeed = 5, kPad = 1;
const std::string kHashKeys =
    "--set heads=2 --set vocab_size=101,211 --set layer=3 --set layer_index=1 --set n_layers=2 "
    "--set seed=5 "
    "--set pad_id=1";

std::vector<int64_t> folding_map() {  // 40 raw ids onto 13 canonical ones
  std::vector<int64_t> m;
  for (int64_t i = 0; i < kVocab; ++i) m.push_back((i * 7 + 3) % 13);
  return m;
}

// The reference on the same inputs: rows, next history, primes.
struct HashRef {
  std::vector<int64_t> rows, history, primes;
};
HashRef hash_ref(const std::vector<int64_t>& ids64, const std::vector<int64_t>& map64,
                 std::vector<int32_t> history) {
  const std::vector<int32_t> map(map64.begin(), map64.end()), ids(ids64.begin(), ids64.end());
  HashRef r;
  const auto primes = engram_primes(kLayers, kBase, kHeads)[kLayerIndex];
  const EngramHash h = engram_layer_hash(primes, engram_multipliers(kSeed, kLayerId, 3, kVocab), 3,
                                         kHeads, map.empty() ? nullptr : map.data(), kVocab, kPad);
  std::vector<int64_t> rows(ids.size() * 4);
  EngramHashParams p{&h, ids.data(), int64_t(ids.size()), history.data(),
                     view2(rows.data(), int64_t(ids.size()), 4)};
  ref::engram_hash(p);
  r.rows = rows;
  for (int32_t v : engram_advance_history(h, history, ids.data(), int64_t(ids.size())))
    r.history.push_back(v);
  r.primes.assign(primes.begin(), primes.end());
  return r;
}

TEST(EngramOpCli, HashEqualsTheReference) {
  const std::vector<int64_t> ids = {7, 39, 0, 1, 13, 13, 22};
  // With a token map and a history (one slot before the sequence), I32 ids.
  {
    const auto r = run_op("engram_hash",
                          {{"ids", integers({7}, ids, DType::I32)},
                           {"token_map", integers({kVocab}, folding_map())},
                           {"history", integers({2}, {-1, 9})}},
                          kHashKeys);
    ASSERT_TRUE(r->out);
    const HashRef want = hash_ref(ids, folding_map(), {-1, 9});
    EXPECT_EQ(ints_of(*r->out, "rows"), want.rows);
    EXPECT_EQ(r->out->find("rows")->shape, (std::vector<int64_t>{7, 4}));
    EXPECT_EQ(ints_of(*r->out, "history"), want.history);
    EXPECT_EQ(ints_of(*r->out, "primes"), want.primes);
  }
  // Identity map (vocab from the key), no history.
  {
    const auto r =
        run_op("engram_hash", {{"ids", integers({7}, ids)}}, kHashKeys + " --set vocab=40");
    ASSERT_TRUE(r->out);
    EXPECT_EQ(ints_of(*r->out, "rows"), hash_ref(ids, {}, {-1, -1}).rows);
  }
}

TEST(EngramOpCli, HashChunksCarryTheHistoryOutput) {
  const std::vector<int64_t> ids = {7, 39, 0, 1, 13, 13, 22};
  const auto whole = run_op(
      "engram_hash",
      {{"ids", integers({7}, ids)}, {"token_map", integers({kVocab}, folding_map())}}, kHashKeys);
  ASSERT_TRUE(whole->out);
  const auto first = run_op("engram_hash",
                            {{"ids", integers({4}, {ids.begin(), ids.begin() + 4})},
                             {"token_map", integers({kVocab}, folding_map())}},
                            kHashKeys);
  ASSERT_TRUE(first->out);
  const auto second = run_op("engram_hash",
                             {{"ids", integers({3}, {ids.begin() + 4, ids.end()})},
                              {"token_map", integers({kVocab}, folding_map())},
                              {"history", integers({2}, ints_of(*first->out, "history"))}},
                             kHashKeys);
  ASSERT_TRUE(second->out);
  std::vector<int64_t> chunked = ints_of(*first->out, "rows");
  for (int64_t v : ints_of(*second->out, "rows")) chunked.push_back(v);
  EXPECT_EQ(chunked, ints_of(*whole->out, "rows"));
  EXPECT_EQ(ints_of(*second->out, "history"), ints_of(*whole->out, "history"));
}

// ---- engram_lookup --------------------------------------------------------------------------

constexpr int64_t kTableRows = 13, kDe = 4;
const std::vector<int64_t> kLookupRows = {0, 12, 5, 5, 7, 1};  // [3, 2]

template <class T>
std::vector<T> lookup_ref(const void* table, TableDType dt) {
  std::vector<T> e(3 * 2 * kDe);
  EngramLookupParams<T> p;
  p.table = {table, dt, kTableRows, kDe};
  p.rows = view2(kLookupRows.data(), 3, 2);
  p.e = view2(e.data(), 3, 2 * kDe);
  ref::engram_lookup(p);
  return e;
}

TEST(EngramOpCli, LookupEqualsTheReferenceForF32AndBF16Tables) {
  const Tensor f32 = random_f32({kTableRows, kDe}, 7, 3.0);
  Tensor bf16 = reals({kTableRows, kDe}, {}, DType::BF16);
  for (float v : uniform<float>(size_t(kTableRows * kDe), 8, -100, 100)) {
    uint32_t bits;
    std::memcpy(&bits, &v, sizeof bits);
    bf16.bf16_bits.push_back(uint16_t(bits >> 16));
  }
  const std::vector<float> f32_table(f32.real.begin(), f32.real.end());
  for (const std::string prec : {"f32", "f64"}) {
    for (bool is_bf16 : {false, true}) {
      const auto r = run_op(
          "engram_lookup",
          {{"table", is_bf16 ? bf16 : f32}, {"rows", integers({3, 2}, kLookupRows, DType::I32)}},
          "--precision " + prec);
      ASSERT_TRUE(r->out);
      EXPECT_EQ(r->out->find("e")->shape, (std::vector<int64_t>{3, 2 * kDe}));
      const void* table =
          is_bf16 ? static_cast<const void*>(bf16.bf16_bits.data()) : f32_table.data();
      const TableDType dt = is_bf16 ? TableDType::bf16 : TableDType::f32;
      if (prec == "f32")
        EXPECT_TRUE(bitwise_equal(reals_of<float>(*r->out, "e"), lookup_ref<float>(table, dt)))
            << "bf16 " << is_bf16;
      else
        EXPECT_TRUE(bitwise_equal(reals_of<double>(*r->out, "e"), lookup_ref<double>(table, dt)))
            << "bf16 " << is_bf16;
    }
  }
}

// ---- engram_mix -----------------------------------------------------------------------------

constexpr int64_t kT = 5, kS = 2, kD = 8, kE = 12, kK = 4, kDil = 3, kH = (kK - 1) * kDil;

std::map<std::string, Tensor> mix_inputs(bool with_history) {
  std::map<std::string, Tensor> in{
      {"x", random_f32({kT, kS * kD}, 11, 2.0)},    {"e", random_f32({kT, kE}, 12)},
      {"value_w", random_f32({kD, kE}, 13, 0.3)},   {"value_b", random_f32({kD}, 14, 0.5)},
      {"key_w", random_f32({kS, kD, kE}, 15, 0.3)}, {"key_b", random_f32({kS, kD}, 16, 0.5)},
      {"key_norm", random_f32({kS, kD}, 17)},       {"query_norm", random_f32({kS, kD}, 18)},
      {"conv_w", random_f32({kS * kD, kK}, 19)},    {"conv_norm", random_f32({kS, kD}, 20)}};
  if (with_history) in["history"] = random_f32({kH, kS * kD}, 21, 2.0);
  return in;
}

template <class T>
std::pair<std::vector<T>, std::vector<T>> mix_ref(const std::map<std::string, Tensor>& in) {
  auto c = [&](const std::string& n) { return cast<T>(in.at(n).real); };
  const auto x = c("x"), e = c("e"), vw = c("value_w"), vb = c("value_b"), kw = c("key_w"),
             kb = c("key_b");
  const auto kn = c("key_norm"), qn = c("query_norm"), cw = c("conv_w"), cn = c("conv_norm");
  std::vector<T> hist =
      in.count("history") ? c("history") : std::vector<T>(size_t(kH * kS * kD), T(0));
  std::vector<T> y(size_t(kT * kS * kD));
  EngramMixParams<T> p;
  p.x = view2(x.data(), kT, kS * kD);
  p.e = view2(e.data(), kT, kE);
  p.w = {vw.data(), vb.data(), kw.data(), kb.data(), kn.data(), qn.data(), cw.data(), cn.data()};
  p.streams = kS;
  p.kernel = kK;
  p.dilation = kDil;
  p.history = view2(hist.data(), kH, kS * kD);
  p.y = view2(y.data(), kT, kS * kD);
  ref::engram_mix(p);
  return {y, hist};
}

TEST(EngramOpCli, MixEqualsTheReference) {
  for (bool with_history : {false, true}) {
    const auto in = mix_inputs(with_history);
    for (const std::string prec : {"f32", "f64"}) {
      const auto r = run_op("engram_mix", in, "--set streams=2 --precision " + prec);
      ASSERT_TRUE(r->out);
      EXPECT_EQ(r->out->find("y")->shape, (std::vector<int64_t>{kT, kS * kD}));
      EXPECT_EQ(r->out->find("history")->shape, (std::vector<int64_t>{kH, kS * kD}));
      if (prec == "f32") {
        const auto [y, hist] = mix_ref<float>(in);
        EXPECT_TRUE(bitwise_equal(reals_of<float>(*r->out, "y"), y)) << "history " << with_history;
        EXPECT_TRUE(bitwise_equal(reals_of<float>(*r->out, "history"), hist))
            << "history " << with_history;
      } else {
        const auto [y, hist] = mix_ref<double>(in);
        EXPECT_TRUE(bitwise_equal(reals_of<double>(*r->out, "y"), y)) << "history " << with_history;
        EXPECT_TRUE(bitwise_equal(reals_of<double>(*r->out, "history"), hist))
            << "history " << with_history;
      }
    }
  }
}

TEST(EngramOpCli, MixKernelOneHasAnEmptyHistory) {
  auto in = mix_inputs(false);
  in["conv_w"] = random_f32({kS * kD, 1}, 22);
  const auto r = run_op("engram_mix", in, "--set streams=2 --set kernel=1 --precision f64");
  ASSERT_TRUE(r->out);
  EXPECT_EQ(r->out->find("history")->shape, (std::vector<int64_t>{0, kS * kD}));
}

// ---- bad input ------------------------------------------------------------------------------

struct Bad {
  std::string name, op;
  std::map<std::string, Tensor> inputs;
  std::string args, expect;
};

std::vector<Bad> bad_cases() {
  const std::map<std::string, Tensor> hash{{"ids", integers({3}, {1, 2, 3})},
                                           {"token_map", integers({kVocab}, folding_map())}};
  const std::map<std::string, Tensor> lookup{{"table", random_f32({kTableRows, kDe}, 1)},
                                             {"rows", integers({3, 2}, kLookupRows)}};
  const auto mix = mix_inputs(true);
  auto with = [](std::map<std::string, Tensor> m, const std::string& k, Tensor t) {
    m[k] = std::move(t);
    return m;
  };
  auto without = [](std::map<std::string, Tensor> m, const std::string& k) {
    m.erase(k);
    return m;
  };
  Tensor f64_table =
      reals({kTableRows, kDe}, std::vector<double>(size_t(kTableRows * kDe), 0.1), DType::F64);
  std::vector<Bad> b;
  b.push_back({"HashIdOutOfRange", "engram_hash", with(hash, "ids", integers({3}, {1, 40, 3})),
               kHashKeys,
               "tensor 'ids': value 40 at flat index 1 is outside the vocabulary [0, 40)"});
  b.push_back({"HashNegativeId", "engram_hash", with(hash, "ids", integers({3}, {-1, 0, 3})),
               kHashKeys, "tensor 'ids': value -1 at flat index 0"});
  b.push_back({"HashMapOutOfRange", "engram_hash",
               with(hash, "token_map", integers({kVocab}, std::vector<int64_t>(kVocab, 40))),
               kHashKeys, "tensor 'token_map': value 40 at flat index 0"});
  b.push_back({"HashHistoryOutOfRange", "engram_hash",
               with(hash, "history", integers({2}, {-2, 3})), kHashKeys,
               "tensor 'history': value -2 at flat index 0 is outside -1 or the vocabulary"});
  b.push_back({"HashHistoryShape", "engram_hash", with(hash, "history", integers({3}, {1, 2, 3})),
               kHashKeys, "tensor 'history': expected shape [N-1] = [2], found [3]"});
  b.push_back({"HashMapShapeAgainstVocab", "engram_hash", hash, kHashKeys + " --set vocab=50",
               "tensor 'token_map': expected shape [V] = [50], found [40]"});
  b.push_back({"HashNoVocab", "engram_hash", without(hash, "token_map"), kHashKeys,
               "key 'vocab' is required"});
  b.push_back({"HashSizesPerOrder", "engram_hash", hash, "--set heads=2 --set vocab_size=101",
               "key 'vocab_size': expected 2 sizes (orders 2..3), found 1"});
  b.push_back({"HashSizesMalformed", "engram_hash", hash, "--set heads=2 --set vocab_size=101,x",
               "key 'vocab_size': expected comma-separated positive integers"});
  b.push_back(
      {"HashNoHeads", "engram_hash", hash, "--set vocab_size=101,211", "key 'heads' is required"});
  b.push_back({"HashLayerIndex", "engram_hash", hash,
               "--set heads=2 --set vocab_size=101,211 --set n_layers=2 --set layer_index=2",
               "key 'layer_index': expected < n_layers = 2, found 2"});
  b.push_back({"HashMaxNgram", "engram_hash", hash, kHashKeys + " --set max_ngram=1",
               "key 'max_ngram': expected an integer >= 2, found 1"});
  b.push_back({"HashPad", "engram_hash", hash,
               "--set heads=2 --set vocab_size=101,211 --set pad_id=40",
               "key 'pad_id': expected a token id in [0, 40)"});
  b.push_back({"LookupRowOutOfRange", "engram_lookup",
               with(lookup, "rows", integers({3, 2}, {0, 1, 2, 13, 4, 5})), "",
               "tensor 'rows': value 13 at flat index 3 is outside the table's rows [0, 13)"});
  b.push_back({"LookupNegativeRow", "engram_lookup",
               with(lookup, "rows", integers({3, 2}, {0, 1, 2, 3, -1, 5})), "",
               "tensor 'rows': value -1 at flat index 4"});
  b.push_back({"LookupF64Table", "engram_lookup", with(lookup, "table", f64_table),
               "--precision f64", "tensor 'table': value at flat index 0 is not an F32 value"});
  b.push_back({"LookupRowsAsFloat", "engram_lookup", with(lookup, "rows", random_f32({3, 2}, 3)),
               "", "tensor 'rows': expected dtype I32 or I64, found F32"});
  b.push_back({"MixNoStreams", "engram_mix", mix, "", "key 'streams' is required"});
  b.push_back({"MixKeyShape", "engram_mix", with(mix, "key_w", random_f32({kS, kD, kE - 1}, 4)),
               "--set streams=2",
               "tensor 'key_w': expected shape [S, D, E] = [2, 8, 12], found [2, 8, 11]"});
  b.push_back({"MixStreamsDoNotDivide", "engram_mix",
               with(mix, "x", random_f32({kT, kS * kD - 1}, 4)), "--set streams=2",
               "tensor 'x': expected shape [T, S*D] = [5, 16], found [5, 15]"});
  b.push_back({"MixConvTaps", "engram_mix", mix, "--set streams=2 --set kernel=3",
               "tensor 'conv_w': expected shape [S*D, K] = [16, 3], found [16, 4]"});
  b.push_back({"MixHistoryShape", "engram_mix", mix, "--set streams=2 --set dilation=2",
               "tensor 'history': expected shape [(K-1)*dil, S*D] = [6, 16], found [9, 16]"});
  b.push_back({"MixDilation", "engram_mix", mix, "--set streams=2 --set dilation=0",
               "key 'dilation': expected an integer >= 1, found 0"});
  b.push_back({"MixMissingWeight", "engram_mix", without(mix, "conv_norm"), "--set streams=2",
               "tensor 'conv_norm' is missing"});
  return b;
}

class EngramBadInput : public ::testing::TestWithParam<size_t> {};

TEST_P(EngramBadInput, ExitsTwoWithOneLineAndNoOutput) {
  const Bad c = bad_cases()[GetParam()];
  TempDir tmp;
  const std::string in = tmp.file("in.safetensors"), out = tmp.file("out.safetensors");
  write_file(in, c.inputs);
  const auto r = run_dsv4("op " + c.op + " --in " + q(in) + " --out " + q(out) + " " + c.args, tmp);
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find(c.expect), std::string::npos)
      << "stderr: " << r.err << "expected: " << c.expect;
  EXPECT_EQ(tmp.entries(), std::vector<std::string>{"in.safetensors"});
}

INSTANTIATE_TEST_SUITE_P(AllClasses, EngramBadInput,
                         ::testing::Range<size_t>(0, bad_cases().size()),
                         [](const ::testing::TestParamInfo<size_t>& i) {
                           return bad_cases()[i.param].name;
                         });

}  // namespace
}  // namespace dsv4::test
