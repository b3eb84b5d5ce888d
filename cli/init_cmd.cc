#include "cli/init_cmd.h"

#include <fmt/core.h>

#include <chrono>

#include "model/checkpoint.h"
#include "model/config.h"
#include "reference/errors.h"

namespace dsv4::cli {

int init_command(const InitArgs& a) {
  try {
    const ModelConfig c = config_load(a.preset);
    WriteOptions o;
    o.force = a.force;
    o.tokenizer = a.tokenizer;
    o.max_bytes = a.max_gb > 0 ? int64_t(a.max_gb * 1e9) : 0;
    const auto t0 = std::chrono::steady_clock::now();
    const WriteSummary s = write_random_checkpoint(c, a.seed, a.out, a.shard_mb > 0 ? a.shard_mb << 20 : 0, o);
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    fmt::print("dsv4 init: wrote {} ({} tensors, {} parameters, {:.1f} MB in {} shard{}, seed {}, {:.2f} s)\n", a.out,
               s.size.tensors, s.size.parameters, double(s.file_bytes) / 1e6, s.shards, s.shards == 1 ? "" : "s", a.seed, sec);
    fmt::print("dsv4 init: weights {}{}; {}\n", c.fp8_weights ? "FP8 e4m3 with UE8M0 block scales" : "BF16",
               c.expert_dtype.empty() ? "" : ", routed experts " + c.expert_dtype, s.tokenizer_note);
    return 0;
  } catch (const InputError& e) {
    const std::string m = e.what();
    fmt::print(stderr, "{}{}\n", m.rfind("dsv4 init", 0) == 0 ? "" : "dsv4 init: ", m);
    return 2;
  }
}

}  // namespace dsv4::cli
