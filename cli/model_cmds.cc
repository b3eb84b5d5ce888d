#include "cli/model_cmds.h"

#include <fmt/core.h>

#include <boost/json.hpp>

#include "bench/claims.h"
#include "bench/engram_cost.h"
#include "bench/flops.h"
#include "model/config.h"
#include "model/kv_cache.h"
#include "reference/errors.h"

namespace dsv4::cli {

int config_show(const std::string& what, bool as_json) {
  try {
    const ModelConfig c = config_load(what);
    fmt::print("{}", as_json ? config_to_json(c) + "\n" : config_describe(c));
    return 0;
  } catch (const InputError& e) {
    fmt::print(stderr, "dsv4 config: {}\n", e.what());
    return 2;
  }
}

namespace {

KvBytes measured(const ModelConfig& c, int64_t L, KvLayout layout) {
  if (c.arch == Arch::v4) {
    KvCache cache(c, layout);
    cache.fill_synthetic(L, 1);
    return cache.bytes();
  }
  MlaCache cache(c, layout);
  cache.fill_synthetic(L, 1);
  return cache.bytes();
}

// A preset or config.json with the --set engram=... overrides applied, validated.
ModelConfig load_config(const std::string& preset, const std::vector<std::string>& sets) {
  ModelConfig c = config_load(preset);
  for (const auto& kv : sets) config_set_engram(c, kv);
  if (!sets.empty()) config_validate(c);
  return c;
}

boost::json::object engram_bytes_json(const EngramModelCost& m) {
  return {{"layers", m.layers},
          {"state_bytes", m.state_bytes},
          {"state_bytes_per_layer", m.layer.state_bytes},
          {"table_rows", m.table_rows},
          {"table_bytes", m.table_bytes},
          {"table_dtype", "bf16"},
          {"convention", engram_cost_convention()}};
}

boost::json::object sparse_json(const SparseLayerCost& s) {
  return {{"params", s.params}, {"flops_per_token", s.flops}, {"values_read_per_token", s.values_read},
          {"bytes_per_token_bf16", s.bytes()}};
}

boost::json::array vs_moe_json(const std::vector<EngramVsMoe>& rows) {
  boost::json::array a;
  for (const auto& r : rows)
    a.push_back(boost::json::object{{"budget", r.budget},
                                    {"budget_params", r.budget_params},
                                    {"moe_routed_experts", r.moe_experts},
                                    {"engram_table_rows", r.engram_table_rows},
                                    {"moe", sparse_json(r.moe)},
                                    {"engram", sparse_json(r.engram)},
                                    {"flops_ratio", r.moe.flops / r.engram.flops},
                                    {"bytes_ratio", r.moe.values_read / r.engram.values_read}});
  return a;
}

// The comparison as text: one block per budget.
void print_vs_moe(const std::vector<EngramVsMoe>& rows) {
  fmt::print("\nEngram layer vs the MoE layer it would replace, same parameter budget, per token (bench/engram_cost.h;\n"
             "bytes at BF16 for both sides; decode at batch 1)\n\n");
  fmt::print("{:<14} {:>10} {:<8} {:>12} {:>14} {:>14} {:>14}\n", "budget", "params B", "layer", "shape", "GFLOP/token",
             "values read M", "MB read");
  for (const auto& r : rows) {
    fmt::print("{:<14} {:>10.3f} {:<8} {:>12} {:>14.4f} {:>14.3f} {:>14.2f}\n", r.budget, r.budget_params / 1e9, "MoE",
               fmt::format("{:.1f} exp", r.moe_experts), r.moe.flops / 1e9, r.moe.values_read / 1e6, r.moe.bytes() / 1e6);
    fmt::print("{:<14} {:>10} {:<8} {:>12} {:>14.4f} {:>14.3f} {:>14.2f}\n", "", "", "Engram",
               fmt::format("{:.1f}M rows", r.engram_table_rows / 1e6), r.engram.flops / 1e9, r.engram.values_read / 1e6,
               r.engram.bytes() / 1e6);
    fmt::print("{:<14} {:>10} {:<8} {:>12} {:>13.1f}x {:>13.1f}x {:>13.1f}x\n", "", "", "MoE/Eng", "",
               r.moe.flops / r.engram.flops, r.moe.values_read / r.engram.values_read, r.moe.bytes() / r.engram.bytes());
  }
}

boost::json::object bytes_json(const KvBytes& b, int64_t L) {
  return {{"window", b.window},       {"compressed", b.compressed}, {"index_keys", b.index_keys},
          {"compressor_state", b.state}, {"csa_layers", b.csa},     {"hca_layers", b.hca},
          {"total", b.total()},        {"total_without_state", b.paper()},
          {"bytes_per_token", double(b.paper()) / double(L)}};
}

}  // namespace

int kv_report(const KvArgs& a) {
  try {
    if (a.table) {
      fmt::print("{}\n", a.json ? kv_table_json() : kv_table_text());
      return 0;
    }
    const ModelConfig c = load_config(a.preset, a.sets);
    const KvLayout layout = kv_layout_from_name(a.layout);
    if (a.context <= 0) throw InputError("--context must be positive, found " + std::to_string(a.context));
    const int64_t L = a.context;
    const KvBytes b = kv_bytes_analytic(c, L, layout);
    const KvBytes v32 = kv_bytes_analytic(config_preset("v3.2"), L, layout);
    const KvBytes v3 = kv_bytes_analytic(config_preset("v3"), L, layout);
    KvBytes m;
    if (a.measure) m = measured(c, L, layout);
    const bool engram = c.engram.enabled();
    const EngramModelCost em = engram ? engram_model_cost(c) : EngramModelCost{};
    if (a.json) {
      boost::json::object o{{"model", c.name},
                            {"context", L},
                            {"layout", kv_layout_name(layout)},
                            {"analytic", bytes_json(b, L)},
                            {"v3.2", bytes_json(v32, L)},
                            {"v3", bytes_json(v3, L)},
                            {"ratio_to_v3.2", double(b.paper()) / double(v32.paper())},
                            {"ratio_to_v3", double(b.paper()) / double(v3.paper())},
                            {"convention", "one sequence; window, compressed entries and indexer keys of the main layers (MTP excluded); "
                                           "ratios exclude the FP32 compressor state, as the paper's figure does"}};
      if (engram) o["engram"] = engram_bytes_json(em);
      if (a.measure) {
        o["measured"] = bytes_json(m, L);
        o["measured_equals_analytic"] = m.total() == b.total();
      }
      fmt::print("{}\n", boost::json::serialize(o));
      return a.measure && m.total() != b.total() ? 1 : 0;
    }
    auto gib = [](int64_t x) { return double(x) / double(1ll << 30); };
    fmt::print("KV cache of {} at {} tokens, {} layout (one sequence; main layers, MTP excluded)\n\n", c.name, L, kv_layout_name(layout));
    fmt::print("{:<28} {:>18} {:>12} {:>14}\n", "part", "bytes", "GiB", "bytes/token");
    auto row = [&](const char* name, int64_t v) {
      fmt::print("{:<28} {:>18} {:>12.4f} {:>14.4f}\n", name, v, gib(v), double(v) / double(L));
    };
    if (c.arch == Arch::v4) {
      row("CSA layers (entries+keys)", b.csa);
      row("HCA layers (entries)", b.hca);
      row("window rings (all layers)", b.window);
      row("  compressed entries", b.compressed);
      row("  indexer keys", b.index_keys);
      row("compressor state (FP32)", b.state);
    } else {
      row("MLA rows", b.compressed);
      row("indexer keys", b.index_keys);
    }
    row("total", b.total());
    row("total without state", b.paper());
    if (engram) {
      fmt::print("\nEngram, {} layer{} (not in the totals above; {})\n", em.layers, em.layers == 1 ? "" : "s",
                 "N-1 int32 ids + (K-1) N S D float Z rows per layer");
      fmt::print("{:<28} {:>18.0f} {:>12.4f} {:>14.4f}\n", "Engram decode state", em.state_bytes, em.state_bytes / double(1ll << 30),
                 em.state_bytes / double(L));
      fmt::print("{:<28} {:>18.0f} {:>12.4f} {:>14}\n", "Engram tables (host, BF16)", em.table_bytes,
                 em.table_bytes / double(1ll << 30), "-");
    }
    fmt::print("\nV3.2 at the same context: {:.4f} GiB ({:.1f} B/token) -> ratio {:.2f}% ({:.2f}x smaller)\n", gib(v32.paper()),
               double(v32.paper()) / double(L), 100.0 * double(b.paper()) / double(v32.paper()), double(v32.paper()) / double(b.paper()));
    fmt::print("V3   at the same context: {:.4f} GiB ({:.1f} B/token) -> ratio {:.2f}% ({:.2f}x smaller)\n", gib(v3.paper()),
               double(v3.paper()) / double(L), 100.0 * double(b.paper()) / double(v3.paper()), double(v3.paper()) / double(b.paper()));
    fmt::print("(ratios compare window + compressed entries + indexer keys; the compressor state is left out, as in the paper)\n");
    if (a.measure) {
      fmt::print("\nmeasured (allocated, synthetic contents): {} bytes total -> {}\n", m.total(),
                 m.total() == b.total() ? "equals the analytic count" : "DIFFERS from the analytic count");
      return m.total() == b.total() ? 0 : 1;
    }
    return 0;
  } catch (const InputError& e) {
    fmt::print(stderr, "dsv4 kv: {}\n", e.what());
    return 2;
  }
}

int flops_report(const FlopsArgs& a) {
  try {
    if (a.table) {
      fmt::print("{}\n", a.json ? flops_table_json() : flops_table_text());
      return 0;
    }
    const ModelConfig c = load_config(a.preset, a.sets);
    if (a.context <= 0) throw InputError("--context must be positive, found " + std::to_string(a.context));
    const auto f = decode_flops(c, a.context);
    const bool engram = c.engram.enabled();
    const bool vs_moe = engram && c.arch == Arch::v4 && c.n_routed_experts > 0;
    const double v32 = decode_flops(config_preset("v3.2"), a.context).total();
    const double v3 = decode_flops(config_preset("v3"), a.context).total();
    if (a.json) {
      boost::json::object o{{"model", c.name}, {"context", a.context}, {"linear", f.linear}, {"attention", f.attention},
                            {"indexer", f.indexer}, {"compressor", f.compressor}, {"engram", f.engram},
                            {"total", f.total()}, {"active_parameters", active_parameters(c)}, {"ratio_to_v3.2", f.total() / v32},
                            {"ratio_to_v3", f.total() / v3}, {"convention", flops_convention()}};
      if (engram) {
        const EngramLayerCost l = engram_layer_cost(c);
        boost::json::object e{{"layers", int64_t(c.engram.layer_ids.size())},
                              {"flops_per_token_per_layer", l.flops},
                              {"gathered_values_per_token_per_layer", l.gathered},
                              {"dense_parameters_per_layer", l.dense},
                              {"convention", engram_cost_convention()}};
        if (vs_moe) e["vs_moe"] = vs_moe_json(engram_vs_moe(c));
        o["engram_layer"] = std::move(e);
      }
      fmt::print("{}\n", boost::json::serialize(o));
      return 0;
    }
    fmt::print("Decode FLOPs per token of {} at context {}\n({})\n\n", c.name, a.context, flops_convention());
    for (const auto& [name, v] : {std::pair{"linear", f.linear}, {"attention", f.attention}, {"indexer", f.indexer},
                                  {"compressor", f.compressor}, {"engram", f.engram}, {"total", f.total()}})
      if (engram || std::string(name) != "engram") fmt::print("{:<12} {:>12.4f} GFLOP\n", name, v / 1e9);
    fmt::print("\nactive parameters {:.2f} B; V3.2 at this context {:.4f} TFLOP -> {:.1f}% ({:.2f}x); V3 {:.4f} TFLOP -> {:.1f}%\n",
               active_parameters(c) / 1e9, v32 / 1e12, 100 * f.total() / v32, v32 / f.total(), v3 / 1e12, 100 * f.total() / v3);
    if (engram) {
      const EngramLayerCost l = engram_layer_cost(c);
      fmt::print("\nEngram: {} layer{}, {:.4f} GFLOP per token per layer, {:.0f} table values ({:.0f} rows) gathered per token "
                 "per layer\n({})\n",
                 c.engram.layer_ids.size(), c.engram.layer_ids.size() == 1 ? "" : "s", l.flops / 1e9, l.gathered, l.gathered_rows,
                 engram_cost_convention());
      if (vs_moe) print_vs_moe(engram_vs_moe(c));
    }
    return 0;
  } catch (const InputError& e) {
    fmt::print(stderr, "dsv4 flops: {}\n", e.what());
    return 2;
  }
}

}  // namespace dsv4::cli
