#include "model/kv_cache.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>

#include "reference/errors.h"
#include "reference/formats.h"
#include "reference/quant_fp4.h"
#include "reference/quant_fp8.h"

namespace dsv4 {

KvLayout kv_layout_from_name(const std::string& s) {
  if (s == "f32") return KvLayout::f32;
  if (s == "bf16") return KvLayout::bf16;
  if (s == "fp8") return KvLayout::fp8;
  throw InputError("KV layout: expected f32, bf16 or fp8, found '" + s + "'");
}
std::string kv_layout_name(KvLayout l) { return l == KvLayout::f32 ? "f32" : l == KvLayout::bf16 ? "bf16" : "fp8"; }

namespace {

constexpr int64_t kV4ScalePad = 8;  // the 7 UE8M0 scales of a 584 B entry are padded to 8 bytes
constexpr int64_t kMlaScaleBlock = 128;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }
int64_t round_up(int64_t a, int64_t b) { return ceil_div(a, b) * b; }

// ---- stores -----------------------------------------------------------------------------

template <class T>
class Bf16Store final : public EntryStore<T> {
 public:
  using EntryStore<T>::EntryStore;
  int64_t rows() const override { return int64_t(data_.size()) / this->width(); }
  void resize(int64_t r) override { data_.resize(size_t(r * this->width())); }
  void write(int64_t r, const T* row) override {
    for (int64_t i = 0; i < this->width(); ++i) data_[size_t(r * this->width() + i)] = fmt::bf16_encode(float(row[i]));
  }
  void read(int64_t r0, int64_t n, T* out) const override {
    for (int64_t i = 0; i < n * this->width(); ++i) out[i] = T(fmt::bf16_decode(data_[size_t(r0 * this->width() + i)]));
  }
  int64_t bytes() const override { return int64_t(data_.size()) * 2; }
  std::unique_ptr<EntryStore<T>> clone() const override { return std::make_unique<Bf16Store>(*this); }

 private:
  std::vector<uint16_t> data_;
};

// FP8 e4m3 on the first `fp8` dims in blocks of `block` (UE8M0 scales padded to `pad` bytes,
// or F32 scales), BF16 on the remaining dims. Serves the V4 584 B entry, the V3 656 B MLA
// row and the V3.2 132 B indexer key.
struct Fp8RowFormat {
  int64_t fp8 = 0, block = 64;
  bool ue8m0 = true;   // else F32 scale = amax / 448
  int64_t pad = 8;     // UE8M0 scale bytes padded to a multiple of this
  int64_t row_bytes(int64_t width) const {
    const int64_t nb = ceil_div(fp8, block);
    return fp8 + (ue8m0 ? round_up(nb, pad) : nb * 4) + (width - fp8) * 2;
  }
};

template <class T>
class Fp8RowStore final : public EntryStore<T> {
 public:
  Fp8RowStore(int64_t width, Fp8RowFormat f) : EntryStore<T>(width), f_(f), rb_(f.row_bytes(width)) {}
  int64_t rows() const override { return int64_t(data_.size()) / rb_; }
  void resize(int64_t r) override { data_.resize(size_t(r * rb_)); }
  void write(int64_t r, const T* row) override {
    uint8_t* p = data_.data() + r * rb_;
    uint8_t* scales = p + f_.fp8;
    const int64_t nb = ceil_div(f_.fp8, f_.block);
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t n = std::min(f_.block, f_.fp8 - b * f_.block);
      const T* x = row + b * f_.block;
      if (f_.ue8m0) {
        scales[b] = ref::fp8_encode_block(x, n, p + b * f_.block);
      } else {
        double amax = 0;
        for (int64_t i = 0; i < n; ++i) amax = std::max(amax, std::fabs(double(x[i])));
        const float s = float(std::max(amax, kFp8AmaxFloor) / kFp8Max);
        for (int64_t i = 0; i < n; ++i)
          p[b * f_.block + i] = fmt::e4m3_encode(std::clamp(double(x[i]) / s, -kFp8Max, kFp8Max));
        std::memcpy(scales + b * 4, &s, 4);
      }
    }
    if (f_.ue8m0) std::fill(scales + nb, scales + round_up(nb, f_.pad), uint8_t(0));
    uint8_t* tail = scales + (f_.ue8m0 ? round_up(nb, f_.pad) : nb * 4);
    for (int64_t i = f_.fp8; i < this->width(); ++i) {
      const uint16_t h = fmt::bf16_encode(float(row[i]));
      std::memcpy(tail + (i - f_.fp8) * 2, &h, 2);
    }
  }
  void read(int64_t r0, int64_t n, T* out) const override {
    const int64_t nb = ceil_div(f_.fp8, f_.block);
    for (int64_t k = 0; k < n; ++k) {
      const uint8_t* p = data_.data() + (r0 + k) * rb_;
      const uint8_t* scales = p + f_.fp8;
      T* y = out + k * this->width();
      for (int64_t b = 0; b < nb; ++b) {
        const int64_t m = std::min(f_.block, f_.fp8 - b * f_.block);
        if (f_.ue8m0) {
          ref::fp8_decode_block(p + b * f_.block, m, scales[b], y + b * f_.block);
        } else {
          float s;
          std::memcpy(&s, scales + b * 4, 4);
          for (int64_t i = 0; i < m; ++i) y[b * f_.block + i] = T(double(fmt::e4m3_decode(p[b * f_.block + i])) * s);
        }
      }
      const uint8_t* tail = scales + (f_.ue8m0 ? round_up(nb, f_.pad) : nb * 4);
      for (int64_t i = f_.fp8; i < this->width(); ++i) {
        uint16_t h;
        std::memcpy(&h, tail + (i - f_.fp8) * 2, 2);
        y[i] = T(fmt::bf16_decode(h));
      }
    }
  }
  int64_t bytes() const override { return int64_t(data_.size()); }
  std::unique_ptr<EntryStore<T>> clone() const override { return std::make_unique<Fp8RowStore>(*this); }

 private:
  Fp8RowFormat f_;
  int64_t rb_;
  std::vector<uint8_t> data_;
};

// FP4 e2m1 in blocks of 32 with UE8M0 scales: the V4 68 B indexer key.
template <class T>
class Fp4KeyStore final : public EntryStore<T> {
 public:
  explicit Fp4KeyStore(int64_t width) : EntryStore<T>(width), rb_(v4_index_key_bytes(KvLayout::fp8, width)) {
    require(width % 2 == 0, "FP4 key store: width must be even, found " + std::to_string(width));
  }
  int64_t rows() const override { return int64_t(data_.size()) / rb_; }
  void resize(int64_t r) override { data_.resize(size_t(r * rb_)); }
  void write(int64_t r, const T* row) override {
    uint8_t* p = data_.data() + r * rb_;
    uint8_t* scales = p + this->width() / 2;
    for (int64_t b = 0; b * kFp4Block < this->width(); ++b) {
      const int64_t n = std::min(kFp4Block, this->width() - b * kFp4Block);
      scales[b] = ref::fp4_encode_block(row + b * kFp4Block, n, p + b * kFp4Block / 2);
    }
  }
  void read(int64_t r0, int64_t n, T* out) const override {
    for (int64_t k = 0; k < n; ++k) {
      const uint8_t* p = data_.data() + (r0 + k) * rb_;
      const uint8_t* scales = p + this->width() / 2;
      for (int64_t b = 0; b * kFp4Block < this->width(); ++b) {
        const int64_t m = std::min(kFp4Block, this->width() - b * kFp4Block);
        ref::fp4_decode_block(p + b * kFp4Block / 2, m, scales[b], out + k * this->width() + b * kFp4Block);
      }
    }
  }
  int64_t bytes() const override { return int64_t(data_.size()); }
  std::unique_ptr<EntryStore<T>> clone() const override { return std::make_unique<Fp4KeyStore>(*this); }

 private:
  int64_t rb_;
  std::vector<uint8_t> data_;
};

Fp8RowFormat v4_entry_format(int64_t d, int64_t rope) { return {d - rope, kFp8KvBlock, true, kV4ScalePad}; }
Fp8RowFormat mla_format(int64_t latent) { return {latent, kMlaScaleBlock, false, 1}; }

int64_t state_bytes(const CompressorState<float>& s) {
  return int64_t((s.kv.size() + s.score.size()) * sizeof(float));
}

}  // namespace

int64_t v4_entry_bytes(KvLayout l, int64_t d, int64_t rope) {
  if (l == KvLayout::f32) return d * 4;
  if (l == KvLayout::bf16) return d * 2;
  return v4_entry_format(d, rope).row_bytes(d);
}
int64_t v4_index_key_bytes(KvLayout l, int64_t dI) {
  if (l == KvLayout::f32) return dI * 4;
  if (l == KvLayout::bf16) return dI * 2;
  return ceil_div(dI, 2) + ceil_div(dI, kFp4Block);
}
int64_t mla_row_bytes(KvLayout l, int64_t latent, int64_t rope) {
  if (l == KvLayout::f32) return (latent + rope) * 4;
  if (l == KvLayout::bf16) return (latent + rope) * 2;
  return mla_format(latent).row_bytes(latent + rope);
}
int64_t dsa_key_bytes(KvLayout l, int64_t dI) {
  if (l == KvLayout::f32) return dI * 4;
  if (l == KvLayout::bf16) return dI * 2;
  return mla_format(dI).row_bytes(dI);
}

template <class T>
EntryStoreFactory<T> v4_entry_stores(KvLayout l, int64_t rope_dim) {
  return [l, rope_dim](EntryKind kind, int64_t width) -> std::unique_ptr<EntryStore<T>> {
    switch (l) {
      case KvLayout::f32: return std::make_unique<FloatEntryStore<T>>(width);
      case KvLayout::bf16: return std::make_unique<Bf16Store<T>>(width);
      case KvLayout::fp8:
        if (kind == EntryKind::index_key) return std::make_unique<Fp4KeyStore<T>>(width);
        return std::make_unique<Fp8RowStore<T>>(width, v4_entry_format(width, rope_dim));
    }
    return nullptr;
  };
}
template EntryStoreFactory<float> v4_entry_stores<float>(KvLayout, int64_t);
template EntryStoreFactory<double> v4_entry_stores<double>(KvLayout, int64_t);

// ---- analytic ----------------------------------------------------------------------------

KvBytes kv_bytes_analytic(const ModelConfig& c, int64_t L, KvLayout layout) {
  KvBytes b;
  if (c.arch != Arch::v4) {
    const int64_t row = mla_row_bytes(layout, c.kv_lora_rank, c.rope_dim);
    b.compressed = c.n_layers * L * row;
    if (c.arch == Arch::v32) b.index_keys = c.n_layers * L * dsa_key_bytes(layout, c.index_head_dim);
    return b;
  }
  const int64_t cw = v4_entry_bytes(layout, c.head_dim, c.rope_dim);
  const int64_t ck = v4_index_key_bytes(layout, c.index_head_dim);
  for (int64_t l = 0; l < c.n_layers; ++l) {
    const int64_t m = c.ratio(l);
    b.window += std::min(L, c.window) * cw;
    if (m == 0) continue;
    const int64_t entries = (L / m) * cw;
    const bool csa = m == kCsaRatio;
    const int64_t cc = csa ? 2 : 1;
    b.compressed += entries;
    b.state += 2 * (cc * m) * (cc * c.head_dim) * 4;  // kv + score, FP32
    if (csa) {
      b.index_keys += (L / m) * ck;
      b.state += 2 * (2 * m) * (2 * c.index_head_dim) * 4;
      b.csa += entries + (L / m) * ck;
    } else if (m == kHcaRatio) {
      b.hca += entries;
    }
  }
  return b;
}

// ---- measured ----------------------------------------------------------------------------

KvCache::KvCache(const ModelConfig& c, KvLayout layout) : config_(c), layout_(layout) {
  require(c.arch == Arch::v4, "KvCache: '" + c.name + "' is not a V4 config (use MlaCache)");
  for (int64_t l = 0; l < c.n_layers; ++l)
    layers_.push_back(ref::attention_layer_state_init<float>(c.attention_shape(l), v4_entry_stores<float>(layout, c.rope_dim)));
}

int64_t KvCache::positions() const { return layers_.empty() ? 0 : layers_.front().pos; }

namespace {
// Random rows; in the fp8 layout the store quantises them on the way in.
void fill(EntryStore<float>& s, int64_t rows, std::mt19937_64& g) {
  std::normal_distribution<float> d(0.0f, 1.0f);
  std::vector<float> row(size_t(s.width()));
  s.resize(rows);
  for (int64_t r = 0; r < rows; ++r) {
    for (auto& v : row) v = d(g);
    s.write(r, row.data());
  }
}
}  // namespace

void KvCache::fill_synthetic(int64_t L, uint64_t seed) {
  std::mt19937_64 g(seed);
  for (int64_t l = 0; l < config_.n_layers; ++l) {
    auto& st = layers_[size_t(l)];
    const int64_t m = config_.ratio(l);
    st.pos = L;
    fill(*st.window, std::min(L, config_.window), g);
    if (m > 0) {
      fill(*st.comp, L / m, g);
      st.comp_state.pos = L;
    }
    if (st.index_keys) {
      fill(*st.index_keys, L / m, g);
      st.index_state.pos = L;
    }
  }
}

KvBytes KvCache::bytes() const {
  KvBytes b;
  for (int64_t l = 0; l < config_.n_layers; ++l) {
    const auto& st = layers_[size_t(l)];
    b.window += st.window->bytes();
    const int64_t m = config_.ratio(l);
    if (m == 0) continue;
    b.compressed += st.comp->bytes();
    b.state += state_bytes(st.comp_state);
    if (st.index_keys) {
      b.index_keys += st.index_keys->bytes();
      b.state += state_bytes(st.index_state);
      b.csa += st.comp->bytes() + st.index_keys->bytes();
    } else if (m == kHcaRatio) {
      b.hca += st.comp->bytes();
    }
  }
  return b;
}

MlaCache::MlaCache(const ModelConfig& c, KvLayout layout) : config_(c), layout_(layout) {
  require(c.arch != Arch::v4, "MlaCache: '" + c.name + "' is a V4 config (use KvCache)");
  auto make = [&](int64_t fp8, int64_t rope) -> std::unique_ptr<EntryStore<float>> {
    if (layout == KvLayout::f32) return std::make_unique<FloatEntryStore<float>>(fp8 + rope);
    if (layout == KvLayout::bf16) return std::make_unique<Bf16Store<float>>(fp8 + rope);
    return std::make_unique<Fp8RowStore<float>>(fp8 + rope, mla_format(fp8));
  };
  for (int64_t l = 0; l < c.n_layers; ++l) {
    rows_.push_back(make(c.kv_lora_rank, c.rope_dim));
    if (c.arch == Arch::v32) keys_.push_back(make(c.index_head_dim, 0));
  }
}

void MlaCache::fill_synthetic(int64_t L, uint64_t seed) {
  std::mt19937_64 g(seed);
  for (auto& s : rows_) fill(*s, L, g);
  for (auto& s : keys_) fill(*s, L, g);
}

KvBytes MlaCache::bytes() const {
  KvBytes b;
  for (const auto& s : rows_) b.compressed += s->bytes();
  for (const auto& s : keys_) b.index_keys += s->bytes();
  return b;
}

}  // namespace dsv4
