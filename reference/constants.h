// Named constants of the DeepSeek-V4 architecture and its predecessors.
// Each comes from docs/v4-architecture.md (section given beside it); ops take the value
// through their params so that small test shapes can differ, and these are the defaults.
#pragma once

#include <cstdint>

namespace dsv4 {

// §1.1 / §2: attention geometry
inline constexpr int64_t kHeadDim = 512;      // d: q, k and v head dim (K = V)
inline constexpr int64_t kRopeDim = 64;       // d_r: rotated dims, the LAST 64 of a head
inline constexpr int64_t kNopeDim = kHeadDim - kRopeDim;  // 448: FP8-simulated dims
inline constexpr int64_t kWindow = 128;       // n_w: sliding window (§2.2)
inline constexpr int64_t kCsaRatio = 4;       // m: CSA compression ratio (§2.3)
inline constexpr int64_t kHcaRatio = 128;     // m': HCA compression ratio (§2.3)
inline constexpr int64_t kIndexerHeads = 64;  // H_I (§2.4)
inline constexpr int64_t kIndexerDim = 128;   // d_I (§2.4)

// §2.2-§2.4, §7: quantisation simulation
inline constexpr double kFp8Max = 448.0;           // largest finite e4m3fn value
inline constexpr double kFp4Max = 6.0;             // largest e2m1 value
inline constexpr int64_t kFp8KvBlock = 64;         // KV FP8 block along dims 0:448 (§2.2)
inline constexpr int64_t kFp4Block = 32;           // indexer FP4 block (§2.3)
inline constexpr int64_t kActBlock = 128;          // activation FP8 block (§7, §9.4)
inline constexpr double kFp8AmaxFloor = 1e-4;      // amax clamp before the FP8 scale
inline constexpr double kFp4AmaxFloor = 6.0 * 1.1754943508222875e-38;  // 6 * 2^-126

// §3: mHC and MoE
inline constexpr int64_t kHcMult = 4;        // n streams
inline constexpr int64_t kSinkhornIters = 20;
inline constexpr double kHcEps = 1e-6;
inline constexpr double kNormEps = 1e-6;     // every RMSNorm
inline constexpr double kSwigluLimit = 10.0;  // clamp of the SwiGLU inputs (§3.2, §9.1)

// §2.7: RoPE tables
inline constexpr double kRopeThetaSwa = 10000.0;          // window-only layers, no YaRN
inline constexpr double kRopeThetaCompressed = 160000.0;  // CSA/HCA layers, with YaRN
inline constexpr double kYarnFactorV4 = 16.0;
inline constexpr int64_t kYarnOrigV4 = 65536;
inline constexpr double kYarnBetaFast = 32.0;
inline constexpr double kYarnBetaSlow = 1.0;

// §1.2: V3 / V3.2 predecessors
inline constexpr double kRopeThetaV3 = 10000.0;
inline constexpr double kYarnFactorV3 = 40.0;
inline constexpr int64_t kYarnOrigV3 = 4096;
inline constexpr int64_t kMlaLatentDim = 512;   // kv_lora_rank
inline constexpr int64_t kMlaQkNopeDim = 128;
inline constexpr int64_t kMlaVDim = 128;
inline constexpr int64_t kDsaTopk = 2048;       // V3.2 indexer top-k (tokens)

}  // namespace dsv4
