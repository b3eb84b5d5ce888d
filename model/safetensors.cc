#include "model/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <boost/json.hpp>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <stdexcept>

#include "reference/errors.h"
#include "reference/formats.h"

namespace dsv4 {

namespace json = boost::json;

namespace {

// The safetensors project caps the header at 100 MB; so do we.
constexpr uint64_t kMaxHeaderBytes = 100ull << 20;

bool mul_overflows(uint64_t a, uint64_t b, uint64_t* out) {
  if (a != 0 && b > std::numeric_limits<uint64_t>::max() / a) return true;
  *out = a * b;
  return false;
}

}  // namespace

int64_t TensorInfo::numel() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;
  return n;
}

SafetensorsReader::SafetensorsReader(const std::string& path) : path_(path) {
  auto fail = [&](const std::string& what) -> InputError {
    return InputError("safetensors file '" + path + "': " + what);
  };
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw fail(std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    ::close(fd);
    throw fail(std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) {
    ::close(fd);
    throw fail("not a regular file");
  }
  map_size_ = size_t(st.st_size);
  if (map_size_ < 8) {
    ::close(fd);
    throw fail("file is " + std::to_string(map_size_) + " bytes, shorter than the 8-byte header length");
  }
  void* m = ::mmap(nullptr, map_size_, PROT_READ, MAP_PRIVATE, fd, 0);
  ::close(fd);
  if (m == MAP_FAILED) throw fail(std::string("mmap: ") + std::strerror(errno));
  map_ = static_cast<const std::byte*>(m);

  try {
    uint64_t n = 0;
    for (int i = 7; i >= 0; --i) n = (n << 8) | uint64_t(std::to_integer<uint8_t>(map_[i]));
    if (n > kMaxHeaderBytes) throw fail("header length " + std::to_string(n) + " exceeds 100 MB");
    if (n > map_size_ - 8)
      throw fail("header length " + std::to_string(n) + " exceeds the file (" +
                 std::to_string(map_size_ - 8) + " bytes after the length)");
    data_ = map_ + 8 + n;
    const uint64_t data_size = map_size_ - 8 - n;
    json::value root;
    try {
      root = json::parse(std::string_view(reinterpret_cast<const char*>(map_ + 8), n));
    } catch (const std::exception& e) {
      throw fail(std::string("header is not valid JSON: ") + e.what());
    }
    if (!root.is_object()) throw fail("header is not a JSON object");
    for (const auto& kv : root.as_object()) {
      const std::string key(kv.key());
      if (key == "__metadata__") {
        if (!kv.value().is_object()) throw fail("__metadata__ is not an object");
        for (const auto& m2 : kv.value().as_object()) {
          if (!m2.value().is_string())
            throw fail("__metadata__ value of '" + std::string(m2.key()) + "' is not a string");
          metadata_[std::string(m2.key())] = std::string(m2.value().as_string());
        }
        continue;
      }
      auto bad = [&](const std::string& what) { return fail("tensor '" + key + "': " + what); };
      if (!kv.value().is_object()) throw bad("entry is not an object");
      const auto& o = kv.value().as_object();
      TensorInfo t;
      t.name = key;
      const auto* dt = o.if_contains("dtype");
      if (!dt || !dt->is_string()) throw bad("missing string 'dtype'");
      const auto parsed = dtype_from_name(std::string_view(dt->as_string()));
      if (!parsed) throw bad("unknown dtype '" + std::string(dt->as_string()) + "'");
      t.dtype = *parsed;
      const auto* sh = o.if_contains("shape");
      if (!sh || !sh->is_array()) throw bad("missing array 'shape'");
      uint64_t numel = 1;
      for (const auto& d : sh->as_array()) {
        if (!d.is_int64() && !d.is_uint64()) throw bad("shape entries must be integers");
        const int64_t v = d.is_int64() ? d.as_int64() : int64_t(d.as_uint64());
        if (v < 0) throw bad("negative dimension " + std::to_string(v));
        if (mul_overflows(numel, uint64_t(v), &numel)) throw bad("shape overflows");
        t.shape.push_back(v);
      }
      const auto* off = o.if_contains("data_offsets");
      if (!off || !off->is_array() || off->as_array().size() != 2)
        throw bad("missing 'data_offsets' [begin, end]");
      uint64_t be[2];
      for (int i = 0; i < 2; ++i) {
        const auto& v = off->as_array()[i];
        if (v.is_uint64())
          be[i] = v.as_uint64();
        else if (v.is_int64() && v.as_int64() >= 0)
          be[i] = uint64_t(v.as_int64());
        else
          throw bad("data_offsets must be non-negative integers");
      }
      if (be[0] > be[1]) throw bad("data_offsets begin > end");
      if (be[1] > data_size)
        throw bad("data_offsets end " + std::to_string(be[1]) + " is past the data section (" +
                  std::to_string(data_size) + " bytes)");
      uint64_t want = 0;
      if (mul_overflows(numel, dtype_size(t.dtype), &want)) throw bad("byte size overflows");
      if (be[1] - be[0] != want)
        throw bad("holds " + std::to_string(be[1] - be[0]) + " bytes, shape " +
                  shape_string(t.shape) + " of " + std::string(dtype_name(t.dtype)) + " needs " +
                  std::to_string(want));
      t.begin = be[0];
      t.nbytes = want;
      tensors_.push_back(std::move(t));
    }
    std::vector<const TensorInfo*> by_offset;
    for (const auto& t : tensors_)
      if (t.nbytes) by_offset.push_back(&t);
    std::sort(by_offset.begin(), by_offset.end(),
              [](const TensorInfo* a, const TensorInfo* b) { return a->begin < b->begin; });
    for (size_t i = 1; i < by_offset.size(); ++i) {
      if (by_offset[i]->begin < by_offset[i - 1]->begin + by_offset[i - 1]->nbytes)
        throw fail("tensors '" + by_offset[i - 1]->name + "' and '" + by_offset[i]->name +
                   "' overlap");
    }
  } catch (...) {
    ::munmap(const_cast<std::byte*>(map_), map_size_);
    map_ = nullptr;
    throw;
  }
}

SafetensorsReader::SafetensorsReader(SafetensorsReader&& o) noexcept
    : path_(std::move(o.path_)),
      map_(o.map_),
      map_size_(o.map_size_),
      data_(o.data_),
      tensors_(std::move(o.tensors_)),
      metadata_(std::move(o.metadata_)) {
  o.map_ = nullptr;
}

SafetensorsReader::~SafetensorsReader() {
  if (map_) ::munmap(const_cast<std::byte*>(map_), map_size_);
}

const TensorInfo* SafetensorsReader::find(std::string_view name) const {
  for (const auto& t : tensors_)
    if (t.name == name) return &t;
  return nullptr;
}

std::span<const std::byte> SafetensorsReader::bytes(const TensorInfo& t) const {
  return {data_ + t.begin, size_t(t.nbytes)};
}

template <class T>
std::vector<T> SafetensorsReader::read_float(const TensorInfo& t) const {
  if (!dtype_is_float(t.dtype))
    throw InputError("tensor '" + t.name + "': expected a floating dtype, found " +
                     std::string(dtype_name(t.dtype)));
  const auto b = bytes(t);
  const size_t n = size_t(t.numel());
  std::vector<T> out(n);
  auto load = [&](size_t i, auto tag) {
    decltype(tag) v;
    std::memcpy(&v, b.data() + i * sizeof(v), sizeof(v));
    return v;
  };
  for (size_t i = 0; i < n; ++i) {
    switch (t.dtype) {
      case DType::F64: out[i] = T(load(i, double{})); break;
      case DType::F32: out[i] = T(load(i, float{})); break;
      case DType::F16: out[i] = T(fmt::f16_decode(load(i, uint16_t{}))); break;
      case DType::BF16: out[i] = T(fmt::bf16_decode(load(i, uint16_t{}))); break;
      case DType::F8_E4M3: out[i] = T(fmt::e4m3_decode(load(i, uint8_t{}))); break;
      case DType::F8_E8M0: out[i] = T(fmt::ue8m0_decode(load(i, uint8_t{}))); break;
      default: break;
    }
  }
  return out;
}

std::vector<int64_t> SafetensorsReader::read_int(const TensorInfo& t) const {
  if (!dtype_is_int(t.dtype))
    throw InputError("tensor '" + t.name + "': expected an integer dtype, found " +
                     std::string(dtype_name(t.dtype)));
  const auto b = bytes(t);
  const size_t n = size_t(t.numel());
  std::vector<int64_t> out(n);
  auto load = [&](size_t i, auto tag) {
    decltype(tag) v;
    std::memcpy(&v, b.data() + i * sizeof(v), sizeof(v));
    return int64_t(v);
  };
  for (size_t i = 0; i < n; ++i) {
    switch (t.dtype) {
      case DType::I64: out[i] = load(i, int64_t{}); break;
      case DType::I32: out[i] = load(i, int32_t{}); break;
      case DType::I16: out[i] = load(i, int16_t{}); break;
      case DType::I8: out[i] = load(i, int8_t{}); break;
      case DType::U8:
      case DType::BOOL: out[i] = load(i, uint8_t{}); break;
      default: break;
    }
  }
  return out;
}

template std::vector<float> SafetensorsReader::read_float<float>(const TensorInfo&) const;
template std::vector<double> SafetensorsReader::read_float<double>(const TensorInfo&) const;

// ---- writer ---------------------------------------------------------------------------

void SafetensorsWriter::set_metadata(const std::string& key, const std::string& value) {
  metadata_[key] = value;
}

void SafetensorsWriter::add(const std::string& name, DType dtype, std::vector<int64_t> shape,
                            const void* data, size_t nbytes) {
  if (name.empty() || name == "__metadata__")
    throw std::invalid_argument("safetensors writer: invalid tensor name '" + name + "'");
  for (const auto& e : entries_)
    if (e.name == name) throw std::invalid_argument("safetensors writer: duplicate tensor '" + name + "'");
  int64_t numel = 1;
  for (int64_t d : shape) {
    if (d < 0) throw std::invalid_argument("safetensors writer: negative dimension in '" + name + "'");
    numel *= d;
  }
  if (size_t(numel) * dtype_size(dtype) != nbytes)
    throw std::invalid_argument("safetensors writer: tensor '" + name + "' has " +
                                std::to_string(nbytes) + " bytes for shape " + shape_string(shape));
  Entry e{name, dtype, std::move(shape), std::vector<std::byte>(nbytes)};
  if (nbytes) std::memcpy(e.data.data(), data, nbytes);
  entries_.push_back(std::move(e));
}

template <class T>
void SafetensorsWriter::add_float(const std::string& name, std::vector<int64_t> shape,
                                  const T* data, DType as) {
  int64_t numel = 1;
  for (int64_t d : shape) numel *= d;
  std::vector<std::byte> buf(size_t(numel) * dtype_size(as));
  for (int64_t i = 0; i < numel; ++i) {
    std::byte* dst = buf.data() + i * dtype_size(as);
    switch (as) {
      case DType::F64: { const double v = double(data[i]); std::memcpy(dst, &v, 8); break; }
      case DType::F32: { const float v = float(data[i]); std::memcpy(dst, &v, 4); break; }
      case DType::F16: { const uint16_t v = fmt::f16_encode(float(data[i])); std::memcpy(dst, &v, 2); break; }
      case DType::BF16: { const uint16_t v = fmt::bf16_encode(float(data[i])); std::memcpy(dst, &v, 2); break; }
      default:
        throw std::invalid_argument("safetensors writer: add_float cannot encode " +
                                    std::string(dtype_name(as)));
    }
  }
  add(name, as, std::move(shape), buf.data(), buf.size());
}

template void SafetensorsWriter::add_float<float>(const std::string&, std::vector<int64_t>,
                                                  const float*, DType);
template void SafetensorsWriter::add_float<double>(const std::string&, std::vector<int64_t>,
                                                   const double*, DType);

void SafetensorsWriter::write(const std::string& path) const {
  json::object header;
  if (!metadata_.empty()) {
    json::object m;
    for (const auto& [k, v] : metadata_) m[k] = v;
    header["__metadata__"] = std::move(m);
  }
  uint64_t off = 0;
  for (const auto& e : entries_) {
    json::array shape;
    for (int64_t d : e.shape) shape.push_back(d);
    header[e.name] = json::object{{"dtype", std::string(dtype_name(e.dtype))},
                                  {"shape", std::move(shape)},
                                  {"data_offsets", json::array{off, off + e.data.size()}}};
    off += e.data.size();
  }
  std::string h = json::serialize(header);
  while ((8 + h.size()) % 8) h.push_back(' ');

  namespace fs = std::filesystem;
  const fs::path dest(path);
  const fs::path dir = dest.has_parent_path() ? dest.parent_path() : fs::path(".");
  std::string tmpl = (dir / ("." + dest.filename().string() + ".tmp.XXXXXX")).string();
  const int fd = ::mkstemp(tmpl.data());
  if (fd < 0)
    throw std::runtime_error("cannot create a temporary file in '" + dir.string() + "': " +
                             std::strerror(errno));
  ::fchmod(fd, 0644);  // mkstemp creates 0600; results are meant to be shared
  auto write_all = [&](const void* p, size_t n) {
    const char* c = static_cast<const char*>(p);
    while (n) {
      const ssize_t k = ::write(fd, c, n);
      if (k < 0) {
        if (errno == EINTR) continue;
        return false;
      }
      c += k;
      n -= size_t(k);
    }
    return true;
  };
  uint8_t len[8];
  for (int i = 0; i < 8; ++i) len[i] = uint8_t(uint64_t(h.size()) >> (8 * i));
  bool ok = write_all(len, 8) && write_all(h.data(), h.size());
  for (const auto& e : entries_) ok = ok && write_all(e.data.data(), e.data.size());
  ok = ok && ::fsync(fd) == 0;
  const int saved = errno;
  ok = (::close(fd) == 0) && ok;
  if (!ok || ::rename(tmpl.c_str(), path.c_str()) != 0) {
    const int err = ok ? errno : saved;
    ::unlink(tmpl.c_str());
    throw std::runtime_error("cannot write '" + path + "': " + std::strerror(err));
  }
}

}  // namespace dsv4
