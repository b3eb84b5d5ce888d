// Helpers for the checkpoint tests: a small config, temporary directories, an editable
// in-memory copy of a checkpoint, and independent decoders of the stored formats written
// from docs/v4-architecture.md §7 (they never call reference/formats.h or the loader).
#pragma once

#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <initializer_list>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "model/checkpoint.h"
#include "model/config.h"
#include "model/safetensors.h"
#include "reference/errors.h"
#include "tests/support/expect_error.h"

namespace dsv4::test {

namespace fs = std::filesystem;

class TmpDir {
 public:
  TmpDir() : p_(fs::temp_directory_path() / ("dsv4-ckpt-" + std::to_string(std::random_device{}()))) {
    fs::create_directories(p_);
  }
  ~TmpDir() {
    std::error_code ec;
    fs::remove_all(p_, ec);
  }
  std::string operator/(const std::string& n) const { return (p_ / n).string(); }
  const fs::path& path() const { return p_; }

 private:
  fs::path p_;
};

// V4-shaped and small: window-only, CSA, HCA and CSA layers (layer 0 hash-routed) and one
// MTP layer; widths that leave partial FP8 blocks (64 < 128) and FP4 rows of 2 scales.
inline ModelConfig micro_config() {
  ModelConfig c = config_preset("v4-tiny");
  c.name = "micro";
  c.vocab_size = 512;
  c.dim = 128;
  c.n_heads = 2;
  c.head_dim = 128;
  c.q_lora_rank = 128;
  c.o_groups = 2;
  c.o_lora_rank = 64;
  c.index_n_heads = 2;
  c.index_head_dim = 128;
  c.n_routed_experts = 4;
  c.experts_per_token = 2;
  c.moe_inter_dim = 64;
  c.n_layers = 4;
  c.compress_ratios = {0, 4, 128, 4, 0};
  c.n_hash_layers = 1;
  config_validate(c);
  return c;
}

// ---- independent decoders (spec §7) --------------------------------------------------------
inline double spec_e4m3(uint8_t c) {
  const int s = c >> 7, e = (c >> 3) & 15, m = c & 7;
  if (e == 15 && m == 7) return std::numeric_limits<double>::quiet_NaN();
  const double mag = e == 0 ? m * std::pow(2.0, -9) : (1.0 + m / 8.0) * std::pow(2.0, e - 7);
  return s ? -mag : mag;
}
inline double spec_e8m0(uint8_t b) {
  return b == 255 ? std::numeric_limits<double>::quiet_NaN() : std::pow(2.0, int(b) - 127);
}
inline double spec_e2m1(uint8_t nib) {
  static const double mag[8] = {0, 0.5, 1, 1.5, 2, 3, 4, 6};
  return (nib & 8) ? -mag[nib & 7] : mag[nib & 7];
}
inline double spec_bf16(uint16_t h) {
  const uint32_t u = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

// ---- an editable copy of a checkpoint's tensors ----------------------------------------------
struct Entry {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  std::vector<uint8_t> bytes;
};

class Ckpt {
 public:
  explicit Ckpt(const std::string& dir) : dir_(dir) {
    std::ifstream in(fs::path(dir) / "model.safetensors.index.json");
    std::stringstream ss;
    ss << in.rdbuf();
    const auto root = boost::json::parse(ss.str());
    std::vector<std::string> files;
    for (const auto& kv : root.at("weight_map").as_object()) {
      const std::string f(kv.value().as_string());
      if (std::find(files.begin(), files.end(), f) == files.end()) files.push_back(f);
    }
    for (const auto& f : files) {
      SafetensorsReader r((fs::path(dir) / f).string());
      for (const auto& t : r.tensors()) {
        const auto b = r.bytes(t);
        Entry e{t.name, t.dtype, t.shape, std::vector<uint8_t>(b.size())};
        std::memcpy(e.bytes.data(), b.data(), b.size());
        entries.push_back(std::move(e));
      }
    }
  }
  Entry& at(const std::string& name) {
    for (auto& e : entries)
      if (e.name == name) return e;
    throw std::runtime_error("test: no tensor " + name);
  }
  void remove(const std::string& name) {
    for (size_t i = 0; i < entries.size(); ++i)
      if (entries[i].name == name) {
        entries.erase(entries.begin() + long(i));
        return;
      }
    throw std::runtime_error("test: no tensor " + name);
  }
  template <class T>
  void add(const std::string& name, DType dt, std::vector<int64_t> shape, const std::vector<T>& v) {
    Entry e{name, dt, std::move(shape), std::vector<uint8_t>(v.size() * sizeof(T))};
    std::memcpy(e.bytes.data(), v.data(), e.bytes.size());
    entries.push_back(std::move(e));
  }
  // Rewrites the directory as one shard + index (or one model.safetensors when !index).
  void save(bool index = true) const {
    for (const auto& p : fs::directory_iterator(dir_)) {
      const std::string n = p.path().filename().string();
      if (n.rfind("model", 0) == 0) fs::remove(p.path());
    }
    SafetensorsWriter w;
    boost::json::object wm;
    const std::string file = index ? "model-00001-of-00001.safetensors" : "model.safetensors";
    for (const auto& e : entries) {
      w.add(e.name, e.dtype, e.shape, e.bytes.data(), e.bytes.size());
      wm[e.name] = file;
    }
    w.write((fs::path(dir_) / file).string());
    if (index) {
      std::ofstream(fs::path(dir_) / "model.safetensors.index.json")
          << boost::json::serialize(boost::json::object{{"weight_map", std::move(wm)}});
    }
  }
  std::vector<Entry> entries;

 private:
  std::string dir_;
};

inline void copy_dir(const std::string& from, const std::string& to) {
  fs::create_directories(to);
  fs::copy(from, to, fs::copy_options::recursive | fs::copy_options::overwrite_existing);
}

}  // namespace dsv4::test
