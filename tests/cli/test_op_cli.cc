// dsv4 op through files: every op round-trips (f32 and f64, outputs named and shaped as
// documented, f32 close to f64, a few bitwise against direct reference calls), and every
// class of bad input exits with status 2, one line on stderr naming the culprit, and no
// output file (op-contract.md).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <functional>
#include <map>

#include "model/safetensors.h"
#include "reference/attention.h"
#include "reference/indexer.h"
#include "reference/mla.h"
#include "reference/rmsnorm.h"
#include "tests/cli/cli_harness.h"
#include "tests/support/compare.h"
#include "tests/support/random.h"

namespace dsv4::test {
namespace {

struct In {
  std::vector<int64_t> shape;
  DType dtype = DType::F32;
  std::vector<double> real;   // for float dtypes
  std::vector<int64_t> ints;  // for I32 / I64
};

int64_t numel(const std::vector<int64_t>& s) {
  int64_t n = 1;
  for (int64_t d : s) n *= d;
  return n;
}

In rnd(std::vector<int64_t> shape, uint64_t seed, double scale = 1.0) {
  In t;
  t.shape = shape;
  t.real = uniform(size_t(numel(shape)), seed, -scale, scale);
  return t;
}
In ints(std::vector<int64_t> shape, std::vector<int64_t> v, DType dt = DType::I64) {
  In t;
  t.shape = std::move(shape);
  t.dtype = dt;
  t.ints = std::move(v);
  return t;
}

void write_inputs(const std::string& path, const std::map<std::string, In>& ts) {
  SafetensorsWriter w;
  for (const auto& [name, t] : ts) {
    if (t.dtype == DType::I64) {
      w.add(name, t.dtype, t.shape, t.ints.data(), t.ints.size() * 8);
    } else if (t.dtype == DType::I32) {
      std::vector<int32_t> v(t.ints.begin(), t.ints.end());
      w.add(name, t.dtype, t.shape, v.data(), v.size() * 4);
    } else {
      w.add_float(name, t.shape, t.real.data(), t.dtype);
    }
  }
  w.write(path);
}

struct Case {
  std::string op;
  std::map<std::string, In> inputs;
  std::string sets;  // " --set a=b ..."
  std::map<std::string, std::vector<int64_t>> outputs;  // name -> shape
  double rtol = 1e-4;  // f32 vs f64, relative to the output's max |value|
};

std::vector<Case> cases() {
  std::vector<Case> c;
  c.push_back({"rmsnorm", {{"x", rnd({5, 16}, 1)}, {"w", rnd({16}, 2)}}, "", {{"y", {5, 16}}}});
  c.push_back({"layernorm", {{"x", rnd({5, 16}, 3)}, {"w", rnd({16}, 4)}, {"b", rnd({16}, 5)}}, "", {{"y", {5, 16}}}});
  c.push_back({"rope", {{"x", rnd({3, 2, 128}, 6)}}, " --set preset=v4-compressed --set pos0=70000", {{"y", {3, 2, 128}}}});
  c.push_back({"rope", {{"x", rnd({3, 128}, 7)}}, " --set theta=10000 --set inverse=1", {{"y", {3, 128}}}});
  c.push_back({"hadamard", {{"x", rnd({4, 32}, 8)}}, "", {{"y", {4, 32}}}});
  c.push_back({"quant_fp8", {{"x", rnd({4, 512}, 9)}}, " --set dims=448", {{"y", {4, 512}}}});
  c.push_back({"quant_fp4", {{"x", rnd({4, 128}, 10)}}, "", {{"y", {4, 128}}}});
  {
    std::map<std::string, In> in{{"x", rnd({9, 16}, 11)},       {"wkv", rnd({256, 16}, 12, 0.3)},
                                 {"wgate", rnd({256, 16}, 13)}, {"ape", rnd({4, 256}, 14)},
                                 {"norm", rnd({128}, 15)}};
    std::map<std::string, std::vector<int64_t>> out{{"entries", {2, 128}}, {"state_kv", {8, 256}}, {"state_score", {8, 256}}};
    c.push_back({"compressor", in, "", out});
    c.push_back({"compressor", in, " --set path=decode", out});
  }
  c.push_back({"compressor",
               {{"x", rnd({130, 16}, 16)}, {"wkv", rnd({128, 16}, 17, 0.3)}, {"wgate", rnd({128, 16}, 18)},
                {"ape", rnd({128, 128}, 19)}, {"norm", rnd({128}, 20)}},
               " --set ratio=128",
               {{"entries", {1, 128}}, {"state_kv", {128, 128}}, {"state_score", {128, 128}}}});
  c.push_back({"indexer_query",
               {{"cq", rnd({5, 8}, 21)}, {"x", rnd({5, 16}, 22)}, {"weights_proj", rnd({4, 16}, 23)},
                {"wq_b", rnd({4 * 64, 8}, 24)}},
               " --set head_dim=64 --set pos0=3",
               {{"q", {5, 4, 64}}, {"w", {5, 4}}}});
  c.push_back({"indexer", {{"q", rnd({6, 4, 32}, 25)}, {"k", rnd({3, 32}, 26)}, {"w", rnd({6, 4}, 27)}},
               " --set topk=2 --set pos0=6", {{"scores", {6, 3}}, {"indices", {6, 2}}}});
  c.push_back({"attention",
               {{"q", rnd({3, 2, 64}, 28)}, {"kv", rnd({5, 64}, 29)}, {"comp", rnd({4, 64}, 30)},
                {"sink", rnd({2}, 31)}, {"indices", ints({3, 2}, {0, 2, -1, 1, 3, 2}, DType::I32)}},
               " --set pos0=13", {{"o", {3, 2, 64}}, {"lse", {3, 2}}}});
  c.push_back({"attention",
               {{"q", rnd({2, 2, 64}, 32)}, {"kv", rnd({4, 64}, 33)}, {"comp", rnd({2, 64}, 34)}, {"sink", rnd({2}, 35)}},
               " --set ratio=128 --set pos0=300", {{"o", {2, 2, 64}}, {"lse", {2, 2}}}});
  c.push_back({"query_path",
               {{"x", rnd({3, 16}, 36)}, {"wq_a", rnd({8, 16}, 37)}, {"q_norm", rnd({8}, 38)}, {"wq_b", rnd({256, 8}, 39)}},
               " --set heads=2 --set head_dim=128", {{"cq", {3, 8}}, {"q", {3, 2, 128}}}});
  c.push_back({"window_kv", {{"x", rnd({3, 16}, 40)}, {"wkv", rnd({128, 16}, 41)}, {"kv_norm", rnd({128}, 42)}},
               " --set preset=v4-compressed", {{"kv", {3, 128}}}});
  c.push_back({"output_proj", {{"o", rnd({3, 4, 128}, 43)}, {"wo_a", rnd({16, 256}, 44)}, {"wo_b", rnd({16, 16}, 45)}},
               " --set pos0=5", {{"y", {3, 16}}}});
  {
    std::map<std::string, In> in{
        {"x", rnd({10, 16}, 46)},
        {"attn.attn_sink", rnd({2}, 47)},
        {"attn.wq_a.weight", rnd({8, 16}, 48)},
        {"attn.q_norm.weight", rnd({8}, 49)},
        {"attn.wq_b.weight", rnd({256, 8}, 50)},
        {"attn.wkv.weight", rnd({128, 16}, 51)},
        {"attn.kv_norm.weight", rnd({128}, 52)},
        {"attn.wo_a.weight", rnd({8, 256}, 53)},
        {"attn.wo_b.weight", rnd({16, 8}, 54)},
        {"attn.compressor.wkv.weight", rnd({256, 16}, 55)},
        {"attn.compressor.wgate.weight", rnd({256, 16}, 56)},
        {"attn.compressor.ape", rnd({4, 256}, 57)},
        {"attn.compressor.norm.weight", rnd({128}, 58)},
        {"attn.indexer.weights_proj.weight", rnd({2, 16}, 59)},
        {"attn.indexer.wq_b.weight", rnd({128, 8}, 60)},
        {"attn.indexer.compressor.wkv.weight", rnd({128, 16}, 61)},
        {"attn.indexer.compressor.wgate.weight", rnd({128, 16}, 62)},
        {"attn.indexer.compressor.ape", rnd({4, 128}, 63)},
        {"attn.indexer.compressor.norm.weight", rnd({64}, 64)},
    };
    c.push_back({"attention_layer", in, " --set ratio=4 --set head_dim=128 --set index_head_dim=64 --set topk=1",
                 {{"y", {10, 16}}, {"topk", {10, 1}}}});
  }
  c.push_back({"sinkhorn", {{"logits", rnd({3, 4, 4}, 65)}}, "", {{"m", {3, 4, 4}}}});
  c.push_back({"hc_pre", {{"x", rnd({2, 4, 8}, 66)}, {"fn", rnd({24, 32}, 67)}, {"base", rnd({24}, 68)}, {"scale", rnd({3}, 69)}},
               "", {{"u", {2, 8}}, {"post", {2, 4}}, {"comb", {2, 4, 4}}}});
  c.push_back({"hc_post", {{"x", rnd({2, 4, 8}, 70)}, {"f", rnd({2, 8}, 71)}, {"post", rnd({2, 4}, 72)}, {"comb", rnd({2, 4, 4}, 73)}},
               "", {{"y", {2, 4, 8}}}});
  c.push_back({"hc_head", {{"x", rnd({2, 4, 8}, 74)}, {"fn", rnd({4, 32}, 75)}, {"base", rnd({4}, 76)}, {"scale", rnd({1}, 77)}},
               "", {{"u", {2, 8}}}});
  c.push_back({"moe_route", {{"x", rnd({3, 16}, 78)}, {"gate", rnd({8, 16}, 79)}, {"bias", rnd({8}, 80, 0.1)}},
               " --set topk=2", {{"experts", {3, 2}}, {"weights", {3, 2}}}});
  c.push_back({"moe_route",
               {{"x", rnd({3, 16}, 81)}, {"gate", rnd({8, 16}, 82)},
                {"tid2eid", ints({10, 2}, {0, 1, 2, 3, 4, 5, 6, 7, 0, 2, 1, 3, 5, 7, 4, 6, 1, 5, 2, 6})},
                {"ids", ints({3}, {9, 0, 4})}},
               " --set topk=2 --set route_scale=2.5", {{"experts", {3, 2}}, {"weights", {3, 2}}}});
  c.push_back({"moe",
               {{"x", rnd({3, 16}, 83)}, {"gate", rnd({8, 16}, 84)}, {"bias", rnd({8}, 85, 0.1)},
                {"w1", rnd({8, 4, 16}, 86)}, {"w3", rnd({8, 4, 16}, 87)}, {"w2", rnd({8, 16, 4}, 88)},
                {"shared_w1", rnd({4, 16}, 89)}, {"shared_w3", rnd({4, 16}, 90)}, {"shared_w2", rnd({16, 4}, 91)}},
               " --set topk=2", {{"y", {3, 16}}, {"experts", {3, 2}}, {"weights", {3, 2}}}});
  c.push_back({"mla", {{"q", rnd({2, 2, 96}, 92)}, {"kv", rnd({6, 96}, 93)}}, " --set rope_dim=32",
               {{"o", {2, 2, 64}}, {"lse", {2, 2}}}});
  c.push_back({"mla",
               {{"q", rnd({2, 2, 96}, 94)}, {"kv", rnd({6, 96}, 95)}, {"indices", ints({2, 3}, {0, 4, -1, 5, 5, 1})}},
               " --set rope_dim=32", {{"o", {2, 2, 64}}, {"lse", {2, 2}}}});
  c.push_back({"dsa_indexer", {{"q", rnd({2, 2, 16}, 96)}, {"k", rnd({6, 16}, 97)}, {"w", rnd({2, 2}, 98)}},
               " --set topk=3", {{"scores", {2, 6}}, {"indices", {2, 3}}}});
  return c;
}

// The n-th case of an op (n counts from 0 among that op's cases).
Case case_of(const std::string& op, int n = 0) {
  for (const auto& c : cases())
    if (c.op == op && n-- == 0) return c;
  throw std::logic_error("no case " + op);
}

std::string quote(const std::string& s) { return "'" + s + "'"; }

class OpRoundTrip : public ::testing::TestWithParam<size_t> {};

TEST_P(OpRoundTrip, F32AndF64FilesAreComplete) {
  const Case c = cases()[GetParam()];
  TempDir tmp;
  const std::string in = tmp.file("in.safetensors");
  write_inputs(in, c.inputs);
  std::map<std::string, std::vector<double>> f32_vals;
  for (const std::string prec : {"f32", "f64"}) {
    const std::string out = tmp.file("out_" + prec + ".safetensors");
    const auto r = run_dsv4("op " + c.op + " --in " + quote(in) + " --out " + quote(out) +
                                " --precision " + prec + c.sets,
                            tmp);
    ASSERT_EQ(r.status, 0) << c.op << c.sets << ": " << r.err;
    SafetensorsReader rd(out);
    EXPECT_EQ(rd.metadata().at("dsv4_op"), c.op);
    ASSERT_EQ(rd.tensors().size(), c.outputs.size()) << c.op;
    for (const auto& [name, shape] : c.outputs) {
      const TensorInfo* t = rd.find(name);
      ASSERT_NE(t, nullptr) << c.op << ": output '" << name << "' missing";
      EXPECT_EQ(t->shape, shape) << c.op << ": output '" << name << "'";
      std::vector<double> v;
      if (t->dtype == DType::I32) {
        for (int64_t x : rd.read_int(*t)) v.push_back(double(x));
        for (double x : v) EXPECT_GE(x, -1) << c.op << " " << name << ": unwritten index";
      } else {
        EXPECT_EQ(t->dtype, prec == "f32" ? DType::F32 : DType::F64) << name;
        v = rd.read_float<double>(*t);
        for (double x : v) {
          ASSERT_FALSE(std::isnan(x)) << c.op << " " << name << ": NaN (unwritten output?)";
          if (name != "scores" && name != "state_score") {
            ASSERT_TRUE(std::isfinite(x)) << c.op << " " << name;
          }
        }
      }
      if (prec == "f32") {
        f32_vals[name] = v;
      } else {
        double scale = 0;
        for (double x : v)
          if (std::isfinite(x)) scale = std::max(scale, std::fabs(x));
        EXPECT_TRUE(all_close(f32_vals[name], v, c.rtol * std::max(scale, 1.0)))
            << c.op << c.sets << ": f32 vs f64 output '" << name << "'";
      }
    }
  }
  // Success leaves exactly the input and the outputs: no temporary files.
  auto e = tmp.entries();
  std::sort(e.begin(), e.end());
  EXPECT_EQ(e, (std::vector<std::string>{"in.safetensors", "out_f32.safetensors", "out_f64.safetensors"}));
}

INSTANTIATE_TEST_SUITE_P(AllOps, OpRoundTrip, ::testing::Range<size_t>(0, cases().size()),
                         [](const ::testing::TestParamInfo<size_t>& i) {
                           return cases()[i.param].op + "_" + std::to_string(i.param);
                         });

TEST(OpCli, ListNamesEveryContractOp) {
  TempDir tmp;
  const auto r = run_dsv4("op --list", tmp);
  ASSERT_EQ(r.status, 0);
  const std::string listing = "\n" + r.out;
  for (const char* op : {"rmsnorm", "rope", "hadamard", "quant_fp8", "quant_fp4", "compressor", "indexer",
                         "attention", "output_proj", "sinkhorn", "hc_pre", "hc_post", "moe_route",
                         "attention_layer", "mla", "dsa_indexer"})
    EXPECT_NE(listing.find(std::string("\n") + op + " "), std::string::npos) << op;
}

TEST(OpCli, PerOpHelpPrintsTheContract) {
  TempDir tmp;
  const auto r = run_dsv4("op attention --help", tmp);
  ASSERT_EQ(r.status, 0);
  for (const char* s : {"q ", "kv ", "comp ", "sink ", "indices ", "lse ", "window", "v4-architecture.md"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s;
  EXPECT_EQ(run_dsv4("op nosuchop --help", tmp).status, 2);
}

// f64 results equal a direct reference call bit for bit: the CLI adds nothing but files.
TEST(OpCli, F64OutputsAreTheReferenceBitForBit) {
  TempDir tmp;
  const Case att = case_of("attention");
  const std::string in = tmp.file("in.safetensors"), out = tmp.file("out.safetensors");
  write_inputs(in, att.inputs);
  ASSERT_EQ(run_dsv4("op attention --in " + in + " --out " + out + " --precision f64" + att.sets, tmp).status, 0);
  SafetensorsReader rd(out), ri(in);
  auto q = ri.read_float<double>(*ri.find("q")), kv = ri.read_float<double>(*ri.find("kv"));
  auto comp = ri.read_float<double>(*ri.find("comp")), sink = ri.read_float<double>(*ri.find("sink"));
  std::vector<int32_t> idx;
  for (int64_t v : ri.read_int(*ri.find("indices"))) idx.push_back(int32_t(v));
  std::vector<double> o(3 * 2 * 64), lse(6);
  AttentionParams<double> p;
  p.q = view2<const double>(q.data(), 3, 128);
  p.kv = view2<const double>(kv.data(), 5, 64);
  p.comp = view2<const double>(comp.data(), 4, 64);
  p.sink = sink.data();
  p.indices = view2<const int32_t>(idx.data(), 3, 2);
  p.heads = 2;
  p.pos0 = 13;
  p.o = view2(o.data(), 3, 128);
  p.lse = view2(lse.data(), 3, 2);
  ref::attention(p);
  EXPECT_TRUE(bitwise_equal(rd.read_float<double>(*rd.find("o")), o));
  EXPECT_TRUE(bitwise_equal(rd.read_float<double>(*rd.find("lse")), lse));
}

TEST(OpCli, CompressorDecodePathMatchesPrefill) {
  TempDir tmp;
  const std::string in = tmp.file("in.safetensors");
  write_inputs(in, case_of("compressor").inputs);
  for (const std::string path : {"prefill", "decode"})
    ASSERT_EQ(run_dsv4("op compressor --in " + in + " --out " + tmp.file(path + ".st") +
                           " --precision f64 --set path=" + path, tmp).status, 0);
  SafetensorsReader a(tmp.file("prefill.st")), b(tmp.file("decode.st"));
  for (const char* n : {"entries", "state_kv", "state_score"})
    EXPECT_TRUE(all_close(a.read_float<double>(*a.find(n)), b.read_float<double>(*b.find(n)), 1e-12)) << n;
}

TEST(OpCli, BF16AndF64InputsAreAccepted) {
  TempDir tmp;
  std::map<std::string, In> in{{"x", rnd({4, 16}, 99)}, {"w", rnd({16}, 100)}};
  in["x"].dtype = DType::BF16;
  in["w"].dtype = DType::F64;
  write_inputs(tmp.file("in.st"), in);
  const auto r = run_dsv4("op rmsnorm --in " + tmp.file("in.st") + " --out " + tmp.file("out.st"), tmp);
  ASSERT_EQ(r.status, 0) << r.err;
}

// ---- bad input: status 2, one line naming the culprit, no output file -------------------

struct Bad {
  std::string name;     // test label
  std::string op;
  std::map<std::string, In> inputs;  // empty: use raw file bytes below
  std::string sets;
  std::string expect;   // substring of the one stderr line
  std::string raw;      // raw input file bytes (corrupt files)
  std::string extra;    // extra command-line words
};

std::string raw_file(const std::string& header, size_t data_bytes, uint64_t claimed_len = 0) {
  std::string s(8, '\0');
  const uint64_t n = claimed_len ? claimed_len : header.size();
  for (int i = 0; i < 8; ++i) s[i] = char((n >> (8 * i)) & 0xFF);
  return s + header + std::string(data_bytes, '\0');
}

std::vector<Bad> bad_cases() {
  const auto att = case_of("attention").inputs;
  auto without = [](std::map<std::string, In> m, const std::string& k) {
    m.erase(k);
    return m;
  };
  auto with = [](std::map<std::string, In> m, const std::string& k, In v) {
    m[k] = std::move(v);
    return m;
  };
  In nan_x = rnd({5, 16}, 1);
  nan_x.real[7] = std::nan("");
  In inf_x = rnd({5, 16}, 1);
  inf_x.real[3] = INFINITY;
  In int_x = ints({5, 16}, std::vector<int64_t>(80, 1), DType::I32);
  std::map<std::string, In> rms{{"x", rnd({5, 16}, 1)}};
  auto layer = case_of("attention_layer").inputs;
  std::vector<Bad> b;
  b.push_back({"UnknownOp", "nosuchop", rms, "", "unknown op 'nosuchop'"});
  b.push_back({"MissingTensor", "attention", without(att, "sink"), "", "tensor 'sink' is missing"});
  b.push_back({"WrongRank", "attention", with(att, "q", rnd({3, 128}, 5)), "", "tensor 'q': expected shape [T, H, d]"});
  b.push_back({"WrongShape", "attention", with(att, "kv", rnd({5, 32}, 5)), "",
               "tensor 'kv': expected shape [Tk, d] = [5, 64], found [5, 32]"});
  b.push_back({"ExpressionShape", "query_path", case_of("query_path").inputs, " --set heads=3 --set head_dim=128",
               "tensor 'wq_b': expected shape [H*d, q_rank] = [384, 8], found [256, 8]"});
  b.push_back({"WrongDtype", "rmsnorm", {{"x", int_x}}, "", "tensor 'x': expected dtype F32, F64, BF16 or F16, found I32"});
  b.push_back({"IndicesAsFloat", "attention", with(att, "indices", rnd({3, 2}, 5)), "",
               "tensor 'indices': expected dtype I32 or I64, found F32"});
  b.push_back({"NaNInput", "rmsnorm", {{"x", nan_x}}, "", "tensor 'x': NaN at flat index 7"});
  b.push_back({"InfInput", "rmsnorm", {{"x", inf_x}}, "", "tensor 'x': infinity at flat index 3"});
  b.push_back({"UnknownKey", "rmsnorm", rms, " --set epsilon=1", "unknown key 'epsilon'"});
  b.push_back({"MalformedSet", "rmsnorm", rms, " --set eps", "--set expects KEY=VALUE"});
  b.push_back({"KeyNotANumber", "indexer", case_of("indexer").inputs, " --set topk=abc", "key 'topk': expected an integer"});
  b.push_back({"KeyChoice", "compressor", case_of("compressor").inputs, " --set quant=fp16", "key 'quant': expected one of"});
  b.push_back({"IndexOutOfRange", "attention", with(att, "indices", ints({3, 2}, {0, 9, 1, 1, 1, 1}, DType::I32)), " --set pos0=13",
               "tensor 'indices': value 9"});
  b.push_back({"NotPowerOfTwo", "hadamard", {{"x", rnd({2, 24}, 5)}}, "", "power of two"});
  b.push_back({"LayerMissingIndexer", "attention_layer", without(layer, "attn.indexer.wq_b.weight"),
               " --set ratio=4 --set head_dim=128 --set index_head_dim=64",
               "tensor 'attn.indexer.wq_b.weight' is required for ratio 4"});
  b.push_back({"HashWithoutIds", "moe_route", without(case_of("moe_route", 1).inputs, "ids"), " --set topk=2",
               "tensor 'ids' [T] is required with 'tid2eid'"});
  b.push_back({"BadPrecision", "rmsnorm", rms, " --precision f16", "--precision: expected f32 or f64"});
  b.push_back({"BadBackend", "rmsnorm", rms, " --backend tpu", "--backend: expected ref or cuda"});
  b.push_back({"HeaderTooLong", "rmsnorm", {}, "", "header length", raw_file("{}", 0, 1000)});
  b.push_back({"HeaderNotJson", "rmsnorm", {}, "", "not valid JSON", raw_file("{\"x\": [", 0)});
  b.push_back({"OffsetsPastEnd", "rmsnorm", {}, "", "past the data section",
               raw_file(R"({"x":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]}})", 8)});
  b.push_back({"SizeMismatch", "rmsnorm", {}, "", "needs 16",
               raw_file(R"({"x":{"dtype":"F32","shape":[2,2],"data_offsets":[0,12]}})", 16)});
  b.push_back({"Overlap", "rmsnorm", {}, "", "overlap",
               raw_file(R"({"x":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"w":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}})", 16)});
  b.push_back({"UnknownDtype", "rmsnorm", {}, "", "unknown dtype 'F12'",
               raw_file(R"({"x":{"dtype":"F12","shape":[2],"data_offsets":[0,4]}})", 4)});
  b.push_back({"TruncatedFile", "rmsnorm", {}, "", "shorter than the 8-byte header", std::string(5, '\0')});
  return b;
}

class BadInput : public ::testing::TestWithParam<size_t> {};

TEST_P(BadInput, ExitsTwoWithOneLineAndNoOutput) {
  const Bad c = bad_cases()[GetParam()];
  TempDir tmp;
  const std::string in = tmp.file("in.safetensors"), out = tmp.file("out.safetensors");
  if (c.raw.empty()) {
    write_inputs(in, c.inputs);
  } else {
    std::ofstream(in, std::ios::binary) << c.raw;
  }
  const auto r = run_dsv4("op " + c.op + " --in " + in + " --out " + out + c.sets + c.extra, tmp);
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_EQ(count_lines(r.err), 1) << r.err;
  EXPECT_NE(r.err.find(c.expect), std::string::npos) << "stderr: " << r.err << "expected: " << c.expect;
  EXPECT_FALSE(std::filesystem::exists(out));
  EXPECT_EQ(tmp.entries(), std::vector<std::string>{"in.safetensors"});
}

INSTANTIATE_TEST_SUITE_P(AllClasses, BadInput, ::testing::Range<size_t>(0, bad_cases().size()),
                         [](const ::testing::TestParamInfo<size_t>& i) { return bad_cases()[i.param].name; });

TEST(OpCli, MissingInputFileOutputDirAndSameFile) {
  TempDir tmp;
  auto r = run_dsv4("op rmsnorm --in " + tmp.file("nope.st") + " --out " + tmp.file("o.st"), tmp);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("nope.st"), std::string::npos) << r.err;
  write_inputs(tmp.file("in.st"), {{"x", rnd({2, 4}, 1)}});
  r = run_dsv4("op rmsnorm --in " + tmp.file("in.st") + " --out " + tmp.file("no/such/dir/o.st"), tmp);
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("does not exist"), std::string::npos) << r.err;
  r = run_dsv4("op rmsnorm --in " + tmp.file("in.st") + " --out " + tmp.file("in.st"), tmp);
  EXPECT_EQ(r.status, 2);
  EXPECT_TRUE(SafetensorsReader(tmp.file("in.st")).find("x") != nullptr);  // input intact
}

TEST(OpCli, NegativeInfinitySinkMeansNoSink) {
  TempDir tmp;
  auto in = case_of("attention").inputs;
  in["sink"].real = {-INFINITY, -INFINITY};
  write_inputs(tmp.file("in.st"), in);
  const auto r = run_dsv4("op attention --in " + tmp.file("in.st") + " --out " + tmp.file("o.st") + " --set pos0=13", tmp);
  EXPECT_EQ(r.status, 0) << r.err;
}

TEST(OpCli, ExistingOutputIsReplacedOnlyOnSuccess) {
  TempDir tmp;
  write_inputs(tmp.file("in.st"), {{"x", rnd({2, 4}, 1)}});
  std::ofstream(tmp.file("o.st")) << "previous";
  auto r = run_dsv4("op rmsnorm --in " + tmp.file("in.st") + " --out " + tmp.file("o.st") + " --set eps=x", tmp);
  EXPECT_EQ(r.status, 2);
  EXPECT_EQ(slurp(tmp.file("o.st")), "previous");
  r = run_dsv4("op rmsnorm --in " + tmp.file("in.st") + " --out " + tmp.file("o.st"), tmp);
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(SafetensorsReader(tmp.file("o.st")).find("y"), nullptr);
}

}  // namespace
}  // namespace dsv4::test

namespace dsv4::test {
namespace {

// docs/op-contract.md carries the --list output verbatim (scripts/gen-op-docs refreshes it).
TEST(OpCli, DocsListingMatchesTheBinary) {
  TempDir tmp;
  const auto r = run_dsv4("op --list", tmp);
  ASSERT_EQ(r.status, 0);
  const std::string doc = slurp(std::string(DSV4_TEST_DATA_DIR) + "/../../docs/op-contract.md");
  const std::string begin = "<!-- op-list:begin -->\n```\n", end = "```\n<!-- op-list:end -->";
  const auto a = doc.find(begin), b = doc.find(end);
  ASSERT_NE(a, std::string::npos);
  ASSERT_NE(b, std::string::npos);
  EXPECT_EQ(doc.substr(a + begin.size(), b - a - begin.size()), r.out)
      << "docs/op-contract.md is stale: run scripts/gen-op-docs";
}

}  // namespace
}  // namespace dsv4::test
