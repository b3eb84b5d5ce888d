// choose_numerics (evals/numerics.h): the numerics follow probe.json knobs.quant unless
// --numerics is given; a contradiction is an InputError.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "evals/numerics.h"
#include "reference/errors.h"
#include "tests/cli/cli_harness.h"

namespace dsv4::evals {
namespace {

// A model dir holding only probe.json with `body` (none when empty).
std::string probe_dir(const test::TempDir& tmp, const std::string& name, const std::string& body) {
  const std::string dir = tmp.file(name);
  std::filesystem::create_directories(dir);
  if (!body.empty()) std::ofstream(dir + "/probe.json") << body;
  return dir;
}

TEST(Numerics, FollowTheProbeWhenNotGiven) {
  test::TempDir tmp;
  const auto f32 = probe_dir(tmp, "f32", R"({"kind":"dsv4.probe","knobs":{"quant":false}})");
  const auto q = probe_dir(tmp, "q", R"({"kind":"dsv4.probe","knobs":{"quant":true}})");
  EXPECT_EQ(choose_numerics("", f32).numerics, "exact");
  EXPECT_EQ(choose_numerics("", f32).source, "probe.json knobs.quant=false");
  EXPECT_EQ(choose_numerics("", q).numerics, "official");
  EXPECT_EQ(choose_numerics("", q).source, "probe.json knobs.quant=true");
}

TEST(Numerics, DefaultIsOfficialWithoutAProbeOrAQuantKnob) {
  test::TempDir tmp;
  const auto none = probe_dir(tmp, "none", "");
  const auto noknob = probe_dir(tmp, "noknob", R"({"kind":"dsv4.probe","knobs":{"S":4}})");
  for (const auto& d : {none, noknob}) {
    EXPECT_EQ(choose_numerics("", d).numerics, "official") << d;
    EXPECT_EQ(choose_numerics("", d).source, "default") << d;
    EXPECT_EQ(choose_numerics("exact", d).numerics, "exact") << d;
    EXPECT_EQ(choose_numerics("exact", d).source, "--numerics") << d;
  }
}

TEST(Numerics, AgreeingFlagIsKeptContradictingFlagIsAnError) {
  test::TempDir tmp;
  const auto f32 = probe_dir(tmp, "f32", R"({"knobs":{"quant":false}})");
  const auto q = probe_dir(tmp, "q", R"({"knobs":{"quant":true}})");
  EXPECT_EQ(choose_numerics("exact", f32).numerics, "exact");
  EXPECT_EQ(choose_numerics("official", q).numerics, "official");
  try {
    (void)choose_numerics("official", f32);
    FAIL() << "official on an F32 probe must be refused";
  } catch (const InputError& e) {
    EXPECT_NE(std::string(e.what()).find("contradicts"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("--numerics exact"), std::string::npos) << e.what();
  }
  EXPECT_THROW((void)choose_numerics("exact", q), InputError);
}

TEST(Numerics, BadInputIsAnInputError) {
  test::TempDir tmp;
  const auto bad_json = probe_dir(tmp, "bad", "{not json");
  const auto bad_quant = probe_dir(tmp, "bq", R"({"knobs":{"quant":"yes"}})");
  const auto ok = probe_dir(tmp, "ok", "");
  EXPECT_THROW((void)choose_numerics("", bad_json), InputError);
  EXPECT_THROW((void)choose_numerics("", bad_quant), InputError);
  EXPECT_THROW((void)choose_numerics("fast", ok), InputError);
}

}  // namespace
}  // namespace dsv4::evals
