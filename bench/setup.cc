#include "bench/setup.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>
#include <unordered_set>

namespace dsv4::bench {

namespace {

uint64_t splitmix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// A resumable stream of random values: chunks drawn one after the other give the values
// one call for the whole length would give.
class Stream {
 public:
  Stream(uint64_t seed, float sigma, Fill fill) : fill_(fill), seed_(seed), sigma_(sigma), gen_(seed), dist_(0.0f, sigma) {}
  void next(float* p, size_t n) {
    if (fill_ == Fill::normal) {
      for (size_t i = 0; i < n; ++i) p[i] = dist_(gen_);
    } else {
      fill_uniform(p, n, seed_ ^ (0x5851F42D4C957F2Dull * (offset_ + 1)), sigma_);
      ++offset_;
    }
  }

 private:
  Fill fill_;
  uint64_t seed_;
  float sigma_;
  uint64_t offset_ = 0;
  std::mt19937_64 gen_;
  std::normal_distribution<float> dist_;
};

// Writes n rows of `store` from row r0 on, drawn from `s` in chunks (no full-size copy).
void write_random_rows(EntryStore<float>& store, int64_t r0, int64_t n, Stream& s) {
  const int64_t w = store.width(), chunk = std::max<int64_t>(1, (int64_t(1) << 20) / w);
  std::vector<float> buf(size_t(std::min(n, chunk) * w));
  for (int64_t r = 0; r < n; r += chunk) {
    const int64_t m = std::min(chunk, n - r);
    s.next(buf.data(), size_t(m * w));
    for (int64_t i = 0; i < m; ++i) store.write(r0 + r + i, buf.data() + i * w);
  }
}

}  // namespace

void fill_uniform(float* p, size_t n, uint64_t seed, float sigma) {
  // 24 random bits -> u in [-1, 1); uniform on [-a, a) has standard deviation a / sqrt(3).
  const float scale = sigma * std::sqrt(3.0f) / float(1 << 23);
  const uint64_t base = splitmix64(seed);
  size_t i = 0;
  for (uint64_t c = 0; i + 1 < n; ++c, i += 2) {
    const uint64_t z = splitmix64(base + c);
    p[i] = (float(int32_t(z & 0xFFFFFF)) - float(1 << 23)) * scale;
    p[i + 1] = (float(int32_t((z >> 32) & 0xFFFFFF)) - float(1 << 23)) * scale;
  }
  if (i < n) p[i] = (float(int32_t(splitmix64(base + n) & 0xFFFFFF)) - float(1 << 23)) * scale;
}

std::vector<float> randn(size_t n, uint64_t seed, float sigma) {
  std::mt19937_64 g(seed);
  std::normal_distribution<float> dist(0.0f, sigma);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(g);
  return v;
}

std::vector<float> rand_uniform(size_t n, uint64_t seed, float sigma) {
  std::vector<float> v(n);
  fill_uniform(v.data(), n, seed, sigma);
  return v;
}

std::vector<float> random_vector(size_t n, uint64_t seed, float sigma, Fill fill) {
  return fill == Fill::normal ? randn(n, seed, sigma) : rand_uniform(n, seed, sigma);
}

std::vector<int32_t> distinct_indices(int64_t k, int64_t n, uint64_t seed) {
  std::mt19937_64 g(seed);
  std::vector<int32_t> out;
  out.reserve(size_t(k));
  if (4 * k > n) {  // dense: a partial shuffle of 0..n-1
    std::vector<int32_t> all(static_cast<size_t>(n));
    std::iota(all.begin(), all.end(), 0);
    for (int64_t i = 0; i < k; ++i) std::swap(all[size_t(i)], all[size_t(i + int64_t(g() % uint64_t(n - i)))]);
    out.assign(all.begin(), all.begin() + k);
    return out;
  }
  std::unordered_set<int32_t> seen;
  while (int64_t(out.size()) < k) {
    const auto j = int32_t(g() % uint64_t(n));
    if (seen.insert(j).second) out.push_back(j);
  }
  return out;
}

AttentionLayerWeights<float> LayerWeightData::weights() const {
  return {wq_a.data(), q_norm.data(), wq_b.data(), wkv.data(), kv_norm.data(), wo_a.data(),
          wo_b.data(), sink.data(), {cw.data(), cg.data(), ca.data(), cn.data()},
          {iw.data(), ig.data(), ia.data(), in.data()}, iqb.data(), iwp.data()};
}

double LayerWeightData::matrix_elements() const {
  return double(wq_a.size() + wq_b.size() + wkv.size() + wo_a.size() + wo_b.size() + cw.size() + cg.size() +
                iw.size() + ig.size() + iqb.size() + iwp.size());
}

LayerWeightData random_layer_weights(const AttentionLayerShape& s, uint64_t seed, Fill fill, float ws) {
  LayerWeightData w;
  w.shape = s;
  const bool comp = s.ratio > 0, csa = s.ratio == kCsaRatio;
  const int64_t cc = csa ? 2 : 1;
  auto gen = [&](int64_t i, int64_t n, float sigma) { return random_vector(size_t(n), seed + uint64_t(i), sigma, fill); };
  w.wq_a = gen(0, s.q_rank * s.dim, ws);
  w.q_norm = gen(1, s.q_rank, 1);
  w.wq_b = gen(2, s.heads * s.head_dim * s.q_rank, ws);
  w.wkv = gen(3, s.head_dim * s.dim, ws);
  w.kv_norm = gen(4, s.head_dim, 1);
  w.wo_a = gen(5, s.groups * s.o_rank * (s.heads / s.groups) * s.head_dim, ws);
  w.wo_b = gen(6, s.dim * s.groups * s.o_rank, ws);
  w.sink = gen(7, s.heads, 1);
  if (comp) {
    w.cw = gen(8, cc * s.head_dim * s.dim, ws);
    w.cg = gen(9, cc * s.head_dim * s.dim, ws);
    w.ca = gen(10, s.ratio * cc * s.head_dim, 0.1f);
    w.cn = gen(11, s.head_dim, 1);
  }
  if (csa) {
    w.iw = gen(12, 2 * s.index_dim * s.dim, ws);
    w.ig = gen(13, 2 * s.index_dim * s.dim, ws);
    w.ia = gen(14, s.ratio * 2 * s.index_dim, 0.1f);
    w.in = gen(15, s.index_dim, 1);
    w.iqb = gen(16, s.index_heads * s.index_dim * s.q_rank, ws);
    w.iwp = gen(17, s.index_heads * s.dim, ws);
  }
  return w;
}

double layer_weight_bytes(const AttentionLayerShape& s) {
  const double cc = s.ratio == kCsaRatio ? 2 : 1;
  double n = double(s.q_rank) * s.dim + double(s.heads) * s.head_dim * s.q_rank + double(s.head_dim) * s.dim +
             double(s.groups) * s.o_rank * (s.heads / s.groups) * s.head_dim + double(s.dim) * s.groups * s.o_rank;
  if (s.ratio > 0) n += 2 * cc * s.head_dim * double(s.dim);
  if (s.ratio == kCsaRatio)
    n += 4.0 * s.index_dim * s.dim + double(s.index_heads) * s.index_dim * s.q_rank + double(s.index_heads) * s.dim;
  return 4 * n;
}

AttentionLayerState<float> synthetic_layer_state(const AttentionLayerShape& s, int64_t L, uint64_t seed, Fill fill) {
  auto st = ref::attention_layer_state_init<float>(s);
  st.pos = L;
  const int64_t w = std::min(L, s.window);
  Stream win(seed, 0.05f, fill);
  st.window->resize(w);
  write_random_rows(*st.window, 0, w, win);
  if (s.ratio > 0) {
    const int64_t N = L / s.ratio;
    Stream comp(seed + 1, 0.05f, fill);
    st.comp->resize(N);
    write_random_rows(*st.comp, 0, N, comp);
    st.comp_state.pos = L;
  }
  if (s.ratio == kCsaRatio) {
    const int64_t N = L / s.ratio;
    Stream keys(seed + 2, 0.1f, fill);
    st.index_keys->resize(N);
    write_random_rows(*st.index_keys, 0, N, keys);
    st.index_state.pos = L;
  }
  return st;
}

int64_t cold_copies(double working_set_bytes) {
  if (working_set_bytes <= 0) return 1;
  return std::clamp<int64_t>(int64_t(std::ceil(kColdBytes / working_set_bytes)), 1, 256);
}

Step round_robin(int64_t copies, const std::function<Step(int64_t)>& make) {
  auto steps = std::make_shared<std::vector<Step>>();
  for (int64_t i = 0; i < copies; ++i) steps->push_back(make(i));
  if (copies == 1) return steps->front();
  return [steps, i = size_t(0)]() mutable {
    (*steps)[i]();
    i = i + 1 == steps->size() ? 0 : i + 1;
  };
}

}  // namespace dsv4::bench
