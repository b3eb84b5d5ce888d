#include "cli/plan_cmd.h"

#include <fmt/core.h>

#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <regex>

#include "model/config.h"
#include "model/plan.h"
#include "reference/errors.h"

namespace dsv4::cli {

namespace {

// "1m" -> 2^20, "128k" -> 2^17, "4096" -> 4096.
int64_t parse_context(const std::string& s) {
  static const std::regex kLen(R"(^([0-9]{1,9})([kKmM]?)$)");
  std::smatch m;
  if (!std::regex_match(s, m, kLen)) throw InputError("--context: '" + s + "' is not a length (e.g. 128k, 1m)");
  const int64_t v = std::stoll(m[1].str());
  const char u = m[2].length() ? char(std::tolower(static_cast<unsigned char>(m[2].str()[0]))) : 0;
  const int64_t out = v * (u == 'k' ? 1024 : u == 'm' ? 1024 * 1024 : 1);
  if (out <= 0) throw InputError("--context must be positive");
  return out;
}

double gib(int64_t b) { return double(b) / double(int64_t(1) << 30); }

boost::json::object to_json(const RankMemory& m) {
  return {{"tp", m.tp},           {"ep", m.ep},
          {"dp", m.dp},           {"weights_bytes", m.weights},
          {"weights_replicated_bytes", m.weights_replicated},
          {"weights_tp_bytes", m.weights_tp},
          {"weights_ep_bytes", m.weights_ep},
          {"kv_bytes", m.kv},     {"sequences_per_replica", m.sequences},
          {"workspace_bytes", m.workspace},
          {"total_bytes", m.total()}, {"fits", m.fits}};
}

}  // namespace

CLI::App* add_plan_command(CLI::App& app, PlanArgs& a) {
  auto* c = app.add_subcommand("plan", "per-GPU memory of a sharded V4 model (TP attention x EP experts) and the layouts that fit");
  c->add_option("--preset", a.preset, "preset name, config.json or model directory")->default_str(a.preset);
  c->add_option("--gpus", a.gpus, "GPUs (ranks)")->default_str(std::to_string(a.gpus));
  c->add_option("--gpu-mem", a.gpu_mem, "memory per GPU, e.g. 141GiB (H200), 80GB")->default_str(a.gpu_mem);
  c->add_option("--context", a.context, "tokens per sequence, e.g. 128k, 1m")->default_str(a.context);
  c->add_option("--batch", a.batch, "sequences served at once")->default_str(std::to_string(a.batch));
  c->add_option("--tp", a.tp, "only this tensor-parallel degree (with --ep)");
  c->add_option("--ep", a.ep, "only this expert-parallel degree (with --tp)");
  c->add_flag("--json", a.json, "one JSON document");
  return c;
}

int plan_command(const PlanArgs& a) {
  try {
    const ModelConfig c = config_load(a.preset);
    PlanRequest r;
    r.gpus = a.gpus;
    r.gpu_bytes = parse_bytes(a.gpu_mem);
    r.context = parse_context(a.context);
    r.batch = a.batch;
    if ((a.tp > 0) != (a.ep > 0)) throw InputError("--tp and --ep go together");
    const std::vector<RankMemory> layouts =
        a.tp > 0 ? std::vector<RankMemory>{plan_layout(c, r, a.tp, a.ep)} : plan_layouts(c, r);
    if (a.json) {
      boost::json::array ls;
      for (const auto& m : layouts) ls.push_back(to_json(m));
      const boost::json::object doc{{"kind", "dsv4.plan"},  {"model", c.name},      {"gpus", r.gpus},
                                    {"gpu_bytes", r.gpu_bytes}, {"context", r.context}, {"batch", r.batch},
                                    {"reserve", kReserve},  {"layouts", ls},
                                    {"suggested", layouts.front().fits ? boost::json::value(to_json(layouts.front()))
                                                                       : boost::json::value(nullptr)}};
      fmt::print("{}\n", boost::json::serialize(doc));
      return 0;
    }
    fmt::print("{} on {} x {:.1f} GiB, context {}, batch {} (weights as stored: FP8/FP4 + scales; KV: FP8 "
               "deployment layout; {:.0f}% of each GPU kept free)\n",
               c.name, r.gpus, gib(r.gpu_bytes), r.context, r.batch, kReserve * 100);
    fmt::print("  {:>3} {:>3} {:>3} {:>11} {:>9} {:>9} {:>9} {:>10} {:>9} {:>10}  {}\n", "tp", "ep", "dp",
               "weights GiB", "repl.", "tp part", "ep part", "KV GiB", "work GiB", "total GiB", "fits");
    for (size_t i = 0; i < layouts.size(); ++i) {
      const RankMemory& m = layouts[i];
      fmt::print("{} {:>3} {:>3} {:>3} {:>11.2f} {:>9.2f} {:>9.2f} {:>9.2f} {:>10.2f} {:>9.2f} {:>10.2f}  {}\n",
                 i == 0 && m.fits ? "*" : " ", m.tp, m.ep, m.dp, gib(m.weights), gib(m.weights_replicated),
                 gib(m.weights_tp), gib(m.weights_ep), gib(m.kv), gib(m.workspace), gib(m.total()),
                 m.fits ? "yes" : "no");
    }
    if (layouts.front().fits)
      fmt::print("suggested (*): tp={} ep={} (the smallest tensor-parallel degree that fits, then the widest expert "
                 "split)\n",
                 layouts.front().tp, layouts.front().ep);
    else
      fmt::print("no layout fits: more GPUs, a shorter context or a smaller batch\n");
    return 0;
  } catch (const InputError& e) {
    fmt::print(stderr, "dsv4 plan: {}\n", e.what());
    return 2;
  }
}

}  // namespace dsv4::cli
