#include "bench/derive.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <regex>
#include <set>
#include <string_view>

#include "bench/cases.h"
#include "bench/flops.h"
#include "model/config.h"

namespace dsv4::bench {

namespace json = boost::json;

namespace {

// Google Benchmark appends this to the run name of a manual-time benchmark (the CUDA cases).
constexpr std::string_view kManualTimeSuffix = "/manual_time";

double median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

double to_seconds(double t, const std::string& unit) {
  if (unit == "ns") return t * 1e-9;
  if (unit == "us") return t * 1e-6;
  if (unit == "ms") return t * 1e-3;
  return t;
}

double number(const json::object& o, const char* key) {
  const json::value* v = o.if_contains(key);
  return v && v->is_number() ? v->to_number<double>() : 0.0;
}

std::string string_of(const json::object& o, const char* key) {
  const json::value* v = o.if_contains(key);
  return v && v->is_string() ? std::string(v->as_string()) : std::string();
}

// The attention core + indexer path of one decode step of `model` at context L, from the
// same run's medians: {seconds, bytes}; seconds < 0 when a part is missing.
struct PathCost {
  double seconds = 0, bytes = 0;
  std::vector<double> per_rep, per_rep_cpu;  // empty when the parts' repetition counts differ
};

// Adds count * v[r] to sum[r] for every r; clears sum when the sizes disagree.
void add_per_rep(std::vector<double>& sum, const std::vector<double>& v, double count, bool first) {
  if (first) sum.assign(v.size(), 0.0);
  if (sum.size() != v.size()) {
    sum.clear();
    return;
  }
  for (size_t r = 0; r < v.size(); ++r) sum[r] += count * v[r];
}

PathCost path_cost(const std::map<std::string, const DerivedBenchmark*>& by, const std::string& model, int64_t L) {
  const ModelConfig c = config_preset(model);
  const std::string ctx = "/" + model + "/" + ctx_variant(L);
  std::vector<std::pair<std::string, double>> parts;  // name, count
  if (c.arch == Arch::v4) {
    const double ncsa = double(c.count_layers(kCsaRatio)), nhca = double(c.count_layers(kHcaRatio)),
                 nwin = double(c.count_layers(0));
    parts = {{"indexer_query_decode/" + model + "/tokens:1", ncsa},
             {"indexer_decode" + ctx, ncsa},
             {"attention_csa_decode" + ctx, ncsa},
             {"attention_hca_decode" + ctx, nhca},
             {"attention_window_decode" + ctx, nwin}};
  } else if (c.arch == Arch::v32) {
    const double n = double(c.n_layers);
    parts = {{"dsa_indexer_query_decode/v3.2/tokens:1", n}, {"dsa_indexer_decode" + ctx, n}, {"mla_sparse_decode" + ctx, n}};
  } else {
    parts = {{"mla_dense_decode" + ctx, double(c.n_layers)}};
  }
  PathCost p;
  bool first = true;
  for (const auto& [name, count] : parts) {
    if (count == 0) continue;
    const auto it = by.find(name);
    if (it == by.end() || it->second->seconds.empty()) return {-1, 0, {}, {}};
    const DerivedBenchmark& b = *it->second;
    p.seconds += count * b.median_seconds();
    p.bytes += count * b.bytes_per_iter;
    add_per_rep(p.per_rep, b.seconds, count, first);
    add_per_rep(p.per_rep_cpu, b.cpu_seconds, count, first);
    first = false;
  }
  return p;
}

// pred[r] / v4[r] per repetition; empty unless both have the same non-zero count.
std::vector<double> ratio_per_rep(const std::vector<double>& pred, const std::vector<double>& v4) {
  std::vector<double> r;
  if (pred.empty() || pred.size() != v4.size()) return r;
  for (size_t i = 0; i < pred.size(); ++i) {
    if (pred[i] <= 0 || v4[i] <= 0) return {};
    r.push_back(pred[i] / v4[i]);
  }
  return r;
}

double analytic_flops(const std::string& model, int64_t L) {
  const DecodeFlops f = decode_flops(config_preset(model), L);
  return f.attention + f.indexer;
}

}  // namespace

json::value parse_benchmark_json(const std::string& text) {
  static const std::regex nonfinite(R"((:\s*)-?(NaN|Infinity)\b)");
  return json::parse(std::regex_replace(text, nonfinite, "$1null"));
}

double target_share(const DerivedBenchmark& b) {
  if (b.backend != "cuda") return kTargetShare;
  return b.bound == "compute" ? kCudaComputeTargetShare : kCudaMemoryTargetShare;
}

double DerivedBenchmark::median_seconds() const { return median(seconds); }
double DerivedBenchmark::median_share() const { return roofline_share.empty() ? -1 : median(roofline_share); }

Derived derive(const json::value& bench) {
  Derived d;
  std::map<std::string, bool> targets;
  for (const Case& c : case_list()) targets[c.name()] = c.target;
  std::map<std::string, size_t> index;
  const json::array* runs = bench.is_object() && bench.as_object().if_contains("benchmarks")
                                ? bench.as_object().at("benchmarks").if_array()
                                : nullptr;
  if (runs)
    for (const json::value& v : *runs) {
      if (!v.is_object()) continue;
      const json::object& o = v.as_object();
      std::string name = string_of(o, "run_name").empty() ? string_of(o, "name") : string_of(o, "run_name");
      if (name.ends_with(kManualTimeSuffix)) name.resize(name.size() - kManualTimeSuffix.size());
      if (const json::value* e = o.if_contains("error_occurred"); e && e->is_bool() && e->as_bool()) {
        d.errors[name] = string_of(o, "error_message");
        continue;
      }
      if (string_of(o, "run_type") == "aggregate") continue;
      auto [it, fresh] = index.emplace(name, d.benchmarks.size());
      if (fresh) {
        DerivedBenchmark b;
        b.name = name;
        b.flops_per_iter = number(o, "flops_per_iter");
        b.bytes_per_iter = number(o, "bytes_per_iter");
        b.backend = backend_string(backend_of_name(name));
        auto t = targets.find(name);
        // A CUDA twin missing from this build's list (a GPU run re-derived by a build without
        // CUDA) takes its reference twin's flag: <op>_cuda/m/c -> <op>/m/c.
        if (const size_t at = name.find(std::string(kCudaOpSuffix) + "/"); t == targets.end() && at != std::string::npos)
          t = targets.find(name.substr(0, at) + name.substr(at + std::string(kCudaOpSuffix).size()));
        b.target = t != targets.end() && t->second;
        d.benchmarks.push_back(b);
      }
      const std::string unit = string_of(o, "time_unit");
      d.benchmarks[it->second].seconds.push_back(to_seconds(number(o, "real_time"), unit));
      d.benchmarks[it->second].cpu_seconds.push_back(to_seconds(number(o, "cpu_time"), unit));
    }
  for (const auto& b : d.benchmarks) {  // the median of every sample, first and last
    const double t = b.median_seconds();
    if (t <= 0) continue;
    const double tc = median(b.cpu_seconds);
    if (b.name.rfind("ceiling_sgemm/", 0) == 0) {
      d.sgemm_flops_per_s = b.flops_per_iter / t;
      if (tc > 0) d.sgemm_flops_per_cpu_s = b.flops_per_iter / tc;
    }
    if (b.name.rfind("ceiling_read/", 0) == 0) {
      d.read_bytes_per_s = b.bytes_per_iter / t;
      if (tc > 0) d.read_bytes_per_cpu_s = b.bytes_per_iter / tc;
    }
    if (b.name.rfind("ceiling_copy/", 0) == 0) d.copy_bytes_per_s = b.bytes_per_iter / t;
    if (b.name.rfind("ceiling_cublas/", 0) == 0) d.cublas_flops_per_s = b.flops_per_iter / t;
  }
  const bool cpu_ceilings = d.sgemm_flops_per_cpu_s > 0 && d.read_bytes_per_cpu_s > 0;
  const bool ceilings = d.sgemm_flops_per_s > 0 && d.read_bytes_per_s > 0;
  const bool gpu_ceilings = d.copy_bytes_per_s > 0 && d.cublas_flops_per_s > 0;
  std::map<std::string, const DerivedBenchmark*> by;
  for (auto& b : d.benchmarks) {
    if (b.backend == "cuda") {  // device time against the GPU ceilings; no CPU-time share
      if (gpu_ceilings) {
        const double tf = b.flops_per_iter / d.cublas_flops_per_s, tb = b.bytes_per_iter / d.copy_bytes_per_s;
        b.bound = tf >= tb ? "compute" : "memory";
        for (double s : b.seconds) b.roofline_share.push_back(s > 0 ? std::max(tf, tb) / s : 0.0);
      }
      by[b.name] = &b;
      continue;
    }
    if (ceilings) {
      const double tf = b.flops_per_iter / d.sgemm_flops_per_s, tb = b.bytes_per_iter / d.read_bytes_per_s;
      b.bound = tf >= tb ? "compute" : "memory";
      for (double s : b.seconds) b.roofline_share.push_back(s > 0 ? std::max(tf, tb) / s : 0.0);
    }
    if (cpu_ceilings) {
      const double tf = b.flops_per_iter / d.sgemm_flops_per_cpu_s, tb = b.bytes_per_iter / d.read_bytes_per_cpu_s;
      for (double s : b.cpu_seconds) b.roofline_share_cpu.push_back(s > 0 ? std::max(tf, tb) / s : 0.0);
    }
    by[b.name] = &b;
  }
  for (const char* model : {"v4-flash", "v4-pro"})
    for (int64_t L : kContexts) {
      const PathCost v4 = path_cost(by, model, L);
      if (v4.seconds <= 0) continue;
      for (const char* pred : {"v3.2", "v3"}) {
        const PathCost p = path_cost(by, pred, L);
        if (p.seconds <= 0) continue;
        Speedup s;
        s.context = L;
        s.model = model;
        s.versus = pred;
        s.measured = p.seconds / v4.seconds;
        s.analytic = analytic_flops(pred, L) / analytic_flops(model, L);
        s.analytic_bytes = v4.bytes > 0 ? p.bytes / v4.bytes : 0;
        s.ratio = s.measured / s.analytic;
        s.measured_per_repetition = ratio_per_rep(p.per_rep, v4.per_rep);
        s.measured_cpu_per_repetition = ratio_per_rep(p.per_rep_cpu, v4.per_rep_cpu);
        d.speedups.push_back(s);
      }
    }
  d.engram_vs_moe = derive_engram_vs_moe(d.benchmarks);
  d.engram_overlap = derive_engram_overlap(d.benchmarks);
  d.engram_lookup_gpu = derive_engram_lookup_gpu(d.benchmarks);
  return d;
}

json::object derived_json(const Derived& d, const std::map<std::string, std::string>& skipped) {
  json::array benches;
  for (const auto& b : d.benchmarks) {
    json::array secs, shares, cpu_secs, cpu_shares;
    for (double s : b.seconds) secs.push_back(s);
    for (double s : b.roofline_share) shares.push_back(s);
    for (double s : b.cpu_seconds) cpu_secs.push_back(s);
    for (double s : b.roofline_share_cpu) cpu_shares.push_back(s);
    json::object o{{"name", b.name},
                   {"seconds", std::move(secs)},
                   {"flops_per_iter", b.flops_per_iter},
                   {"bytes_per_iter", b.bytes_per_iter},
                   {"roofline_share", std::move(shares)},
                   {"cpu_seconds", std::move(cpu_secs)},
                   {"roofline_share_cpu", std::move(cpu_shares)},
                   {"bound", b.bound},
                   {"target", b.target}};
    o["backend"] = b.backend;
    if (b.target) o["target_share"] = target_share(b);
    if (b.target && !b.roofline_share.empty()) o["target_met"] = b.median_share() >= target_share(b);
    benches.push_back(std::move(o));
  }
  json::array speedups;
  for (const auto& s : d.speedups) {
    json::array per, per_cpu;
    for (double x : s.measured_per_repetition) per.push_back(x);
    for (double x : s.measured_cpu_per_repetition) per_cpu.push_back(x);
    json::object o{{"context", s.context}, {"model", s.model}, {"versus", s.versus},
                   {"measured", s.measured}, {"analytic", s.analytic},
                   {"analytic_bytes", s.analytic_bytes}, {"ratio", s.ratio}};
    if (!per.empty()) o["measured_per_repetition"] = std::move(per);
    if (!per_cpu.empty()) o["measured_cpu_per_repetition"] = std::move(per_cpu);
    speedups.push_back(std::move(o));
  }
  json::array skip, errors;
  for (const auto& [name, why] : skipped) skip.push_back(json::object{{"name", name}, {"reason", why}});
  for (const auto& [name, why] : d.errors) errors.push_back(json::object{{"name", name}, {"message", why}});
  return json::object{{"kind", "dsv4.bench"},
                      {"version", 1},
                      {"ceilings", json::object{{"sgemm_flops_per_s", d.sgemm_flops_per_s},
                                                {"read_bytes_per_s", d.read_bytes_per_s},
                                                {"sgemm_flops_per_cpu_s", d.sgemm_flops_per_cpu_s},
                                                {"read_bytes_per_cpu_s", d.read_bytes_per_cpu_s},
                                                {"copy_bytes_per_s", d.copy_bytes_per_s},
                                                {"cublas_bf16_flops_per_s", d.cublas_flops_per_s}}},
                      {"target_share", kTargetShare},
                      {"target_share_cuda", json::object{{"memory", kCudaMemoryTargetShare},
                                                         {"compute", kCudaComputeTargetShare}}},
                      {"benchmarks", std::move(benches)},
                      {"speedups", std::move(speedups)},
                      {"engram_vs_moe", engram_vs_moe_json(d.engram_vs_moe)},
                      {"engram_overlap", engram_overlap_json(d.engram_overlap)},
                      {"engram_lookup_cuda", engram_lookup_gpu_json(d.engram_lookup_gpu)},
                      {"skipped", std::move(skip)},
                      {"errors", std::move(errors)}};
}

std::string derived_table(const Derived& d) {
  std::string s;
  const bool gpu = d.copy_bytes_per_s > 0 || d.cublas_flops_per_s > 0;
  if (!gpu || d.sgemm_flops_per_s > 0 || d.read_bytes_per_s > 0)
    s += fmt::format("same-run ceilings: SGEMM {:.1f} GFLOP/s (ceiling_sgemm), streaming read {:.1f} GB/s (ceiling_read)\n",
                     d.sgemm_flops_per_s / 1e9, d.read_bytes_per_s / 1e9);
  if (gpu)
    s += fmt::format("same-run GPU ceilings: device copy {:.1f} GB/s (ceiling_copy, read + write), cuBLAS BF16 {:.1f} TFLOP/s "
                     "(ceiling_cublas)\n",
                     d.copy_bytes_per_s / 1e9, d.cublas_flops_per_s / 1e12);
  s += "share = max(FLOPs / SGEMM rate, bytes / read rate) / time (median, wall clock); cpu: the same from CPU times\n"
       "(steady when another process shares the cores); target: share >= 75 % (- : no target)\n"
       "*_cuda: device time (CUDA events) against the GPU ceilings; target >= 80 % memory-bound, >= 60 % compute-bound\n\n";
  s += fmt::format("{:<26} {:<9} {:<24} {:>10} {:>8} {:>7} {:>8} {:>6} {:>6}  {}\n", "op", "model", "case", "time ms",
                   "GFLOP/s", "GB/s", "bound", "share", "cpu", "target");
  for (const auto& b : d.benchmarks) {
    const size_t a = b.name.find('/'), c = b.name.find('/', a + 1);
    const std::string op = b.name.substr(0, a), model = b.name.substr(a + 1, c - a - 1), cs = b.name.substr(c + 1);
    const double t = b.median_seconds(), share = b.median_share();
    const std::string target = !b.target || share < 0 ? "-" : share >= target_share(b) ? "yes" : "NO";
    // CUDA cases have no CPU-time share: "-"
    const std::string cpu_share = b.roofline_share_cpu.empty()
                                      ? std::string("-")
                                      : fmt::format("{:.1f}%", 100 * median(b.roofline_share_cpu));
    s += fmt::format("{:<26} {:<9} {:<24} {:>10.3f} {:>8.2f} {:>7.2f} {:>8} {:>5.1f}% {:>6}  {}\n", op, model, cs,
                     t * 1e3, b.flops_per_iter / t / 1e9, b.bytes_per_iter / t / 1e9, b.bound,
                     100 * std::max(share, 0.0), cpu_share, target);
  }
  for (const auto& [name, msg] : d.errors) s += fmt::format("{:<60} ERROR: {}\n", name, msg);
  if (!d.speedups.empty()) {
    s += "\nV4 decode speedup, same run. Compared: the attention core + indexer path of every layer of one decode step\n"
         "  V4   = n_CSA x (indexer_query + indexer scores/top-k + CSA attention) + n_HCA x HCA attention\n"
         "         + n_window x window attention\n"
         "  V3.2 = 61 x (DSA index query/key + token-level indexer scores/top-2048 + sparse MLA over 2048)\n"
         "  V3   = 61 x dense MLA\n"
         "measured = t(predecessor) / t(V4); analytic = FLOPs ratio of the same parts (bench/flops.h attention +\n"
         "indexer); ratio = measured / analytic; bytes = ratio of the same parts' bytes (float storage)\n\n";
    s += fmt::format("{:>9} {:<9} {:<5} {:>9} {:>9} {:>7} {:>9}\n", "context", "model", "vs", "measured", "analytic", "ratio",
                     "bytes");
    for (const auto& p : d.speedups)
      s += fmt::format("{:>9} {:<9} {:<5} {:>8.2f}x {:>8.2f}x {:>7.2f} {:>8.2f}x\n", p.context, p.model, p.versus, p.measured,
                       p.analytic, p.ratio, p.analytic_bytes);
  }
  s += engram_vs_moe_table(d.engram_vs_moe);
  s += engram_lookup_gpu_table(d.engram_lookup_gpu);
  s += engram_overlap_table(d.engram_overlap);
  return s;
}

}  // namespace dsv4::bench
