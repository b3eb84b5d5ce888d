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

}  // namespace dsv4::bench
