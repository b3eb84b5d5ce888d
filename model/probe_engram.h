// Engram facts in the recall probe: "retrieve instead of recompute" (issue 10). The facts live
// in an Engram table (docs/engram.md) at layer 0, not in the context: the 2-token prompt
// [key_a, key_b] is answered from the table with no context at all. Knobs (model/probe.h):
// engram_facts F (0: off, the probe is byte for byte as without Engram), engram_table (the
// base table size of order 2), engram_heads H.
//
// Config: engram = {layer_ids {0}, vocab_size {engram_table}, max_ngram 2, H heads of
// de = r_V = 96 dims each (n_embed_per_ngram = 96 H), kernel 4, pad_id = bos, seed = seed};
// token map: the identity (probe.json says so).
//
// Weights (the only non-zero Engram tensors):
//   table     for each fact (a, b) -> v and each head j: row_j(a, b) += b_v   (b_v: the value's
//             unit vector in VAL coordinates, the LM head row); the rows come from the model's
//             own hash (engram_primes / engram_multipliers / engram_layer_hash / engram_hash).
//             Facts whose 2-grams share a row add up (superposition).
//   value_proj  Wv[VAL_i, j*96 + i] = 1/H: v = the mean of the heads' rows, in VAL; bias 0.
//   key_proj.s  weight 0, bias 1 on the constant dim c;  key_norm.s = kEngramGateGain on c.
//             Then k = sqrt(D) G 1_c and, every probe token having norm sqrt(3) at layer 0,
//             a = G sqrt(D/3) ~ 74 and the gate g = sigmoid(sqrt(a)) ~ 0.9998 for every token:
//             the gate is constructed open, not context-aware.
//   conv      weight 0: C = SiLU(0) = 0 and Y = V (conv_norm, query_norm 1).
//
// Closed form of the no-context prompt [a, b] (probe_predict_facts): with u_t the mean of the
// H rows the 2-gram ending at t reads (t = 0: (pad, a); t = 1: (a, b)), the last position's
// VAL block is
//   w = g u_1 + (gamma / 3) (P(u_0) + P(u_1)),   P(u) = sqrt(d) g u / sqrt(g^2 |u|^2 + 1)
// (gamma = kPayloadGain; layer 1's head 0 sees its two window rows with score 0 beside the
// sink 0, weight 1/3 each, and moves their payload, the RMS-normalised VAL, into VAL), and the
// value logits are a positive multiple of <b_v', w>. Without collisions u_0 = 0 and u_1 = b_v:
// exact recall. A fact whose rows are shared in some heads keeps its own b_v in full plus 1/H
// of every other fact's vector in each shared row.
// In-context recall (probe doc) is unchanged in kind: layer 0 reads only markers and KEY,
// layer 1's entries read SP and VAL; the Engram VAL a token gets only adds to its own payload.
#pragma once

#include <cstdint>
#include <vector>

#include "model/config.h"
#include "model/probe.h"
#include "reference/engram.h"

namespace dsv4 {

inline constexpr double kEngramGateGain = 8.0;       // key_norm weight on c: a = G sqrt(D/3)
inline constexpr int64_t kProbeEngramLayer = 0;      // the layer that holds the facts
inline constexpr int64_t kProbeEngramOrder = 2;      // max_ngram: the fact is a 2-gram
inline constexpr int64_t kProbeEngramKernel = 4;     // the (zero) convolution's kernel
inline constexpr int64_t kProbeEngramMaxTable = int64_t(1) << 20;  // engram_table limit
inline constexpr int64_t kProbeEngramMaxHeads = 16;  // engram_heads limit
inline constexpr int64_t kProbeEngramPadId = 0;      // bos: the raw id before the first token

// Turns Engram on in c when k.engram_facts > 0 (leaves c as it is otherwise).
void probe_engram_config(const ProbeKnobs& k, ModelConfig& c);

// The table rows the probe's Engram layer reads, computed as the model computes them.
class ProbeEngramHasher {
 public:
  explicit ProbeEngramHasher(const ModelConfig& c);
  ProbeEngramHasher(const ProbeEngramHasher&) = delete;  // hash_ points into map_
  ProbeEngramHasher& operator=(const ProbeEngramHasher&) = delete;
  // rows [n * H] of a sequence from its start: rows[t * H + j] = head j's row of the 2-gram
  // (ids[t-1], ids[t]) (the pad before ids[0]).
  std::vector<int64_t> rows(const std::vector<int32_t>& ids) const;
  int64_t heads() const { return hash_.heads; }
  int64_t table_rows() const { return hash_.table_rows; }

 private:
  std::vector<int32_t> map_;  // identity token map
  EngramHash hash_;
};

// Writes the Engram tensors of m (m.facts drawn, the embeddings and LM head built).
void build_probe_engram(ProbeModel& m);

// Relative width of a tie between two value logits (in units of |w|, |b_v| = 1): with F32
// weights the engine's float32 reductions (<= 512 terms, unit roundoff 6e-8: <= 3e-5 |w|);
// with release encodings the BF16 table (half an ulp, 2^-9, per element, so <= 2^-9 |w| per
// logit) dominates: twice that.
inline constexpr double kFactTieF32 = 1e-4;
inline constexpr double kFactTieBf16 = 0x1.0p-8;

// What the closed form above predicts for one fact's no-context prompt.
struct ProbeFactPrediction {
  int32_t predicted = -1;    // argmax of <b_v', w> over the value ids (ties: the lowest id)
  std::vector<int32_t> top;  // every value id within the tie width of the max (predicted first)
  bool correct = false;      // predicted == the fact's value and no other value ties with it
  bool tie = false;          // top holds more than one value: the argmax is not determined
  double margin = 0;         // <b_v, w> - max over other values v' of <b_v', w>
  int64_t shared_heads = 0;  // heads whose row of (a, b) holds another fact too
  bool pad_row_hit = false;  // some row of (pad, a) is non-zero (u_0 != 0)
};
// One prediction per m.facts entry, in float64 from the table as built (logical values);
// the tie width is kFactTieBf16 or kFactTieF32 (knobs.quant) times |w|.
std::vector<ProbeFactPrediction> probe_predict_facts(const ProbeModel& m);

}  // namespace dsv4
