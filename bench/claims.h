// The DeepSeek-V4 report's efficiency claims at 1M tokens, reproduced from our analytic
// models (model/kv_cache.h for bytes, bench/flops.h for FLOPs), with the paper's figure and
// the difference beside ours. Spec: docs/v4-architecture.md §4, §5, §8; targets.md.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dsv4 {

struct Claim {
  std::string what;      // e.g. "V4-Pro KV vs V3.2"
  double ours = 0;       // ratio, as a fraction (0.1047 = 10.47 %)
  double paper = 0;      // the report's figure, as a fraction
  std::string note;      // the assumption it depends on
};

std::vector<Claim> kv_claims();     // at L = 2^20, deployment (FP8/FP4) layouts
std::vector<Claim> flops_claims();  // at L = 2^20

// Context lengths of the curves: 4K ... 1M.
std::vector<int64_t> claim_lengths();

// Bytes per token of a dense BF16 GQA-8 baseline of 61 layers with head dim 128:
// 61 x 8 x 128 x 2 (K and V) x 2 B = 249,856 (§4).
double gqa8_bf16_bytes_per_token();

// Text tables (claims + the curve over claim_lengths()) and one JSON object each.
std::string kv_table_text();
std::string kv_table_json();
std::string flops_table_text();
std::string flops_table_json();

}  // namespace dsv4
