#include "bench/claims.h"

#include <fmt/core.h>

#include <boost/json.hpp>

#include "bench/flops.h"
#include "model/config.h"
#include "model/kv_cache.h"

namespace dsv4 {

namespace {

constexpr int64_t kMillion = int64_t(1) << 20;
const char* kModels[] = {"v4-flash", "v4-pro", "v3.2", "v3"};

// The paper's accounting (§4): compressed entries + indexer keys; the window (128 entries
// per layer) and the FP32 compressor state are left out (< 0.5 % at 1M).
double kv_per_token(const std::string& preset, int64_t L, KvLayout l = KvLayout::fp8) {
  const KvBytes b = kv_bytes_analytic(config_preset(preset), L, l);
  return double(b.compressed + b.index_keys) / double(L);
}

double flops_at(const std::string& preset, int64_t L) { return decode_flops(config_preset(preset), L).total(); }

}  // namespace

double gqa8_bf16_bytes_per_token() { return 61.0 * 8 * 128 * 2 * 2; }

std::vector<int64_t> claim_lengths() {
  std::vector<int64_t> v;
  for (int64_t L = 4096; L <= kMillion; L *= 2) v.push_back(L);
  return v;
}

std::vector<Claim> kv_claims() {
  const int64_t L = kMillion;
  const double v32 = kv_per_token("v3.2", L);
  const std::string fp8 = "FP8 layouts: V4 584 B entry + 68 B FP4 indexer key; V3.2 656 B MLA row + 132 B FP8 key; window and state left out";
  return {
      {"V4-Pro KV vs V3.2", kv_per_token("v4-pro", L) / v32, 0.10, fp8},
      {"V4-Flash KV vs V3.2", kv_per_token("v4-flash", L) / v32, 0.07, fp8},
      {"V4-Pro KV vs BF16 GQA-8", kv_per_token("v4-pro", L) / gqa8_bf16_bytes_per_token(), 0.02,
       "GQA-8: 61 layers, 8 KV heads of 128, K and V in BF16 (249,856 B/token); V4-Pro in its FP8 layout"},
  };
}

std::vector<Claim> flops_claims() {
  const int64_t L = kMillion;
  const double v32 = flops_at("v3.2", L), flash = flops_at("v4-flash", L);
  const double paper_flash = 0.10;
  const auto ff = decode_flops(config_preset("v4-flash"), L);
  const std::string gap = fmt::format(
      "does not reproduce: reaching 10 % needs Flash {:.1f} GFLOP lower (its linear part is {:.1f}, attention {:.1f}, "
      "indexer {:.1f}) or V3.2 {:.0f} % higher; the paper's counting rule (precision weighting? what counts as "
      "attention?) is not published (spec §8 item 2), and the formula is not tuned to match",
      (flash - paper_flash * v32) / 1e9, ff.linear / 1e9, ff.attention / 1e9, ff.indexer / 1e9,
      100 * (flash / paper_flash / v32 - 1));
  return {
      {"V4-Pro decode FLOPs vs V3.2", flops_at("v4-pro", L) / v32, 0.27,
       "reproduces within a point with the counting of bench/flops.h"},
      {"V4-Flash decode FLOPs vs V3.2", flash / v32, paper_flash, gap},
  };
}

std::string kv_table_text() {
  std::string s = "KV cache per token (compressed entries + indexer keys; window and compressor state left out), deployment layouts\n\n";
  s += fmt::format("{:>9}", "context");
  for (const char* m : kModels) s += fmt::format(" {:>12}", m);
  s += fmt::format(" {:>12} {:>10} {:>10} {:>14} {:>14}\n", "GQA-8 BF16", "Pro/V3.2", "Flash/V3.2", "Flash all-in", "Pro all-in");
  auto all_in = [](const char* m, int64_t L) {  // window and compressor state included
    return double(kv_bytes_analytic(config_preset(m), L, KvLayout::fp8).total()) / double(L);
  };
  for (int64_t L : claim_lengths()) {
    s += fmt::format("{:>9}", L);
    for (const char* m : kModels) s += fmt::format(" {:>12.1f}", kv_per_token(m, L));
    s += fmt::format(" {:>12.1f} {:>9.2f}% {:>9.2f}% {:>14.1f} {:>14.1f}\n", gqa8_bf16_bytes_per_token(),
                     100 * kv_per_token("v4-pro", L) / kv_per_token("v3.2", L),
                     100 * kv_per_token("v4-flash", L) / kv_per_token("v3.2", L), all_in("v4-flash", L),
                     all_in("v4-pro", L));
  }
  s += "(all-in: bytes per token with the 128-entry windows and the FP32 compressor states included)\n";
  s += "\nClaims at 1M tokens (ours / paper / difference):\n";
  for (const auto& c : kv_claims())
    s += fmt::format("  {:<28} {:>7.2f}%  {:>5.1f}%  {:>+6.2f} points   ({:.2f}x smaller)  {}\n", c.what, 100 * c.ours,
                     100 * c.paper, 100 * (c.ours - c.paper), 1 / c.ours, c.note);
  s += fmt::format("BF16 accounting for comparison: V3.2/V4-Pro = {:.2f}x, V3.2/V4-Flash = {:.2f}x\n",
                   kv_per_token("v3.2", kMillion, KvLayout::bf16) / kv_per_token("v4-pro", kMillion, KvLayout::bf16),
                   kv_per_token("v3.2", kMillion, KvLayout::bf16) / kv_per_token("v4-flash", kMillion, KvLayout::bf16));
  return s;
}

std::string flops_table_text() {
  std::string s = "Decode FLOPs per token (TFLOP) — " + flops_convention() + "\n\n";
  s += fmt::format("{:>9}", "context");
  for (const char* m : kModels) s += fmt::format(" {:>10}", m);
  s += fmt::format(" {:>10} {:>10}\n", "Pro/V3.2", "Flash/V3.2");
  for (int64_t L : claim_lengths()) {
    s += fmt::format("{:>9}", L);
    for (const char* m : kModels) s += fmt::format(" {:>10.4f}", flops_at(m, L) / 1e12);
    s += fmt::format(" {:>9.1f}% {:>9.1f}%\n", 100 * flops_at("v4-pro", L) / flops_at("v3.2", L),
                     100 * flops_at("v4-flash", L) / flops_at("v3.2", L));
  }
  s += "\nParts at 1M (TFLOP):       linear  attention    indexer compressor\n";
  for (const char* m : kModels) {
    const auto f = decode_flops(config_preset(m), kMillion);
    s += fmt::format("  {:<20} {:>10.4f} {:>10.4f} {:>10.4f} {:>10.4f}   active parameters {:.2f} B\n", m, f.linear / 1e12,
                     f.attention / 1e12, f.indexer / 1e12, f.compressor / 1e12, active_parameters(config_preset(m)) / 1e9);
  }
  s += "\nClaims at 1M tokens (ours / paper / difference):\n";
  for (const auto& c : flops_claims())
    s += fmt::format("  {:<30} {:>6.1f}%  {:>5.1f}%  {:>+5.1f} points   ({:.1f}x)  {}\n", c.what, 100 * c.ours, 100 * c.paper,
                     100 * (c.ours - c.paper), 1 / c.ours, c.note);
  return s;
}

namespace {
boost::json::array claims_json(const std::vector<Claim>& cs) {
  boost::json::array a;
  for (const auto& c : cs)
    a.push_back({{"claim", c.what}, {"ours", c.ours}, {"paper", c.paper}, {"difference", c.ours - c.paper}, {"note", c.note}});
  return a;
}
}  // namespace

std::string kv_table_json() {
  boost::json::array curve;
  for (int64_t L : claim_lengths()) {
    boost::json::object row{{"context", L}, {"gqa8_bf16", gqa8_bf16_bytes_per_token()}};
    for (const char* m : kModels) row[m] = kv_per_token(m, L);
    curve.push_back(std::move(row));
  }
  return boost::json::serialize(boost::json::object{
      {"kind", "dsv4.kv_claims"},
      {"unit", "bytes per token (compressed entries + indexer keys), FP8/FP4 deployment layouts"},
      {"curve", std::move(curve)},
      {"claims", claims_json(kv_claims())}});
}

std::string flops_table_json() {
  boost::json::array curve;
  for (int64_t L : claim_lengths()) {
    boost::json::object row{{"context", L}};
    for (const char* m : kModels) {
      const auto f = decode_flops(config_preset(m), L);
      row[m] = boost::json::object{{"linear", f.linear}, {"attention", f.attention}, {"indexer", f.indexer},
                                   {"compressor", f.compressor}, {"total", f.total()}};
    }
    curve.push_back(std::move(row));
  }
  return boost::json::serialize(boost::json::object{{"kind", "dsv4.flops_claims"},
                                                    {"convention", flops_convention()},
                                                    {"curve", std::move(curve)},
                                                    {"claims", claims_json(flops_claims())}});
}

}  // namespace dsv4
