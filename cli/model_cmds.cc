#include "cli/model_cmds.h"

#include <fmt/core.h>

#include <boost/json.hpp>

#include "bench/claims.h"
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
    const ModelConfig c = config_load(a.preset);
    const KvLayout layout = kv_layout_from_name(a.layout);
    if (a.context <= 0) throw InputError("--context must be positive, found " + std::to_string(a.context));
    const int64_t L = a.context;
    const KvBytes b = kv_bytes_analytic(c, L, layout);
    const KvBytes v32 = kv_bytes_analytic(config_preset("v3.2"), L, layout);
    const KvBytes v3 = kv_bytes_analytic(config_preset("v3"), L, layout);
    KvBytes m;
    if (a.measure) m = measured(c, L, layout);
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
    const ModelConfig c = config_load(a.preset);
    if (a.context <= 0) throw InputError("--context must be positive, found " + std::to_string(a.context));
    const auto f = decode_flops(c, a.context);
    const double v32 = decode_flops(config_preset("v3.2"), a.context).total();
    const double v3 = decode_flops(config_preset("v3"), a.context).total();
    if (a.json) {
      fmt::print("{}\n", boost::json::serialize(boost::json::object{
                              {"model", c.name}, {"context", a.context}, {"linear", f.linear}, {"attention", f.attention},
                              {"indexer", f.indexer}, {"compressor", f.compressor}, {"total", f.total()},
                              {"active_parameters", active_parameters(c)}, {"ratio_to_v3.2", f.total() / v32},
                              {"ratio_to_v3", f.total() / v3}, {"convention", flops_convention()}}));
      return 0;
    }
    fmt::print("Decode FLOPs per token of {} at context {}\n({})\n\n", c.name, a.context, flops_convention());
    for (const auto& [name, v] : {std::pair{"linear", f.linear}, {"attention", f.attention}, {"indexer", f.indexer},
                                  {"compressor", f.compressor}, {"total", f.total()}})
      fmt::print("{:<12} {:>12.4f} GFLOP\n", name, v / 1e9);
    fmt::print("\nactive parameters {:.2f} B; V3.2 at this context {:.4f} TFLOP -> {:.1f}% ({:.2f}x); V3 {:.4f} TFLOP -> {:.1f}%\n",
               active_parameters(c) / 1e9, v32 / 1e12, 100 * f.total() / v32, v32 / f.total(), v3 / 1e12, 100 * f.total() / v3);
    return 0;
  } catch (const InputError& e) {
    fmt::print(stderr, "dsv4 flops: {}\n", e.what());
    return 2;
  }
}

}  // namespace dsv4::cli
