// layer_trace: what happens inside the model at the last position of a needle prompt, per
// length bin, deployment path against the float64 reference (docs/evals.md "Degradation").
//
// Items: exactly niah_single's (one needle, cells length x depth; the same seeds, so the
// trace follows the items the recall task scores). Each item runs two traced prefills
// (LanguageModel::trace): the deployment path (the engine as configured: FP8/FP4 simulation,
// fp32 arithmetic, its KV layout) and the fp64 reference (the same ops in double, exact
// math, the same weights). Per sample:
//   score                    top-1 agreement: the deployment argmax of the last logits (over
//                            the candidates when the item has them, else the vocabulary)
//                            equals the reference's
//   recall                   probe: the deployment argmax is the answer (NaN for natural)
//   logits_rel_err           |l - l64|_2 / |l64|_2 over the vocabulary
//   attn_rel_err.L<l>        the same for layer l's attention output at the last position (NaN
//                            when the reference output's RMS is <= kZeroOutputRms: a layer
//                            whose output there is structurally zero, like the probe's layer 0
//                            on a key token); attn_rms_err.L<l> the RMS of the difference
//   needle_mass.L<l>         max over heads of the softmax weight on the rows holding the
//                            answer's first token (window row at value_pos; HCA entry
//                            value_pos / 128; CSA entries value_pos / 4 and value_pos / 4 + 1,
//                            which pool its block); needle_mass_ref.L<l> on the reference
//   needle_mass_predicted    probe, clean haystack (eps = 0, gate_spread = 0), needle outside
//                            the window: the doc's closed form (model/probe.h)
//   indexer_recall.L<l>      CSA layers: the share of the deployment's top-k whose fp64 score
//                            reaches the fp64 k-th best (ties within kTieTolerance of the
//                            score range count as reached): recall against the exact top-k
//                            over every visible compressed entry
//   kv_bytes                 the deployment cache after the prompt (measured)
//   decode_gflop             analytic FLOPs of one decode token at this context (bench/flops.h)
//   reference_seconds        wall time of the fp64 prefill
#pragma once

#include "evals/registry.h"

namespace dsv4::evals {

class LayerTraceTask final : public Task {
 public:
  std::string name() const override { return "layer_trace"; }
  std::string version() const override;
  std::string description() const override;
  uint32_t needs(PromptFormat f) const override;
  std::vector<Cell> cells(const GridSpec& g) const override;
  Item generate(const GenContext& ctx, const Cell& cell, uint64_t run_seed,
                int64_t index) const override;
  Outcome evaluate(LanguageModel& m, const Item& item) const override;
  // Top-1 agreement is measured, not derived from a text: "1" scores 1.
  double score(const Item& item, const std::string& prediction) const override;
};

// Relative tolerance, against the range of the visible fp64 scores, under which two index
// scores count as tied (the clean probe's filler entries score the same up to rounding).
inline constexpr double kTieTolerance = 1e-9;

// The share of `selected` (entry numbers, -1 ignored) whose score in `exact` (every visible
// entry's fp64 score, -inf for invisible) reaches the k-th best, k = the number selected.
// NaN when nothing was selected.
double topk_recall(const std::vector<int32_t>& selected, const std::vector<double>& exact);

// max over heads of a traced layer's softmax weight on the rows that hold position `pos`
// (window row pos; HCA entry pos / 128; CSA entries pos / 4 and pos / 4 + 1). NaN when the
// trace has no weights.
double needle_mass(const LayerTrace& l, int64_t pos);

// An attention output whose RMS is below this is "zero" (a 1e-6 share of the unit RMS that
// the normalised sub-layer input has): its relative error is not defined.
inline constexpr double kZeroOutputRms = 1e-6;

// sqrt(mean((a - b)^2)).
double rms_difference(const std::vector<float>& a, const std::vector<float>& b);
// |a - b|_2 / |b|_2; NaN when b's RMS is <= min_rms.
double relative_error(const std::vector<float>& a, const std::vector<float>& b, double min_rms);

}  // namespace dsv4::evals
