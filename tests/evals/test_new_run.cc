// --new (RunConfig::fresh): an existing run directory is moved aside to OUT.old-<UTC time>,
// never deleted, and a fresh run starts in OUT; with --force it is an InputError.
#include <gtest/gtest.h>

#include <boost/json.hpp>
#include <filesystem>

#include "evals/runner.h"
#include "reference/errors.h"
#include "tests/cli/cli_harness.h"
#include "tests/evals/fakes.h"

namespace dsv4::evals {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

RunConfig small(const std::string& out, uint64_t seed) {
  RunConfig c;
  c.tasks = {"niah_single"};
  c.format = PromptFormat::natural;
  c.lengths = {512};
  c.depths = {0.5};
  c.samples = 1;
  c.seed = seed;
  c.out = out;
  c.progress = RunConfig::Progress::none;
  return c;
}

uint64_t manifest_seed(const fs::path& dir) {
  return json::parse(dsv4::test::slurp((dir / "manifest.json").string()))
      .at("arguments")
      .at("seed")
      .to_number<uint64_t>();
}

// The sibling directories OUT.old-*.
std::vector<fs::path> moved_aside(const fs::path& out) {
  std::vector<fs::path> v;
  for (const auto& e : fs::directory_iterator(out.parent_path()))
    if (e.path().filename().string().rfind(out.filename().string() + ".old-", 0) == 0)
      v.push_back(e.path());
  std::sort(v.begin(), v.end());
  return v;
}

TEST(NewRun, MovesTheOldRunAsideAndStartsOver) {
  dsv4::test::TempDir tmp;
  test::OracleModel m;
  const fs::path out = tmp.file("run");
  ASSERT_TRUE(run_eval(small(out.string(), 1), m, nullptr).complete);
  // Other arguments without --new: refused, as before.
  EXPECT_THROW(run_eval(small(out.string(), 2), m, nullptr), InputError);
  RunConfig again = small(out.string(), 2);
  again.fresh = true;
  const RunSummary s = run_eval(again, m, nullptr);
  ASSERT_TRUE(s.complete);
  EXPECT_EQ(s.resumed, 0);
  EXPECT_EQ(manifest_seed(out), 2u);
  auto old = moved_aside(out);
  ASSERT_EQ(old.size(), 1u);
  EXPECT_EQ(manifest_seed(old[0]), 1u) << "the old run is kept whole";
  EXPECT_TRUE(fs::exists(old[0] / "samples.jsonl"));
  EXPECT_TRUE(fs::exists(old[0] / "results.json"));
  // --new again within the same second: a second, distinct name; nothing overwritten.
  const RunSummary s3 = run_eval(again, m, nullptr);
  EXPECT_EQ(s3.resumed, 0) << "--new never resumes";
  old = moved_aside(out);
  ASSERT_EQ(old.size(), 2u);
  EXPECT_EQ(manifest_seed(old[0]) + manifest_seed(old[1]), 3u) << "seeds 1 and 2 kept";
}

TEST(NewRun, OnAMissingOrEmptyDirectoryJustStarts) {
  dsv4::test::TempDir tmp;
  test::OracleModel m;
  RunConfig c = small(tmp.file("fresh"), 1);
  c.fresh = true;
  ASSERT_TRUE(run_eval(c, m, nullptr).complete);
  EXPECT_TRUE(moved_aside(fs::path(tmp.file("fresh"))).empty());
}

TEST(NewRun, WithForceIsAnInputError) {
  dsv4::test::TempDir tmp;
  test::OracleModel m;
  RunConfig c = small(tmp.file("run"), 1);
  c.fresh = c.force = true;
  EXPECT_THROW(run_eval(c, m, nullptr), InputError);
  EXPECT_FALSE(fs::exists(tmp.file("run")));
}

}  // namespace
}  // namespace dsv4::evals
