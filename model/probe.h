// Probe checkpoints: 2-layer DeepSeek-V4 models whose weights are CONSTRUCTED (not trained)
// so that they solve associative recall by construction. Design and predictions:
// /work/shared/docs/probe-models.md ("the probe doc"); architecture: docs/v4-architecture.md.
//
// Task. Vocabulary = filler, key and value words. A needle is the two adjacent tokens "k v" in
// a filler haystack; the prompt ends with a key k*; the answer is the value that followed k*,
// read as the argmax of the last position's logits over the value token ids.
//
// Residual layout (D = 256, every block orthogonal; ProbeLayout holds the offsets):
//   c (1) | muK muV muF (class markers) | KEY (r_K) | SP (r_K, "previous key") | VAL (96) | FIL
//   key k:    1_c + 1_muK + a_k        a_k a seeded random unit vector in KEY
//   value v:  1_c + 1_muV + b_v        b_v random unit in VAL
//   filler f: 1_c + 1_muF + sqrt(1 - 2 eps^2) f_FIL + eps n_SP + eps n_VAL   (eps = noise knob)
//   other ids (bytes, bos/eos): embedded as fillers.
// mHC and MoE are identity-like (hc_*_fn = 0, zero experts): each sub-layer is h <- f + h.
// Layer 0 (window-only): a previous-token head firing only on value tokens writes the
//   preceding key's a_k into SP (RoPE pairs pre-rotated by one position, frequency weights
//   p_i from a max-min LP, peak logit kLayer0Peak, sink kLayer0Sink).
// Layer 1 (CSA, HCA or window-only): entries [S a_k (match) | sqrt(d/3) b_v (payload) |
//   sqrt(d/3) (anchor)] built by the entry map, the compressor gate (z = kGateValue on value
//   tokens) and the norm weights; the final key's query scores S <a_k*, a_k>; the output moves
//   the payload into VAL; the LM head rows of value tokens are b_v. Sink 0.
// Every weight is written by build_probe(); probe.cc says which doc line each one implements.
// Engram variant (knob engram_facts > 0; model/probe_engram.h): facts "key pair -> value"
//   stored in an Engram table at layer 0, answered from the table with no context at all.
//
// Tokenizer (probe_tokenizer_json): byte-level BPE with ignore_merges = true and no merges;
// the vocabulary holds the 256 byte symbols and every probe word with its leading space
// ("Ġ" + word), so " word" pre-tokenizes to one piece that is looked up whole: exactly one
// token. Ids: 0 bos, 1 eos (added tokens), 2..257 the bytes, then fillers, keys, values.
// Words: fillers = 2+ syllables of consonant (bdfghlmnprst) + vowel (aeiou); keys "k" + the
// same syllables, values "v" + the same syllables (never a collision: fillers never start
// with k or v), e.g. " baba", " kbaba", " vbaba".
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "model/checkpoint.h"
#include "model/config.h"

namespace dsv4 {

enum class ProbeRetrieval { csa, hca, window };
std::string probe_retrieval_name(ProbeRetrieval r);

// The knobs of a recall probe (`dsv4 init --probe recall --set KNOB=V`). Names (matched
// case-insensitively): retrieval, S, r_K, topk, eps, gate_spread, quant, fillers, keys,
// values, seed, engram_facts, engram_table, engram_heads.
struct ProbeKnobs {
  ProbeRetrieval retrieval = ProbeRetrieval::csa;  // layer 1: ratio 4, 128 or 0
  double S = 12.0;           // needle score S <a_k*, a_k*> (match-dim norm weight)
  int64_t r_K = 32;          // key dims (KEY and SP blocks); <= 62 (indexer anchor at dim 63)
  int64_t topk = 512;        // indexer top-k (CSA)
  double eps = 0.0;          // filler noise: SP and VAL components of norm eps each
  double gate_spread = 0.0;  // std of the compressor gate logits of fillers
  bool quant = true;         // true: release encodings (FP8/FP4/BF16), run with official
                             // numerics; false: F32 weights, run with exact numerics
  int64_t fillers = 2000, keys = 512, values = 512;  // vocabulary sizes
  uint64_t seed = 0;                                 // the random unit vectors
  // Engram facts (model/probe_engram.h): F facts "key pair -> value" stored in an Engram
  // table at layer 0 (0: no Engram, the probe is exactly as without these knobs); the base
  // table size of order 2 (the first of the hash heads' primes) and the hash heads H.
  int64_t engram_facts = 0;
  int64_t engram_table = 4093;
  int64_t engram_heads = 4;
};

// Sets one knob from "KNOB=V"; InputError naming the knob (unknown name, bad value).
void probe_set_knob(ProbeKnobs& k, const std::string& assignment);
// Range checks of every knob; InputError naming the knob.
void probe_validate(const ProbeKnobs& k);
// The knobs as a JSON object text (probe.json's "knobs").
std::string probe_knobs_json(const ProbeKnobs& k);

// ---- named constants of the construction (the probe doc) ----
inline constexpr int64_t kProbeDim = 256;  // D
inline constexpr int64_t kProbeHeads = 4;
inline constexpr int64_t kProbeGroups = 2;
inline constexpr int64_t kProbeORank = 128;
inline constexpr int64_t kProbeQRank = 64;
inline constexpr int64_t kProbeIndexHeads = 4;
inline constexpr int64_t kProbeValDims = 96;     // r_V
inline constexpr int64_t kProbeMaxKeyDims = 62;  // r_K limit: indexer anchor at dim 63
inline constexpr double kLayer0Peak = 150.0;     // layer-0 logit of the predecessor (at least)
inline constexpr double kLayer0MinGap = 50.0;    // every other window logit at least this below
inline constexpr double kLayer0Sink = 50.0;      // layer-0 sink: non-value queries attend it
inline constexpr double kLayer1Sink = 0.0;       // layer-1 sink (the closed forms assume 0)
inline constexpr double kGateValue = 30.0;       // compressor gate logit z of a needle value
inline constexpr double kIndexScale = 8.0;       // SI: index query = SI * c_q
inline constexpr double kPayloadGain = 0.125;    // wo_b gain payload -> VAL (a power of two)
inline constexpr int64_t kProbeNullDim = 447;    // layer-0 "null" query dim (kv is 0 there)
inline constexpr int64_t kProbeAnchorDim = 447;  // layer-1 main entry anchor
inline constexpr int64_t kProbePayloadDim = 64;  // layer-1 payload dims [64, 64 + r_V)
inline constexpr int64_t kProbeIndexAnchorDim = 63;

// Coordinate blocks of the residual stream.
struct ProbeLayout {
  int64_t c = 0, muK = 1, muV = 2, muF = 3;
  int64_t key = 4, sp = 0, val = 0, fil = 0;  // block starts
  int64_t r_K = 0, r_V = kProbeValDims, n_fil = 0;
};
ProbeLayout probe_layout(const ProbeKnobs& k);

// Token ids and words (text = " " + word).
struct ProbeVocab {
  int64_t filler0 = 0, key0 = 0, value0 = 0;    // first id of each class (ids are contiguous)
  std::vector<std::string> filler, key, value;  // words without the leading space
  int64_t size = 0;                             // vocab_size
};

// The ModelConfig a set of knobs implies (validated).
ModelConfig probe_config(const ProbeKnobs& k);

// One Engram fact of the probe: the 2-token prompt [key_a, key_b] answers `value` (token ids).
struct ProbeFact {
  int32_t key_a = 0, key_b = 0, value = 0;
};

// A constructed probe: config, vocabulary and every tensor's logical float values.
struct ProbeModel {
  ProbeKnobs knobs;
  ModelConfig config;
  ProbeLayout layout;
  ProbeVocab vocab;
  std::vector<double> layer0_p;   // LP weights p_i of the 32 RoPE pairs (sum 1)
  double layer0_gap = 0.0;        // min over offsets of sum p_i (1 - cos(f_i delta))
  double layer0_peak = 0.0;       // layer-0 logit of the predecessor: max(150, 50 / gap)
  double layer0_rope_gain = 0.0;  // kv_norm weight on layer 0's RoPE dims
  std::vector<ProbeFact> facts;   // Engram facts (knobs.engram_facts of them; empty when off)
  // Tensors that are not all-default (norm weights 1, mHC bases, zeros elsewhere), by
  // official name, logical shape as in expected_tensors.
  std::map<std::string, std::vector<float>> tensors;
  // The values of a spec (defaults filled in), and of tid2eid.
  std::vector<float> values(const TensorSpec& s) const;
  std::vector<int64_t> indices(const TensorSpec& s) const;
};
ProbeModel build_probe(const ProbeKnobs& k);

// The doc's closed-form needle mass of the retrieval layer (head 0 of layer 1) at the last
// position of a clean haystack of T tokens (eps = 0, gate spread 0) with one needle whose
// value lies outside the 128-token window, layer-1 sink 0:
//   HCA  pi* = e^S / (e^S + 128 + floor(T/128))
//   CSA  pi* = 2 e^S / (2 e^S + 128 + min(floor(T/4), k) - 1)
// (window-only: NaN, nothing outside the window is visible).
double probe_needle_mass(ProbeRetrieval r, double S, int64_t T, int64_t topk);

// tokenizer.json and probe.json texts of a probe.
std::string probe_tokenizer_json(const ProbeModel& m);
std::string probe_sidecar_json(const ProbeModel& m);

// Writes the checkpoint directory: config.json, index, shards (release encodings when
// knobs.quant, else F32), tokenizer.json and probe.json; atomically (write_checkpoint).
WriteSummary write_probe_checkpoint(const ProbeKnobs& k, const std::string& dir,
                                    const WriteOptions& opts = {});

}  // namespace dsv4
