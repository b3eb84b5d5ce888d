#include "bench/runner.h"

#include <benchmark/benchmark.h>
#include <fmt/core.h>

#include <Eigen/Core>
#include <boost/json.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <set>
#include <sstream>

#include "bench/derive.h"
#include "bench/nvtx.h"

namespace dsv4::bench {

namespace {

// The set-up of the case being run, kept across Google Benchmark's calls of one benchmark
// (its iteration-count probes and repetitions) and freed before the next case's set-up, so
// one case's memory is held at a time.
struct Fixture {
  std::string name;
  Step step;        // CPU cases: timed by Google Benchmark's clock
  TimedStep timed;  // device cases: each call returns its own seconds (manual time)
};
Fixture g_fixture;

void run_case(const Case* c, benchmark::State& st) {
  if (g_fixture.name != c->name()) {
    g_fixture = {};
    try {
      if (c->timed_setup)
        g_fixture.timed = c->timed_setup();
      else
        g_fixture.step = c->setup();
      g_fixture.name = c->name();
    } catch (const std::exception& e) {
      st.SkipWithError(("set-up failed: " + std::string(e.what())).c_str());
      return;
    }
  }
  const NvtxRange range(c->name().c_str());
  for (auto _ : st) {
    try {
      if (g_fixture.timed)
        st.SetIterationTime(g_fixture.timed());
      else
        g_fixture.step();
    } catch (const std::exception& e) {
      st.SkipWithError(e.what());
      break;
    }
  }
  using benchmark::Counter;
  st.counters["flops"] = Counter(c->flops, Counter::kIsIterationInvariantRate);
  st.counters["bytes"] = Counter(c->bytes, Counter::kIsIterationInvariantRate);
  st.counters["flops_per_iter"] = Counter(c->flops);
  st.counters["bytes_per_iter"] = Counter(c->bytes);
}

// One line per finished repetition (the table comes at the end).
class Progress : public benchmark::BenchmarkReporter {
 public:
  explicit Progress(size_t total) : total_(total) {}
  bool ReportContext(const Context& ctx) override {
    fmt::print("{} benchmarks, {} CPUs at {:.0f} MHz, 1 Eigen thread\n", total_, ctx.cpu_info.num_cpus,
               ctx.cpu_info.cycles_per_second / 1e6);
    std::fflush(stdout);
    return true;
  }
  void ReportRuns(const std::vector<Run>& runs) override {
    for (const Run& r : runs) {
      if (r.error_occurred)
        fmt::print("{:<60} ERROR: {}\n", r.benchmark_name(), r.error_message);
      else if (r.run_type == Run::RT_Iteration)
        fmt::print("{:<60} {:>12.3f} ms  {:>6} iterations\n", r.benchmark_name(), r.GetAdjustedRealTime(), r.iterations);
    }
    std::fflush(stdout);
  }

 private:
  size_t total_;
};

double mem_available_bytes() {
  std::ifstream f("/proc/meminfo");
  std::string key;
  double kb = 0;
  std::string unit;
  while (f >> key >> kb >> unit)
    if (key == "MemAvailable:") return kb * 1024;
  return 0;
}

bool write_atomically(const std::string& path, const std::string& text) {
  const std::string tmp = path + ".tmp";
  {
    std::ofstream f(tmp);
    f << text;
    if (!f) return false;
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  return !ec;
}

std::string slurp(const std::string& path) {
  std::ifstream f(path);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

bool is_ceiling(const Case& c) { return c.op.rfind("ceiling_", 0) == 0; }

// The cases to run, ceilings first, and the skipped ones with their reasons. A backend's
// ceilings run when a chosen case has that backend (every share needs them) or when the
// filter names them; the CPU ones also when no case is chosen. A case that cannot run on this
// machine (a CUDA case without a device) is skipped with the reason.
std::vector<const Case*> select(const std::vector<Case>& cases, const BenchOptions& o, const std::regex& re,
                                std::map<std::string, std::string>& skipped) {
  auto named = [&](const Case& c) { return o.filter.empty() || std::regex_search(c.name(), re); };
  std::vector<const Case*> ops;
  std::set<Backend> backends;
  for (const Case& c : cases)
    if (!is_ceiling(c) && (!o.quick || c.quick) && named(c)) {
      ops.push_back(&c);
      backends.insert(c.backend);
    }
  // No case chosen at all (a filter matching only ceilings, or nothing): the CPU ceilings run,
  // as they always have (tests/bench/perf_check.sh's confirmation run relies on it).
  if (ops.empty()) backends.insert(Backend::cpu);
  std::vector<const Case*> chosen;
  for (const Case& c : cases)
    if (is_ceiling(c) && (backends.count(c.backend) || (!o.filter.empty() && named(c)))) chosen.push_back(&c);
  chosen.insert(chosen.end(), ops.begin(), ops.end());

  const double avail = mem_available_bytes();
  std::vector<const Case*> run;
  for (const Case* c : chosen) {
    const std::string why = c->unavailable ? c->unavailable() : std::string();
    if (!c->skip.empty()) {
      skipped[c->name()] = c->skip;
    } else if (!why.empty()) {
      skipped[c->name()] = why;
    } else if (avail > 0 && c->memory > 0.9 * avail) {
      skipped[c->name()] = fmt::format("needs {:.1f} GiB, {:.1f} GiB available", c->memory / (1 << 30), avail / (1 << 30));
    } else {
      run.push_back(c);
    }
  }
  return run;
}

// bench.json -> bench_derived.json (with the skipped cases) and the table.
int derive_and_report(const std::string& out, const std::map<std::string, std::string>& skipped, double started) {
  const std::string json_path = out + "/bench.json";
  boost::json::value bench;
  try {
    bench = parse_benchmark_json(slurp(json_path));
  } catch (const std::exception& e) {
    fmt::print(stderr, "dsv4 bench: {} is not valid JSON: {}\n", json_path, e.what());
    return 1;
  }
  const Derived d = derive(bench);
  const std::string derived_path = out + "/bench_derived.json";
  if (!write_atomically(derived_path, boost::json::serialize(derived_json(d, skipped)) + "\n")) {
    fmt::print(stderr, "dsv4 bench: cannot write {}\n", derived_path);
    return 1;
  }
  fmt::print("\n{}", derived_table(d));
  fmt::print("\n{} benchmarks, {} skipped, {} failed", d.benchmarks.size(), skipped.size(), d.errors.size());
  if (started >= 0) fmt::print(", {:.1f} s in all", started);
  fmt::print("\nresults: {}, {}\n", json_path, derived_path);
  return d.errors.empty() ? 0 : 1;
}

}  // namespace

int rederive(const std::string& dir) {
  if (!std::filesystem::exists(dir + "/bench.json")) {
    fmt::print(stderr, "dsv4 bench: no {}/bench.json to re-derive\n", dir);
    return 2;
  }
  return derive_and_report(dir, {}, -1);
}

int run_bench(const BenchOptions& o) {
  if (o.repetitions < 1) {
    fmt::print(stderr, "dsv4 bench: --repetitions must be >= 1\n");
    return 2;
  }
  std::regex re;
  try {
    re = std::regex(o.filter, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    fmt::print(stderr, "dsv4 bench: --filter '{}' is not a valid regular expression: {}\n", o.filter, e.what());
    return 2;
  }
  Eigen::setNbThreads(1);
  const auto t0 = std::chrono::steady_clock::now();
  const std::vector<Case> cases = case_list(o.memory_limit);
  std::map<std::string, std::string> skipped;
  const std::vector<const Case*> run = select(cases, o, re, skipped);
  for (const auto& [name, why] : skipped) fmt::print("skipped {}: {}\n", name, why);
  std::error_code ec;
  std::filesystem::create_directories(o.out, ec);
  const std::string json_path = o.out + "/bench.json", raw = json_path + ".run";
  if (run.empty()) {  // every chosen case was skipped (e.g. only CUDA cases, no device): nothing to time
    if (!write_atomically(json_path, "{\"context\": {}, \"benchmarks\": []}\n")) {
      fmt::print(stderr, "dsv4 bench: cannot write {}\n", json_path);
      return 1;
    }
    return derive_and_report(o.out, skipped, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  const double min_time = o.min_time > 0 ? o.min_time : o.quick ? 0.1 : 0.5;

  std::vector<std::string> args = {"dsv4 bench", "--benchmark_out=" + raw, "--benchmark_out_format=json",
                                   "--benchmark_repetitions=" + std::to_string(o.repetitions),
                                   "--benchmark_min_time=" + std::to_string(min_time)};
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  int argc = int(argv.size());
  benchmark::Initialize(&argc, argv.data());
  size_t registered = 0;
  auto add = [&registered](const Case* c) {
    auto* b = benchmark::RegisterBenchmark(c->name().c_str(), [c](benchmark::State& st) { run_case(c, st); });
    b->Unit(benchmark::kMillisecond);
    // Device cases report their own (CUDA event) times; Google Benchmark then names the run
    // "<name>/manual_time" (bench/derive.h strips the suffix).
    if (c->timed_setup) b->UseManualTime();
    ++registered;
  };
  for (const Case* c : run) add(c);
  // The ceilings again at the end (bench/derive.h takes the median of all their samples): a
  // neighbour's load at the start of the run would otherwise set every share.
  for (const Case* c : run)
    if (is_ceiling(*c)) add(c);
  Progress progress(registered);
  benchmark::RunSpecifiedBenchmarks(&progress);
  g_fixture = {};
  benchmark::ClearRegisteredBenchmarks();
  benchmark::Shutdown();

  std::filesystem::rename(raw, json_path, ec);
  if (ec) {
    fmt::print(stderr, "dsv4 bench: cannot write {}: {}\n", json_path, ec.message());
    return 1;
  }
  const double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return derive_and_report(o.out, skipped, total);
}

}  // namespace dsv4::bench
