#include "reports/section_multirank.h"

#include <fmt/core.h>

#include <map>

#include "reports/blocks.h"

namespace dsv4::report {

namespace json = boost::json;

Section multirank(const Inputs& in, json::object& summary) {
  Section s{"multirank", "Sharded runs: time and communication", {}};
  s.blocks.push_back(text(
      "Whole-model prefill and decode on N ranks (`dsv4 bench --model DIR --tp T --ep E` under mpirun; one rank: "
      "unsharded). *comm share*: the largest fraction of the phase any rank spent inside collectives, waiting for "
      "slower ranks included."));
  // The one-rank decode time per config, for the speedup column.
  std::map<std::string, double> single;
  for (const ModelBenchRun& m : in.model_bench)
    if (m.ranks == 1) single[m.config] = m.decode_ms_per_token;
  Table t{{"config", "ranks", "tp x ep", "transport", "prefill tokens/s", "prefill comm", "decode ms/token",
           "decode comm", "decode speedup vs 1 rank"},
          {},
          {false, true, false, false, true, true, true, true, true}};
  json::array rows;
  for (const ModelBenchRun& m : in.model_bench) {
    const auto it = single.find(m.config);
    const double speedup = it != single.end() && m.decode_ms_per_token > 0 ? it->second / m.decode_ms_per_token : -1;
    t.rows.push_back({short_file(m.config), fmt::format("{:.0f}", m.ranks), fmt::format("{:.0f} x {:.0f}", m.tp, m.ep),
                      m.transport, fmt::format("{:.1f}", m.prefill_tokens_per_s),
                      fmt::format("{:.0f}%", 100 * m.prefill_comm_share), fmt::format("{:.3f}", m.decode_ms_per_token),
                      fmt::format("{:.0f}%", 100 * m.decode_comm_share),
                      speedup > 0 ? fmt::format("{:.2f}x", speedup) : "n/a (no one-rank run)"});
    rows.push_back(json::object{{"file", m.file},
                                {"config", m.config},
                                {"ranks", m.ranks},
                                {"tp", m.tp},
                                {"ep", m.ep},
                                {"transport", m.transport},
                                {"prefill_tokens_per_second", m.prefill_tokens_per_s},
                                {"prefill_comm_share", m.prefill_comm_share},
                                {"decode_ms_per_token", m.decode_ms_per_token},
                                {"decode_comm_share", m.decode_comm_share},
                                {"decode_speedup", speedup > 0 ? json::value(speedup) : json::value(nullptr)}});
  }
  s.blocks.push_back(table(std::move(t)));
  summary["multirank"] = std::move(rows);
  return s;
}

}  // namespace dsv4::report
