// Rotary position embedding on part of each head, with the YaRN frequency table.
// Spec: docs/v4-architecture.md §2.7 (V4), §1.2 and §2.10 (V3 / V3.2).
//
// Frequencies (i = 0 .. d_r/2 - 1):
//   f_i = theta^(-2i / d_r)
//   YaRN (yarn_factor > 1): low  = floor(d_r ln(orig / (beta_fast 2 pi)) / (2 ln theta)),
//                           high = ceil (d_r ln(orig / (beta_slow 2 pi)) / (2 ln theta)),
//     clamped to [0, d_r - 1]; s_i = 1 - clamp((i - low) / (high - low), 0, 1);
//     f_i <- f_i s_i + (f_i / yarn_factor)(1 - s_i).
//   V4 compressed layers: theta 160000, factor 16, orig 65536, beta 32/1 -> [low, high]
//   = [15, 25]; no magnitude factor. V4 window-only layers: theta 10000, no YaRN.
//
// Rotation of a row at position p (angle a_i = p f_i, computed in double; inverse: -a_i):
//   interleaved (V4, V3):  (x[2i], x[2i+1])     <- (x0 cos a - x1 sin a, x0 sin a + x1 cos a)
//   half_split (V3.2 idx): (x[i], x[i + d_r/2]) <- same rotation
// applied to the last d_r dims of each head (V4, V3) or the first d_r (V3.2 indexer),
// then multiplied by attn_factor (1 everywhere in V4; V3 puts its YaRN mscale into the
// softmax scale instead, see v3_softmax_scale()).
//
// Shapes: x [R, heads * head_dim], rotated in place; row r has position pos0 + r*pos_step
// (pos_step = m for compressed entries, whose position is the block's first token).
#pragma once

#include <cstdint>
#include <vector>

#include "reference/constants.h"
#include "reference/view.h"

namespace dsv4 {

enum class RopeLayout { interleaved, half_split };
enum class RopePlacement { last, first };

struct RopeConfig {
  int64_t rope_dim = kRopeDim;
  double theta = kRopeThetaSwa;
  double yarn_factor = 1.0;  // <= 1: no YaRN
  int64_t yarn_orig = 0;
  double beta_fast = kYarnBetaFast;
  double beta_slow = kYarnBetaSlow;
  double attn_factor = 1.0;  // multiplies the rotated dims
  RopeLayout layout = RopeLayout::interleaved;
  RopePlacement placement = RopePlacement::last;
};

// The named tables.
RopeConfig rope_v4_compressed();  // CSA / HCA layers
RopeConfig rope_v4_swa();         // window-only layers (and MTP)
RopeConfig rope_v3();             // V3 / V3.2 MLA
RopeConfig rope_v32_indexer();    // V3.2 indexer: V3 table, half_split, first 64 dims

// The d_r/2 frequencies after YaRN.
std::vector<double> rope_inv_freq(const RopeConfig& cfg);

// YaRN correction range [low, high] (only meaningful with yarn_factor > 1).
void yarn_correction_range(const RopeConfig& cfg, int64_t* low, int64_t* high);

// V3 / V3.2 softmax scale: 1/sqrt(192) * mscale^2, mscale = 0.1 ln(40) + 1 (§1.2).
double v3_softmax_scale();

template <class T>
struct RopeParams {
  View2<T> x;           // [R, heads * head_dim], in place
  int64_t heads = 1;
  int64_t head_dim = 0;  // 0: x.cols / heads
  int64_t pos0 = 0;
  int64_t pos_step = 1;
  bool inverse = false;
  RopeConfig cfg;
};

namespace ref {
template <class T>
void rope(const RopeParams<T>& p);
}  // namespace ref

}  // namespace dsv4
