#include "reference/engram.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <string>

#include "reference/eigen_util.h"
#include "reference/errors.h"

namespace dsv4 {

namespace {

bool is_prime(int64_t v) {
  if (v < 2) return false;
  if (v % 2 == 0) return v == 2;
  for (int64_t d = 3; d * d <= v; d += 2)
    if (v % d == 0) return false;
  return true;
}

// splitmix64: a 64-bit counter-based generator (Steele, Lea, Flood 2014).
uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

float bf16_to_float(uint16_t b) {
  const uint32_t bits = uint32_t(b) << 16;
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

// Canonical id of raw id `id` (checked against the map's range).
int64_t canonical(const EngramHash& h, int32_t id) {
  if (id < 0 || id >= h.vocab)  // the message is built only on failure: this runs per token
    throw InputError("engram_hash: token id " + std::to_string(id) + " is outside [0, " + std::to_string(h.vocab) + ")");
  return h.token_map ? h.token_map[id] : id;
}

}  // namespace

std::vector<std::vector<int64_t>> engram_primes(int64_t layers, const std::vector<int64_t>& base, int64_t heads) {
  require(heads > 0, "engram: heads per n-gram order must be positive, found " + std::to_string(heads));
  for (int64_t b : base)
    require(b >= 2, "engram: every table size must be at least 2, found " + std::to_string(b));
  std::set<int64_t> taken;
  std::vector<std::vector<int64_t>> out(static_cast<size_t>(layers));
  for (auto& layer : out) {
    for (int64_t b : base) {
      int64_t candidate = b - 1;  // head 0 may take b itself
      for (int64_t j = 0; j < heads; ++j) {
        do ++candidate;
        while (!is_prime(candidate) || taken.count(candidate));
        taken.insert(candidate);
        layer.push_back(candidate);
      }
    }
  }
  return out;
}

std::vector<uint64_t> engram_multipliers(uint64_t seed, int64_t layer, int64_t max_ngram, int64_t vocab) {
  require(vocab > 0, "engram: vocab must be positive");
  const uint64_t half_bound = std::max<uint64_t>(1, uint64_t(std::numeric_limits<int64_t>::max() / vocab) / 2);
  uint64_t state = seed + kEngramLayerSeedStride * uint64_t(layer);
  std::vector<uint64_t> m(static_cast<size_t>(max_ngram));
  for (auto& v : m) v = 2 * (splitmix64(state) % half_bound) + 1;
  return m;
}

EngramHash engram_layer_hash(const std::vector<int64_t>& primes, std::vector<uint64_t> multipliers, int64_t max_ngram,
                             int64_t heads, const int32_t* token_map, int64_t vocab, int64_t pad_raw) {
  require(max_ngram >= 2, "engram: max_ngram_size must be at least 2, found " + std::to_string(max_ngram));
  require(int64_t(primes.size()) == (max_ngram - 1) * heads,
          "engram: expected " + std::to_string((max_ngram - 1) * heads) + " table primes, found " +
              std::to_string(primes.size()));
  require(int64_t(multipliers.size()) == max_ngram, "engram: expected one multiplier per n-gram position");
  EngramHash h;
  h.max_ngram = max_ngram;
  h.heads = heads;
  h.multipliers = std::move(multipliers);
  h.primes = primes;
  for (int64_t p : primes) {
    h.offsets.push_back(h.table_rows);
    h.table_rows += p;
  }
  h.token_map = token_map;
  h.vocab = vocab;
  require(pad_raw >= 0 && pad_raw < vocab,
          "engram: pad_id " + std::to_string(pad_raw) + " is outside the vocabulary [0, " + std::to_string(vocab) + ")");
  h.pad_id = token_map ? token_map[pad_raw] : pad_raw;
  return h;
}

std::vector<int32_t> engram_advance_history(const EngramHash& h, const std::vector<int32_t>& history,
                                            const int32_t* ids, int64_t n) {
  const size_t keep = size_t(h.max_ngram - 1);
  std::vector<int32_t> all = history;
  if (all.size() < keep) all.insert(all.begin(), keep - all.size(), -1);
  for (int64_t t = 0; t < n; ++t) all.push_back(int32_t(canonical(h, ids[t])));
  return std::vector<int32_t>(all.end() - int64_t(keep), all.end());
}

namespace ref {

void engram_hash(const EngramHashParams& p) {
  require(p.hash != nullptr, "engram_hash: no hash layout");
  const EngramHash& h = *p.hash;
  const int64_t N = h.max_ngram, slots = h.slots();
  require(p.rows.rows == p.n && p.rows.cols == slots,
          "engram_hash: rows must be " + shape_string({p.n, slots}) + ", found " +
              shape_string({p.rows.rows, p.rows.cols}));
  // Canonical ids of the window: N-1 history slots, then the chunk.
  std::vector<int64_t> c(size_t(N - 1 + p.n));
  for (int64_t i = 0; i < N - 1; ++i) {
    const int32_t v = p.history ? p.history[i] : -1;
    require(v < h.vocab, "engram_hash: history id " + std::to_string(v) + " is outside the vocabulary");
    c[size_t(i)] = v < 0 ? h.pad_id : v;
  }
  for (int64_t t = 0; t < p.n; ++t) c[size_t(N - 1 + t)] = canonical(h, p.ids[t]);
  for (int64_t t = 0; t < p.n; ++t) {
    const int64_t at = N - 1 + t;  // c[at - k] is the token k places back
    uint64_t mix = uint64_t(c[size_t(at)]) * h.multipliers[0];
    for (int64_t n = 2; n <= N; ++n) {
      mix ^= uint64_t(c[size_t(at - (n - 1))]) * h.multipliers[size_t(n - 1)];
      for (int64_t j = 0; j < h.heads; ++j) {
        const size_t slot = size_t((n - 2) * h.heads + j);
        p.rows(t, int64_t(slot)) = h.offsets[slot] + int64_t(mix % uint64_t(h.primes[slot]));
      }
    }
  }
}

template <class T>
void engram_lookup(const EngramLookupParams<T>& p) {
  const EngramTableView& tb = p.table;
  require(tb.data != nullptr, "engram_lookup: no table");
  const int64_t slots = p.rows.cols, de = tb.dim;
  require(p.e.rows == p.rows.rows && p.e.cols == slots * de,
          "engram_lookup: e must be " + shape_string({p.rows.rows, slots * de}) + ", found " +
              shape_string({p.e.rows, p.e.cols}));
  for (int64_t t = 0; t < p.rows.rows; ++t) {
    T* out = p.e.row(t);
    for (int64_t s = 0; s < slots; ++s, out += de) {
      const int64_t r = p.rows(t, s);
      if (r < 0 || r >= tb.rows)  // the message is built only on failure: this runs per row
        throw InputError("engram_lookup: row " + std::to_string(r) + " at token " + std::to_string(t) +
                         " is outside the table [0, " + std::to_string(tb.rows) + ")");
      if (tb.dtype == TableDType::f32) {
        const float* src = static_cast<const float*>(tb.data) + r * de;
        for (int64_t c = 0; c < de; ++c) out[c] = T(src[c]);
      } else {
        const uint16_t* src = static_cast<const uint16_t*>(tb.data) + r * de;
        for (int64_t c = 0; c < de; ++c) out[c] = T(bf16_to_float(src[c]));
      }
    }
  }
}

// Tokens per block of engram_mix's gates and convolution: the block's Z rows are
// (H + kMixTokenBlock) x S*D (4.8 MiB at V4-Flash), in the last-level cache between the two.
// 512 V4-Flash tokens (/tmp harness, thread CPU time): one [H + T, S*D] timeline 302-307 ms;
// blocks of 16, 32 or 64 tokens 282-294 ms; 128 tokens 304-307 ms.
constexpr int64_t kMixTokenBlock = 64;

template <class T>
void engram_mix(const EngramMixParams<T>& p) {
  const int64_t n = p.x.rows, S = p.streams, E = p.e.cols;
  require(S > 0 && p.x.cols % S == 0,
          "engram_mix: x has " + std::to_string(p.x.cols) + " columns, not a multiple of " + std::to_string(S) + " streams");
  const int64_t D = p.x.cols / S, K = p.kernel, H = (K - 1) * p.dilation;
  require(K >= 1 && p.dilation >= 1, "engram_mix: kernel and dilation must be positive");
  require(p.e.rows == n, "engram_mix: e must have " + std::to_string(n) + " rows, found " + std::to_string(p.e.rows));
  require(p.y.rows == n && p.y.cols == S * D,
          "engram_mix: y must be " + shape_string({n, S * D}) + ", found " + shape_string({p.y.rows, p.y.cols}));
  require(H == 0 || (p.history.rows == H && p.history.cols == S * D),
          "engram_mix: history must be " + shape_string({H, S * D}) + ", found " +
              shape_string({p.history.rows, p.history.cols}));
  const auto& w = p.w;
  require(w.value_w && w.value_b && w.key_w && w.key_b && w.key_norm && w.query_norm && w.conv_w && w.conv_norm,
          "engram_mix: a weight is missing");
  using M = Mat<T>;
  const T inv_sqrt_d = T(1) / std::sqrt(T(D));
  // In place, weighted: row = row / sqrt(mean(row^2) + eps) * g. The scaling runs on the raw
  // values (a loop that vectorises; element access through the Eigen block did not).
  // By reference: a by-value Matrix argument (the query row) would be a copy.
  auto rms = [](auto&& row, const T* g, double eps) {
    const T ms = row.squaredNorm() / T(row.size());
    const T inv = T(1) / std::sqrt(ms + T(eps));
    T* r = row.data();
    for (int64_t c = 0; c < row.size(); ++c) r[c] = r[c] * inv * g[c];
  };

  // The gates and the convolution go kMixTokenBlock tokens at a time: the block's Z rows are a
  // small buffer reused from block to block (in cache from the gates to the convolution)
  // instead of a [H + T, S*D] timeline mapped fresh on every call. Per element the operations
  // are those of one pass over all tokens.
  const int64_t SD = S * D, B = std::min(n, kMixTokenBlock);
  // Z timeline of the block: H rows before it (the history, then earlier blocks), its B rows.
  M z(H + B, SD);
  if (H > 0) z.topRows(H) = as_eigen(View2<const T>(p.history));
  M gate(B, S);  // sigmoid(a') per token and stream: V_{t,s} = gate(t, s) v_t
  Eigen::Matrix<T, 1, Eigen::Dynamic> q(D);  // the query row, normalised (one allocation)
  // The convolution: acc = (((0 + w_0 z_0) + w_1 z_1) + ...) with each product rounded before
  // its add, then Y = V + acc / (1 + exp(-acc)). The products go through a buffer so that they
  // are rounded (a multiply feeding an add in one loop may be fused into an FMA); the loops
  // over the channels vectorise, and only exp stays a scalar call. The weights are transposed
  // once to [K, S*D] so that tap i of every channel is contiguous.
  const size_t nch = size_t(SD);
  std::vector<T> wt(size_t(K) * nch), acc(nch), prod(nch), ex(nch);
  for (int64_t ch = 0; ch < SD; ++ch)
    for (int64_t i = 0; i < K; ++i) wt[size_t(i * SD + ch)] = w.conv_w[ch * K + i];
  // The products over all tokens at once (per block, Eigen would pack the weights again for
  // every block: 302 -> 390 ms at 512 V4-Flash tokens in blocks of 64).
  M v = linear(p.e, w.value_w, D, E);
  for (int64_t t = 0; t < n; ++t)
    for (int64_t c = 0; c < D; ++c) v(t, c) += w.value_b[c];
  // The keys of all S streams as one product: key_w is [S*D, E], stream s's rows at s*D.
  M k = linear(p.e, w.key_w, SD, E);
  for (int64_t t0 = 0; t0 < n; t0 += B) {
    const int64_t nb = std::min(B, n - t0);
    for (int64_t s = 0; s < S; ++s) {
      const T* kb = w.key_b + s * D;
      for (int64_t t = 0; t < nb; ++t) {
        auto kr = k.row(t0 + t).segment(s * D, D);
        T* kp = kr.data();
        for (int64_t c = 0; c < D; ++c) kp[c] += kb[c];
        rms(kr, w.key_norm + s * D, p.norm_eps);
        q = as_eigen(p.x).row(t0 + t).segment(s * D, D);
        rms(q, w.query_norm + s * D, p.norm_eps);
        const T a = kr.dot(q) * inv_sqrt_d;
        const T mag = std::sqrt(std::max(std::abs(a), T(kEngramGateFloor)));
        const T a2 = a > 0 ? mag : (a < 0 ? -mag : T(0));
        const T g = T(1) / (T(1) + std::exp(-a2));
        gate(t, s) = g;
        T* zr = &z(H + t, s * D);
        const T* vt = &v(t0 + t, 0);
        for (int64_t c = 0; c < D; ++c) zr[c] = g * vt[c];
        rms(z.row(H + t).segment(s * D, D), w.conv_norm + s * D, kEngramConvNormEps);
      }
    }
    for (int64_t t = 0; t < nb; ++t) {
      std::fill(acc.begin(), acc.end(), T(0));
      for (int64_t i = 0; i < K; ++i) {
        const T* zr = &z(H + t - (K - 1 - i) * p.dilation, 0);
        const T* wi = wt.data() + i * SD;
        for (int64_t ch = 0; ch < SD; ++ch) prod[size_t(ch)] = wi[ch] * zr[ch];
        for (int64_t ch = 0; ch < SD; ++ch) acc[size_t(ch)] += prod[size_t(ch)];
      }
      for (int64_t ch = 0; ch < SD; ++ch) ex[size_t(ch)] = std::exp(-acc[size_t(ch)]);
      T* yr = p.y.row(t0 + t);
      const T* vt = &v(t0 + t, 0);
      for (int64_t s = 0; s < S; ++s) {
        const T g = gate(t, s);
        const T* a = acc.data() + s * D;
        const T* e = ex.data() + s * D;
        T* ys = yr + s * D;
        for (int64_t c = 0; c < D; ++c) ys[c] = g * vt[c];  // V, rounded: its own loop, no FMA
        for (int64_t c = 0; c < D; ++c) ys[c] += a[c] / (T(1) + e[c]);
      }
    }
    // The last H rows of the timeline become the next block's history (a copy: they may overlap).
    if (H > 0) z.topRows(H) = z.middleRows(nb, H).eval();
  }
  if (H > 0) as_eigen(p.history) = z.topRows(H);
}

template void engram_lookup<float>(const EngramLookupParams<float>&);
template void engram_lookup<double>(const EngramLookupParams<double>&);
template void engram_mix<float>(const EngramMixParams<float>&);
template void engram_mix<double>(const EngramMixParams<double>&);

}  // namespace ref
}  // namespace dsv4
