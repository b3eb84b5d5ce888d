// Storage for the rows an attention layer keeps between steps: window entries, compressed
// entries, indexer keys (spec §2.2-§2.4, §4). The reference layer reads and writes rows as
// T; how they are stored is the store's business: FloatEntryStore keeps them as they are,
// and model/kv_cache.h adds the BF16 layout and the deployment layouts (584-byte FP8 entry,
// 68-byte FP4 indexer key) with byte-exact accounting.
//
// A store is a resizable array of `width`-wide rows: write(r, row) overwrites row r,
// read(r0, n, out) decodes rows [r0, r0 + n) into out [n, width].
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

namespace dsv4 {

template <class T>
class EntryStore {
 public:
  explicit EntryStore(int64_t width) : width_(width) {}
  virtual ~EntryStore() = default;
  int64_t width() const { return width_; }
  virtual int64_t rows() const = 0;
  virtual void resize(int64_t rows) = 0;
  virtual void write(int64_t r, const T* row) = 0;
  virtual void read(int64_t r0, int64_t n, T* out) const = 0;
  virtual int64_t bytes() const = 0;  // bytes the rows occupy (capacity slack excluded)
  // The rows as a dense [rows, width] array of T when the store keeps them so (no decode
  // needed), else nullptr.
  virtual const T* contiguous() const { return nullptr; }
  virtual std::unique_ptr<EntryStore> clone() const = 0;

  void append(const T* rows, int64_t n) {
    const int64_t r0 = this->rows();
    resize(r0 + n);
    for (int64_t i = 0; i < n; ++i) write(r0 + i, rows + i * width_);
  }

 private:
  int64_t width_;
};

// Rows kept as T.
template <class T>
class FloatEntryStore final : public EntryStore<T> {
 public:
  using EntryStore<T>::EntryStore;
  int64_t rows() const override { return int64_t(data_.size()) / this->width(); }
  void resize(int64_t rows) override { data_.resize(size_t(rows * this->width())); }
  void write(int64_t r, const T* row) override {
    std::copy(row, row + this->width(), data_.begin() + r * this->width());
  }
  void read(int64_t r0, int64_t n, T* out) const override {
    std::copy_n(data_.begin() + r0 * this->width(), n * this->width(), out);
  }
  int64_t bytes() const override { return int64_t(data_.size() * sizeof(T)); }
  const T* contiguous() const override { return data_.data(); }
  std::unique_ptr<EntryStore<T>> clone() const override {
    return std::make_unique<FloatEntryStore>(*this);
  }

 private:
  std::vector<T> data_;
};

// What kind of rows a store will hold; a factory maps it to a store.
enum class EntryKind {
  window,      // sliding-window KV entry, width d (§2.2)
  compressed,  // main compressed entry, width d (§2.3)
  index_key,   // indexer key, width dI (§2.3)
};
template <class T>
using EntryStoreFactory = std::function<std::unique_ptr<EntryStore<T>>(EntryKind, int64_t width)>;

template <class T>
EntryStoreFactory<T> float_entry_stores() {
  return [](EntryKind, int64_t width) { return std::make_unique<FloatEntryStore<T>>(width); };
}

}  // namespace dsv4
