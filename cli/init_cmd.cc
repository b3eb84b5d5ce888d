#include "cli/init_cmd.h"

#include <fmt/core.h>

#include <chrono>

#include "model/checkpoint.h"
#include "model/config.h"
#include "model/probe.h"
#include "reference/errors.h"

namespace dsv4::cli {

namespace {

// dsv4 init --probe recall: the knobs from --seed, --retrieval, then each --set in order.
int init_probe(const InitArgs& a) {
  if (a.probe != "recall")
    throw InputError("dsv4 init: unknown probe '" + a.probe + "' (probes: recall)");
  if (!a.preset.empty()) throw InputError("dsv4 init: give either --preset or --probe, not both");
  if (!a.tokenizer.empty())
    throw InputError("dsv4 init: --tokenizer does not apply to --probe (it writes its own)");
  ProbeKnobs k;
  k.seed = a.seed;  // --seed, unless a --set seed=N follows
  if (!a.retrieval.empty()) probe_set_knob(k, "retrieval=" + a.retrieval);
  for (const auto& s : a.probe_sets) probe_set_knob(k, s);
  WriteOptions o;
  o.force = a.force;
  o.max_bytes = a.max_gb > 0 ? int64_t(a.max_gb * 1e9) : 0;
  const auto t0 = std::chrono::steady_clock::now();
  const WriteSummary s = write_probe_checkpoint(k, a.out, o);
  const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fmt::print("dsv4 init: wrote recall probe ({}) to {} ({} tensors, {:.1f} MB, {:.2f} s)\n",
             probe_retrieval_name(k.retrieval), a.out, s.size.tensors, double(s.file_bytes) / 1e6,
             sec);
  fmt::print("dsv4 init: knobs {}; weights {}; tokenizer.json and probe.json written\n",
             probe_knobs_json(k),
             k.quant ? "FP8/FP4/BF16 as released (run with --numerics official)"
                     : "F32 (run with --numerics exact)");
  return 0;
}

}  // namespace

int init_command(const InitArgs& a) {
  try {
    if (!a.probe.empty()) return init_probe(a);
    if (a.preset.empty())
      throw InputError("dsv4 init: give --preset (a preset name or config.json) or --probe recall");
    if (!a.retrieval.empty()) throw InputError("dsv4 init: --retrieval applies only with --probe");
    ModelConfig c = config_load(a.preset);
    for (const auto& s : a.probe_sets) config_set_engram(c, s);  // --set engram=... (docs/engram.md)
    if (!a.probe_sets.empty()) config_validate(c);
    WriteOptions o;
    o.force = a.force;
    o.tokenizer = a.tokenizer;
    o.max_bytes = a.max_gb > 0 ? int64_t(a.max_gb * 1e9) : 0;
    const auto t0 = std::chrono::steady_clock::now();
    const WriteSummary s =
        write_random_checkpoint(c, a.seed, a.out, a.shard_mb > 0 ? a.shard_mb << 20 : 0, o);
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    fmt::print(
        "dsv4 init: wrote {} ({} tensors, {} parameters, {:.1f} MB in {} shard{}, seed {}, {:.2f} "
        "s)\n",
        a.out, s.size.tensors, s.size.parameters, double(s.file_bytes) / 1e6, s.shards,
        s.shards == 1 ? "" : "s", a.seed, sec);
    fmt::print("dsv4 init: weights {}{}; {}\n",
               c.fp8_weights ? "FP8 e4m3 with UE8M0 block scales" : "BF16",
               c.expert_dtype.empty() ? "" : ", routed experts " + c.expert_dtype,
               s.tokenizer_note);
    return 0;
  } catch (const InputError& e) {
    const std::string m = e.what();
    fmt::print(stderr, "{}{}\n", m.rfind("dsv4 init", 0) == 0 ? "" : "dsv4 init: ", m);
    return 2;
  }
}

}  // namespace dsv4::cli
