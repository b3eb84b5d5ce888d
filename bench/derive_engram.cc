// The measured Engram-vs-MoE rows of bench_derived.json (definitions: bench/derive.h
// EngramVsMoeRow; the analytic side: bench/engram_cost.h).
#include <fmt/core.h>

#include <algorithm>
#include <map>

#include "bench/derive.h"
#include "bench/engram_cost.h"

namespace dsv4::bench {

namespace json = boost::json;

namespace {

constexpr const char* kLookupPrefix = "engram_lookup/v4/";
constexpr const char* kMoeCase = "/experts:16";  // moe_decode/<model>/experts:16

// "tokens:T" (the last field of a case name) -> T; 0 when absent.
int64_t field_of(const std::string& name, const std::string& key) {
  const size_t at = name.find(key + ":");
  if (at == std::string::npos) return 0;
  try {
    return std::stoll(name.substr(at + key.size() + 1));
  } catch (const std::exception&) {  // not a number: a name of some other convention
    return 0;
  }
}

// The lookup case to use: the largest table run, the in-memory float one before the mapped
// one at the same size (the reference backend's default, and the MoE case's float weights).
const DerivedBenchmark* pick_lookup(const std::vector<DerivedBenchmark>& b) {
  const DerivedBenchmark* best = nullptr;
  auto key = [](const DerivedBenchmark& x) {
    return std::pair{field_of(x.name, "rows"), x.name.find("memory_f32") != std::string::npos};
  };
  for (const auto& x : b)
    if (x.name.rfind(kLookupPrefix, 0) == 0 && !x.seconds.empty() && field_of(x.name, "tokens") > 0 &&
        (!best || key(x) > key(*best)))
      best = &x;
  return best;
}

}  // namespace

std::vector<EngramVsMoeRow> derive_engram_vs_moe(const std::vector<DerivedBenchmark>& b) {
  std::vector<EngramVsMoeRow> rows;
  std::map<std::string, const DerivedBenchmark*> by;
  for (const auto& x : b)
    if (!x.seconds.empty()) by[x.name] = &x;
  const DerivedBenchmark* lookup = pick_lookup(b);
  const DerivedBenchmark* hash = nullptr;
  for (const auto& x : b)
    if (x.name.rfind("engram_hash/v4/", 0) == 0 && !x.seconds.empty() && field_of(x.name, "tokens") > 0) hash = &x;
  if (!lookup || !hash) return rows;
  for (const char* model : {"v4-flash", "v4-pro"}) {
    const auto mix = by.find(std::string("engram_mix_decode/") + model + "/tokens:1");
    const auto moe = by.find(std::string("moe_decode/") + model + kMoeCase);
    if (mix == by.end() || moe == by.end()) continue;
    EngramVsMoeRow r;
    r.model = model;
    r.lookup = lookup->name;
    r.hash_seconds = hash->median_seconds() / double(field_of(hash->name, "tokens"));
    r.lookup_seconds = lookup->median_seconds() / double(field_of(lookup->name, "tokens"));
    r.mix_seconds = mix->second->median_seconds();
    r.engram_seconds = r.hash_seconds + r.lookup_seconds + r.mix_seconds;
    r.moe_seconds = moe->second->median_seconds();
    r.measured = r.engram_seconds > 0 ? r.moe_seconds / r.engram_seconds : 0;
    const EngramVsMoe a = engram_vs_moe(preset_with_engram(model)).front();  // the MoE layer's budget
    r.analytic_flops = a.moe.flops / a.engram.flops;
    r.analytic_bytes = a.moe.values_read / a.engram.values_read;
    rows.push_back(r);
  }
  return rows;
}

json::array engram_vs_moe_json(const std::vector<EngramVsMoeRow>& rows) {
  json::array out;
  for (const auto& r : rows)
    out.push_back(json::object{{"model", r.model},
                               {"lookup_case", r.lookup},
                               {"hash_seconds_per_token", r.hash_seconds},
                               {"lookup_seconds_per_token", r.lookup_seconds},
                               {"mix_seconds_per_token", r.mix_seconds},
                               {"engram_seconds_per_token", r.engram_seconds},
                               {"moe_seconds_per_token", r.moe_seconds},
                               {"measured", r.measured},
                               {"analytic_flops", r.analytic_flops},
                               {"analytic_bytes", r.analytic_bytes}});
  return out;
}

std::string engram_vs_moe_table(const std::vector<EngramVsMoeRow>& rows) {
  if (rows.empty()) return "";
  std::string s =
      "\nEngram layer vs the MoE layer of the same parameter budget, one decode token, same run\n"
      "  engram = hash + lookup (per token of a 512-token batch) + mix (decode); moe = moe_decode experts:16\n"
      "  measured = t(moe) / t(engram); analytic = MoE / Engram FLOPs and values read at the budget of the MoE\n"
      "  layer (bench/engram_cost.h)\n\n";
  s += fmt::format("{:<9} {:>9} {:>9} {:>9} {:>10} {:>9} {:>9} {:>9} {:>9}  {}\n", "model", "hash us", "lookup us",
                   "mix us", "engram us", "moe us", "measured", "flops", "bytes", "lookup case");
  for (const auto& r : rows)
    s += fmt::format("{:<9} {:>9.3f} {:>9.3f} {:>9.1f} {:>10.1f} {:>9.1f} {:>8.2f}x {:>8.2f}x {:>8.2f}x  {}\n", r.model,
                     r.hash_seconds * 1e6, r.lookup_seconds * 1e6, r.mix_seconds * 1e6, r.engram_seconds * 1e6,
                     r.moe_seconds * 1e6, r.measured, r.analytic_flops, r.analytic_bytes, r.lookup);
  return s;
}

// ---- prefetch overlap (bench/cases_engram.cc on the CPU, cases_engram_cuda.cc on the GPU) ----

namespace {
constexpr const char* kLookupGpuOp = "engram_lookup_cuda/v4/";
constexpr const char* kBf16Suffix = "_bf16";
constexpr const char* kPrefetchOps[] = {"engram_prefetch/", "engram_prefetch_cuda/"};  // cpu, gpu
constexpr const char* kPartKey = ",part:";
}  // namespace

std::vector<EngramOverlapRow> derive_engram_overlap(const std::vector<DerivedBenchmark>& b) {
  // op/<model>/<mode>,...,tokens:T (the name without the part) -> part -> median seconds
  std::map<std::string, std::map<std::string, double>> groups;
  for (const auto& x : b) {
    const bool prefetch = x.name.rfind(kPrefetchOps[0], 0) == 0 || x.name.rfind(kPrefetchOps[1], 0) == 0;
    if (!prefetch || x.seconds.empty()) continue;
    const size_t at = x.name.rfind(kPartKey);
    if (at == std::string::npos) continue;
    groups[x.name.substr(0, at)][x.name.substr(at + std::string(kPartKey).size())] = x.median_seconds();
  }
  std::vector<EngramOverlapRow> rows;
  for (const auto& [key, parts] : groups) {
    const auto copy = parts.find("copy"), compute = parts.find("compute"), both = parts.find("both");
    if (copy == parts.end() || compute == parts.end() || both == parts.end()) continue;
    if (copy->second <= 0 || compute->second <= 0 || both->second <= 0) continue;
    const bool gpu = key.rfind(kPrefetchOps[1], 0) == 0;
    const std::string rest = key.substr(std::string(kPrefetchOps[gpu ? 1 : 0]).size());  // <model>/<mode>,...
    const size_t slash = rest.find('/'), comma = rest.find(',');
    if (slash == std::string::npos || comma == std::string::npos || comma < slash) continue;
    EngramOverlapRow r;
    r.backend = gpu ? "gpu" : "cpu";
    r.model = rest.substr(0, slash);
    r.mode = rest.substr(slash + 1, comma - slash - 1);
    r.tokens = field_of(rest, "tokens");
    r.copy_seconds = copy->second;
    r.compute_seconds = compute->second;
    r.both_seconds = both->second;
    const double hidden = r.copy_seconds + r.compute_seconds - r.both_seconds;  // seconds saved by overlapping
    r.overlap = hidden / std::min(r.copy_seconds, r.compute_seconds);
    r.hidden_fraction_of_copy = hidden / r.copy_seconds;
    rows.push_back(r);
  }
  return rows;
}

json::array engram_overlap_json(const std::vector<EngramOverlapRow>& rows) {
  json::array out;
  for (const auto& r : rows)
    out.push_back(json::object{{"backend", r.backend},
                               {"model", r.model},
                               {"mode", r.mode},
                               {"tokens", r.tokens},
                               {"copy_seconds", r.copy_seconds},
                               {"compute_seconds", r.compute_seconds},
                               {"both_seconds", r.both_seconds},
                               {"overlap", r.overlap},
                               {"hidden_fraction_of_copy", r.hidden_fraction_of_copy}});
  return out;
}

std::string engram_overlap_table(const std::vector<EngramOverlapRow>& rows) {
  if (rows.empty()) return "";
  std::string s =
      "\nEngram prefetch overlap, same run (gpu, engram_prefetch_cuda: the prefetch of a chunk's rows on its stream\n"
      "  beside a BF16 GEMM of one MoE layer's FLOPs on the compute stream; cpu, engram_prefetch: the lookup of a\n"
      "  chunk's rows from the memory-mapped table on a second thread beside a one-core SGEMM, n = 640)\n"
      "  overlap = (copy + compute - both) / min(copy, compute), 1 = the shorter fully hidden;\n"
      "  hidden = (copy + compute - both) / copy, the share of the copy hidden behind compute\n\n";
  s += fmt::format("{:<4} {:<9} {:<9} {:>7} {:>9} {:>10} {:>9} {:>8} {:>7}\n", "on", "model", "mode", "tokens",
                   "copy ms", "compute ms", "both ms", "overlap", "hidden");
  for (const auto& r : rows)
    s += fmt::format("{:<4} {:<9} {:<9} {:>7} {:>9.3f} {:>10.3f} {:>9.3f} {:>8.2f} {:>6.1f}%\n", r.backend, r.model,
                     r.mode, r.tokens,
                     r.copy_seconds * 1e3, r.compute_seconds * 1e3, r.both_seconds * 1e3, r.overlap,
                     100 * r.hidden_fraction_of_copy);
  return s;
}

std::vector<EngramLookupGpuRow> derive_engram_lookup_gpu(const std::vector<DerivedBenchmark>& b) {
  std::vector<EngramLookupGpuRow> rows;
  for (const auto& x : b) {
    if (x.name.rfind(kLookupGpuOp, 0) != 0 || x.seconds.empty() || x.median_seconds() <= 0) continue;
    const std::string variant = x.name.substr(std::string(kLookupGpuOp).size());  // <where>_bf16,rows:R,tokens:T
    const size_t tail = variant.find(std::string(kBf16Suffix) + ",");
    EngramLookupGpuRow r;
    r.where = tail == std::string::npos ? variant.substr(0, variant.find(',')) : variant.substr(0, tail);
    r.rows = field_of(variant, "rows");
    r.tokens = field_of(variant, "tokens");
    if (r.tokens <= 0) continue;
    const double t = x.median_seconds();
    r.seconds_per_token = t / double(r.tokens);
    r.rows_bytes_per_s = x.bytes_per_iter / t;
    rows.push_back(r);
  }
  return rows;
}

json::array engram_lookup_gpu_json(const std::vector<EngramLookupGpuRow>& rows) {
  json::array out;
  for (const auto& r : rows)
    out.push_back(json::object{{"where", r.where},
                               {"rows", r.rows},
                               {"tokens", r.tokens},
                               {"seconds_per_token", r.seconds_per_token},
                               {"rows_bytes_per_s", r.rows_bytes_per_s}});
  return out;
}

std::string engram_lookup_gpu_table(const std::vector<EngramLookupGpuRow>& rows) {
  if (rows.empty()) return "";
  std::string s =
      "\nEngram lookup on the GPU per token, by where the BF16 table lives (engram_lookup_cuda; 16 rows of 64 values a\n"
      "  token; device: engram_lookup from device memory; mapped / staged: EngramPrefetcher, the table in pinned host\n"
      "  memory); GB/s = the rows moved / time\n\n";
  s += fmt::format("{:<7} {:>12} {:>7} {:>10} {:>8}\n", "where", "rows/head", "tokens", "us/token", "GB/s");
  for (const auto& r : rows)
    s += fmt::format("{:<7} {:>12} {:>7} {:>10.4f} {:>8.2f}\n", r.where, r.rows, r.tokens, r.seconds_per_token * 1e6,
                     r.rows_bytes_per_s / 1e9);
  return s;
}

}  // namespace dsv4::bench
