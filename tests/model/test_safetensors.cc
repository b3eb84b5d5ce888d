// model/safetensors: round trips of every dtype, metadata, decoding to float/int, the
// reader's validation of untrusted headers, and the writer's atomicity.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>

#include "model/safetensors.h"
#include "reference/errors.h"
#include "reference/formats.h"

namespace dsv4 {
namespace {

namespace fs = std::filesystem;

class TmpDir {
 public:
  TmpDir() : p_(fs::temp_directory_path() / ("dsv4-st-" + std::to_string(std::random_device{}()))) {
    fs::create_directories(p_);
  }
  ~TmpDir() { fs::remove_all(p_); }
  std::string operator/(const std::string& n) const { return (p_ / n).string(); }
  size_t count() const { return size_t(std::distance(fs::directory_iterator(p_), fs::directory_iterator())); }

 private:
  fs::path p_;
};

std::string raw(const std::string& header, const std::string& data) {
  std::string s(8, '\0');
  const uint64_t n = header.size();
  for (int i = 0; i < 8; ++i) s[i] = char((n >> (8 * i)) & 0xFF);
  return s + header + data;
}

void put(const std::string& path, const std::string& bytes) { std::ofstream(path, std::ios::binary) << bytes; }

TEST(Safetensors, EveryDtypeRoundTripsBitExactly) {
  TmpDir d;
  SafetensorsWriter w;
  const std::vector<double> f64 = {1.5, -2.25, 1e-300, 3.0};
  const std::vector<float> f32 = {0.1f, -7.0f, 65504.0f};
  const std::vector<int64_t> i64 = {-1, 0, int64_t(1) << 40};
  const std::vector<int32_t> i32 = {-5, 7};
  const std::vector<uint8_t> u8 = {0, 127, 255}, e4m3 = {0x38, 0xB8, 0x7E}, e8m0 = {127, 0, 130};
  const std::vector<int8_t> i8 = {-128, 3};
  w.add("f64", DType::F64, {2, 2}, f64.data(), 32);
  w.add("f32", DType::F32, {3}, f32.data(), 12);
  w.add_float("bf16", {3}, f32.data(), DType::BF16);
  w.add_float("f16", {3}, f32.data(), DType::F16);
  w.add("e4m3", DType::F8_E4M3, {3}, e4m3.data(), 3);
  w.add("e8m0", DType::F8_E8M0, {3}, e8m0.data(), 3);
  w.add("i64", DType::I64, {3}, i64.data(), 24);
  w.add("i32", DType::I32, {1, 2}, i32.data(), 8);
  w.add("i8", DType::I8, {2}, i8.data(), 2);
  w.add("u8", DType::U8, {3}, u8.data(), 3);
  w.add("empty", DType::F32, {0, 4}, nullptr, 0);
  w.add("scalar", DType::F32, {}, f32.data(), 4);
  w.set_metadata("format", "pt");
  w.set_metadata("note", "quotes \" and \\ survive");
  w.write(d / "a.safetensors");

  SafetensorsReader r(d / "a.safetensors");
  EXPECT_EQ(r.tensors().size(), 12u);
  EXPECT_EQ(r.metadata().at("format"), "pt");
  EXPECT_EQ(r.metadata().at("note"), "quotes \" and \\ survive");
  auto bytes_equal = [&](const char* n, const void* p, size_t len) {
    const auto b = r.bytes(*r.find(n));
    ASSERT_EQ(b.size(), len) << n;
    EXPECT_EQ(std::memcmp(b.data(), p, len), 0) << n;
  };
  bytes_equal("f64", f64.data(), 32);
  bytes_equal("i64", i64.data(), 24);
  bytes_equal("e4m3", e4m3.data(), 3);
  EXPECT_EQ(r.find("f64")->shape, (std::vector<int64_t>{2, 2}));
  EXPECT_EQ(r.find("scalar")->shape, std::vector<int64_t>{});
  EXPECT_EQ(r.find("empty")->numel(), 0);
  EXPECT_EQ(r.read_float<double>(*r.find("f64")), f64);
  EXPECT_EQ(r.read_float<float>(*r.find("f32")), f32);
  const auto bf = r.read_float<float>(*r.find("bf16"));
  const auto h = r.read_float<float>(*r.find("f16"));
  for (size_t i = 0; i < f32.size(); ++i) {
    EXPECT_EQ(bf[i], fmt::bf16_round(f32[i]));
    EXPECT_EQ(h[i], fmt::f16_decode(fmt::f16_encode(f32[i])));
  }
  EXPECT_EQ(h[2], 65504.0f);  // largest half
  EXPECT_EQ(r.read_float<double>(*r.find("e4m3")), (std::vector<double>{1.0, -1.0, 448.0}));
  EXPECT_EQ(r.read_float<double>(*r.find("e8m0")), (std::vector<double>{1.0, std::ldexp(1.0, -127), 8.0}));
  EXPECT_EQ(r.read_int(*r.find("i64")), i64);
  EXPECT_EQ(r.read_int(*r.find("i32")), (std::vector<int64_t>{-5, 7}));
  EXPECT_EQ(r.read_int(*r.find("i8")), (std::vector<int64_t>{-128, 3}));
  EXPECT_EQ(r.read_int(*r.find("u8")), (std::vector<int64_t>{0, 127, 255}));
  EXPECT_THROW(r.read_int(*r.find("f32")), InputError);
  EXPECT_THROW(r.read_float<float>(*r.find("i32")), InputError);
  EXPECT_EQ(r.find("nope"), nullptr);
  // Header is padded so that the data section starts 8-byte aligned.
  std::ifstream f(d / "a.safetensors", std::ios::binary);
  uint64_t n = 0;
  f.read(reinterpret_cast<char*>(&n), 8);
  EXPECT_EQ((8 + n) % 8, 0u);
}

TEST(Safetensors, ReadsFilesWrittenByOthers) {
  // Offsets in any order, a gap between tensors, unpadded header: all legal.
  TmpDir d;
  float a[2] = {1.0f, 2.0f};
  int32_t b = 9;
  std::string data(20, '\0');
  std::memcpy(&data[12], a, 8);
  std::memcpy(&data[0], &b, 4);
  put(d / "x.st", raw(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[12,20]},"b":{"dtype":"I32","shape":[1],"data_offsets":[0,4]}})", data));
  SafetensorsReader r(d / "x.st");
  EXPECT_EQ(r.read_float<float>(*r.find("a")), (std::vector<float>{1.0f, 2.0f}));
  EXPECT_EQ(r.read_int(*r.find("b")), std::vector<int64_t>{9});
}

struct BadHeader {
  const char* name;
  std::string bytes;
  const char* expect;
};

std::vector<BadHeader> bad_headers() {
  return {
      {"Short", std::string(7, '\0'), "shorter than the 8-byte header"},
      {"LengthPastEnd", raw("{}", "").substr(0, 8) + "{", "exceeds the file"},
      {"NotJson", raw("{\"a\":", ""), "not valid JSON"},
      {"NotObject", raw("[1,2]", ""), "not a JSON object"},
      {"EntryNotObject", raw(R"({"a":3})", ""), "tensor 'a': entry is not an object"},
      {"NoDtype", raw(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", std::string(4, '\0')), "missing string 'dtype'"},
      {"UnknownDtype", raw(R"({"a":{"dtype":"Q4","shape":[1],"data_offsets":[0,4]}})", std::string(4, '\0')), "unknown dtype 'Q4'"},
      {"NegativeDim", raw(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", std::string(4, '\0')), "negative dimension"},
      {"FloatDim", raw(R"({"a":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}})", std::string(4, '\0')), "shape entries must be integers"},
      {"BeginAfterEnd", raw(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}})", std::string(4, '\0')), "begin > end"},
      {"PastData", raw(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})", std::string(4, '\0')), "past the data section"},
      {"SizeMismatch", raw(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", std::string(8, '\0')), "needs 8"},
      {"Overflow", raw(R"({"a":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", std::string(8, '\0')), "overflows"},
      {"Overlap", raw(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", std::string(8, '\0')), "overlap"},
      {"MetadataNotStrings", raw(R"({"__metadata__":{"k":1}})", ""), "is not a string"},
  };
}

class SafetensorsBad : public ::testing::TestWithParam<size_t> {};

TEST_P(SafetensorsBad, IsRejectedWithItsReason) {
  const auto c = bad_headers()[GetParam()];
  TmpDir d;
  put(d / "bad.st", c.bytes);
  try {
    SafetensorsReader r(d / "bad.st");
    FAIL() << "accepted";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find(c.expect), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("bad.st"), std::string::npos) << "names the file: " << e.what();
  }
}

INSTANTIATE_TEST_SUITE_P(Headers, SafetensorsBad, ::testing::Range<size_t>(0, bad_headers().size()),
                         [](const auto& i) { return std::string(bad_headers()[i.param].name); });

TEST(Safetensors, MissingFileAndDirectory) {
  TmpDir d;
  EXPECT_THROW(SafetensorsReader(d / "none.st"), InputError);
  EXPECT_THROW(SafetensorsReader(d / ""), InputError);  // a directory
}

TEST(Safetensors, WriterRejectsInconsistentTensors) {
  SafetensorsWriter w;
  float x[4] = {};
  EXPECT_THROW(w.add("a", DType::F32, {3}, x, 16), std::invalid_argument);
  EXPECT_THROW(w.add("", DType::F32, {1}, x, 4), std::invalid_argument);
  EXPECT_THROW(w.add("__metadata__", DType::F32, {1}, x, 4), std::invalid_argument);
  w.add("a", DType::F32, {4}, x, 16);
  EXPECT_THROW(w.add("a", DType::F32, {4}, x, 16), std::invalid_argument);
  EXPECT_THROW(w.add_float("b", {4}, x, DType::F8_E4M3), std::invalid_argument);
}

TEST(Safetensors, FailedWriteLeavesNothingAndKeepsTheOldFile) {
  TmpDir d;
  SafetensorsWriter w;
  float x[2] = {1, 2};
  w.add("x", DType::F32, {2}, x, 8);
  EXPECT_THROW(w.write(d / "no/such/dir/out.st"), std::runtime_error);
  EXPECT_EQ(d.count(), 0u);
  put(d / "out.st", "old");
  if (::geteuid() != 0) {  // root ignores directory permissions
    ::chmod((d / "").c_str(), 0500);
    EXPECT_THROW(w.write(d / "out.st"), std::runtime_error);
    ::chmod((d / "").c_str(), 0700);
    std::ifstream f(d / "out.st");
    std::string s;
    f >> s;
    EXPECT_EQ(s, "old");
  }
  w.write(d / "out.st");  // replaces atomically
  EXPECT_EQ(SafetensorsReader(d / "out.st").read_float<float>(*SafetensorsReader(d / "out.st").find("x")),
            (std::vector<float>{1, 2}));
  EXPECT_EQ(d.count(), 1u);  // no temporary left behind
}

}  // namespace
}  // namespace dsv4
