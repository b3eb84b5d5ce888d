// Engram conditional memory: hashed n-gram embeddings looked up from the token ids, gated
// against the residual streams and added to them. Spec: docs/engram.md (from DeepSeek's
// "Conditional Memory via Scalable Lookup", January 2026). Off in the released V4 configs.
//
// Three steps, one op each (the model calls them in turn at every Engram layer, before the
// attention sub-layer's mHC pre-mix):
//
// engram_hash  — addresses from token ids only (so they can be computed ahead of the layers):
//   c_t = token_map[id_t] (the canonical id; t < 0 reads the history, then pad)
//   for order n = 2..N:  mix_n(t) = XOR_{k=0}^{n-1} (c_{t-k} * mult[k])     (uint64, no overflow:
//                         mult[k] < 2^63 / vocab, c < vocab)
//   for head j < Hn:     row_{n,j}(t) = offset_{n,j} + mix_n(t) mod prime_{n,j}
//   rows [T, (N-1)*Hn] int64: rows into the concatenated table [sum primes, de].
//
// engram_lookup — e_t = concat over (n, j) of table[row_{n,j}(t)]       e [T, E], E = (N-1)*Hn*de
//   The table is F32 or BF16 (as stored: a memory-mapped checkpoint region works as is).
//
// engram_mix   — the gated value and its short convolution, per stream s < S of X [T, S*D]:
//   v_t      = Wv e_t + bv                                               [D]
//   k_{t,s}  = RMSNorm(Wk_s e_t + bk_s; key_norm_s)                      [D]
//   q_{t,s}  = RMSNorm(X_{t,s}; query_norm_s)                            [D]
//   a        = <k_{t,s}, q_{t,s}> / sqrt(D);  a' = sign(a) sqrt(max(|a|, 1e-6))
//   V_{t,s}  = sigmoid(a') v_t
//   Z_{t,s}  = RMSNorm(V_{t,s}; conv_norm_s, eps 1e-5)
//   C_{t,s,c} = SiLU(sum_{i<K} w[s*D + c, i] Z_{t-(K-1-i)*dil, s, c})    (Z before the sequence: 0)
//   Y_{t,s}  = V_{t,s} + C_{t,s}                                         Y [T, S*D]
//   The caller adds Y to X. The Z rows of the last (K-1)*dil tokens carry to the next chunk
//   (`history`, [(K-1)*dil, S*D], oldest first, zeros at the start of a sequence); the op
//   reads it and writes the updated history back.
#pragma once

#include <cstdint>
#include <vector>

#include "reference/view.h"

namespace dsv4 {

inline constexpr double kEngramGateFloor = 1e-6;  // |a| floor under the gate's square root
inline constexpr double kEngramConvNormEps = 1e-5;  // the short convolution's RMSNorm eps
inline constexpr uint64_t kEngramLayerSeedStride = 10007;  // seed of layer l: seed + stride*l
inline constexpr int64_t kEngramDefaultTableFactor = 5;  // base table rows = 5 x vocab (published)
inline constexpr int64_t kEngramMaxOrder = 8;           // largest max_ngram_size a config may ask
inline constexpr int64_t kEngramMaxTable = int64_t(1) << 30;  // largest base table size (rows)

// The hashing of one Engram layer, derived from the config by engram_layer_hash() below:
// multipliers, table primes and offsets, pad id, and the canonical-id map.
struct EngramHash {
  int64_t max_ngram = 0;              // N (orders 2..N)
  int64_t heads = 0;                  // Hn, hash heads per order
  std::vector<uint64_t> multipliers;  // [N], odd
  std::vector<int64_t> primes;        // [(N-1)*Hn], order-major: index (n-2)*Hn + j
  std::vector<int64_t> offsets;       // [(N-1)*Hn]: first table row of each (order, head)
  int64_t table_rows = 0;             // sum of primes
  int64_t pad_id = 0;                 // canonical id of the padding before the first token
  const int32_t* token_map = nullptr;  // [vocab] raw id -> canonical id
  int64_t vocab = 0;
  int64_t slots() const { return (max_ngram - 1) * heads; }
};

struct EngramHashParams {
  const EngramHash* hash = nullptr;
  const int32_t* ids = nullptr;      // [T] raw token ids
  int64_t n = 0;                     // T
  const int32_t* history = nullptr;  // [N-1] canonical ids of the tokens before ids[0],
                                     // oldest first (-1: before the sequence -> pad); nullptr: all pad
  View2<int64_t> rows;               // [T, (N-1)*Hn] out
};

enum class TableDType { f32, bf16 };

// A [rows, dim] table in host memory, row-major, as stored.
struct EngramTableView {
  const void* data = nullptr;
  TableDType dtype = TableDType::f32;
  int64_t rows = 0, dim = 0;
};

template <class T>
struct EngramLookupParams {
  EngramTableView table;        // [sum primes, de]
  View2<const int64_t> rows;    // [T, slots]
  View2<T> e;                   // [T, slots*de] out
};

template <class T>
struct EngramMixWeights {
  const T* value_w = nullptr;      // [D, E]
  const T* value_b = nullptr;      // [D]
  const T* key_w = nullptr;        // [S, D, E] (stream s at s*D*E)
  const T* key_b = nullptr;        // [S, D]
  const T* key_norm = nullptr;     // [S, D]
  const T* query_norm = nullptr;   // [S, D]
  const T* conv_w = nullptr;       // [S*D, K]
  const T* conv_norm = nullptr;    // [S, D]
};

template <class T>
struct EngramMixParams {
  View2<const T> x;       // [T, S*D] residual streams
  View2<const T> e;       // [T, E]
  EngramMixWeights<T> w;
  int64_t streams = 1;    // S
  int64_t kernel = 4;     // K
  int64_t dilation = 3;   // dil (= N in the published design)
  double norm_eps = 1e-6;  // key_norm / query_norm eps
  View2<T> history;       // [(K-1)*dil, S*D] in/out (may be empty when K == 1)
  View2<T> y;             // [T, S*D] out
};

namespace ref {
void engram_hash(const EngramHashParams& p);
template <class T>
void engram_lookup(const EngramLookupParams<T>& p);
template <class T>
void engram_mix(const EngramMixParams<T>& p);
}  // namespace ref

// Table sizes of every Engram layer (in the order of the config's layer ids): for order n and
// head j, the smallest prime >= base[n-2] for head 0, > the previous head's prime for the
// others, never one already taken by an earlier (layer, order, head). [layers][(N-1)*Hn].
std::vector<std::vector<int64_t>> engram_primes(int64_t layers, const std::vector<int64_t>& base,
                                                int64_t heads);
// The N odd multipliers of layer `layer`: 2 r_k + 1 with r_k = splitmix64 draw k of the stream
// seeded seed + kEngramLayerSeedStride * layer, reduced mod max(1, floor((2^63-1) / vocab) / 2),
// so that c * mult < 2^63 for every canonical id c < vocab.
std::vector<uint64_t> engram_multipliers(uint64_t seed, int64_t layer, int64_t max_ngram, int64_t vocab);
// Assembles the hash of one layer (token_map must outlive it; pad_raw is a raw token id).
EngramHash engram_layer_hash(const std::vector<int64_t>& primes, std::vector<uint64_t> multipliers,
                             int64_t max_ngram, int64_t heads, const int32_t* token_map, int64_t vocab,
                             int64_t pad_raw);

// The canonical id history after ids[0..n) given the one before (both [N-1], oldest first).
std::vector<int32_t> engram_advance_history(const EngramHash& h, const std::vector<int32_t>& history,
                                            const int32_t* ids, int64_t n);

}  // namespace dsv4
