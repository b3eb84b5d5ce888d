#include "bench/model_bench.h"

#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <random>

#include "reference/errors.h"

namespace dsv4::bench {

namespace json = boost::json;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

// Token ids in [lo, V - lo): clear of the special ids at either end of small vocabularies.
std::vector<int32_t> random_ids(int64_t n, int64_t vocab, uint64_t seed) {
  const int64_t lo = std::min<int64_t>(16, vocab / 4);
  std::mt19937_64 g(seed);
  std::vector<int32_t> v(static_cast<size_t>(n));
  for (auto& t : v) t = int32_t(lo + int64_t(g() % uint64_t(vocab - 2 * lo)));
  return v;
}

struct Phase {
  std::vector<double> seconds;   // per repetition
  double comm_seconds = 0;       // this rank, summed over repetitions
  comm::CommStats last;          // this rank, last repetition
};

json::object phase_json(const Phase& p, comm::TimingComm& world, int64_t tokens, int reps) {
  // Every rank's communication seconds (summed over repetitions), then per repetition.
  float mine = float(p.comm_seconds / reps);
  std::vector<float> all(static_cast<size_t>(world.size()));
  world.all_gather(&mine, 1, all.data());
  const double sec = median(p.seconds);
  json::array per_rank;
  double worst = 0;
  for (float s : all) per_rank.push_back(double(s)), worst = std::max(worst, double(s));
  json::object coll;
  for (const auto& [name, op] : p.last.ops)
    if (name != "barrier") coll[name] = json::object{{"calls", op.calls}, {"elements", op.elements}};
  return json::object{{"seconds", sec},
                      {"tokens_per_second", sec > 0 ? double(tokens) / sec : 0.0},
                      {"comm_seconds", std::move(per_rank)},
                      {"comm_share", sec > 0 ? worst / sec : 0.0},
                      {"collectives", std::move(coll)}};
}

}  // namespace

json::object run_model_bench(Model& model, comm::TimingComm& world, const ModelBenchOptions& o) {
  require(o.prompt > 0, "--prompt must be positive, found " + std::to_string(o.prompt));
  require(o.decode >= 0, "--decode must be >= 0, found " + std::to_string(o.decode));
  require(o.chunk > 0, "--chunk must be positive, found " + std::to_string(o.chunk));
  require(o.repetitions > 0, "--repetitions must be positive, found " + std::to_string(o.repetitions));
  const int64_t V = model.config().vocab_size;
  const std::vector<int32_t> prompt = random_ids(o.prompt, V, o.seed);
  const std::vector<int32_t> steps = random_ids(std::max<int64_t>(o.decode, 1), V, o.seed + 1);
  Phase prefill, decode;
  EngramPrefetchStats engram_prefill, engram_decode;  // summed over the repetitions
  auto engram_since = [&](const EngramPrefetchStats& before) {
    const EngramPrefetchStats now = model.backend().engram_prefetch_stats();
    return EngramPrefetchStats{now.lookups - before.lookups, now.lookup_seconds - before.lookup_seconds,
                               now.wait_seconds - before.wait_seconds};
  };
  auto add = [](EngramPrefetchStats& to, const EngramPrefetchStats& d) {
    to.lookups += d.lookups, to.lookup_seconds += d.lookup_seconds, to.wait_seconds += d.wait_seconds;
  };
  using Clock = std::chrono::steady_clock;
  auto timed = [&](Phase& ph, auto&& body) {
    world.barrier();
    world.reset();
    const auto t0 = Clock::now();
    body();
    world.barrier();  // the phase ends when the slowest rank ends it
    ph.seconds.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
    ph.last = world.stats();
    ph.last.ops.erase("barrier");
    ph.comm_seconds += ph.last.seconds();
  };
  for (int r = 0; r < o.repetitions; ++r) {
    Sequence s = model.new_sequence();
    EngramPrefetchStats before = model.backend().engram_prefetch_stats();
    timed(prefill, [&] { model.prefill(s, prompt, o.chunk); });
    add(engram_prefill, engram_since(before));
    before = model.backend().engram_prefetch_stats();
    timed(decode, [&] {
      for (int64_t t = 0; t < o.decode; ++t) model.decode(s, steps[size_t(t)]);
    });
    add(engram_decode, engram_since(before));
  }
  json::object out{{"kind", "dsv4.bench.model"},
                   {"schema_version", 1},
                   {"config", model.config().name},
                   {"ranks", world.size()},
                   {"transport", world.transport()},
                   {"prompt_tokens", o.prompt},
                   {"decode_tokens", o.decode},
                   {"chunk", o.chunk},
                   {"repetitions", o.repetitions},
                   {"seed", o.seed}};
  out["prefill"] = phase_json(prefill, world, o.prompt, o.repetitions);
  json::object d = phase_json(decode, world, o.decode, o.repetitions);
  const double ds = d["seconds"].as_double();
  d["ms_per_token"] = o.decode > 0 ? 1e3 * ds / double(o.decode) : 0.0;
  out["decode"] = std::move(d);
  if (model.config().engram.enabled()) {  // rank 0's prefetches (Engram layers are replicated)
    auto stats = [&](const EngramPrefetchStats& e) {
      const double reps = double(o.repetitions);
      return json::object{{"lookups", e.lookups},
                          {"lookup_seconds", e.lookup_seconds / reps},
                          {"wait_seconds", e.wait_seconds / reps},
                          {"hidden_fraction", e.hidden_fraction()}};
    };
    out["engram_prefetch"] = json::object{{"prefill", stats(engram_prefill)}, {"decode", stats(engram_decode)}};
  }
  return out;
}

std::string model_bench_table(const json::object& r) {
  auto num = [](const json::value& v) { return v.is_double() ? v.as_double() : double(v.as_int64()); };
  std::string s = fmt::format("model {} on {} rank(s) ({}), tp {} ep {}: {} prompt + {} decode tokens, {} repetition(s)\n",
                              json::value_to<std::string>(r.at("config")), num(r.at("ranks")),
                              json::value_to<std::string>(r.at("transport")), num(r.at("tp")), num(r.at("ep")),
                              num(r.at("prompt_tokens")), num(r.at("decode_tokens")), num(r.at("repetitions")));
  s += fmt::format("  {:<8} {:>10} {:>12} {:>12} {:>12}\n", "phase", "seconds", "tokens/s", "ms/token", "comm share");
  for (const char* ph : {"prefill", "decode"}) {
    const auto& p = r.at(ph).as_object();
    const double sec = num(p.at("seconds")), tps = num(p.at("tokens_per_second"));
    s += fmt::format("  {:<8} {:>10.4f} {:>12.1f} {:>12.3f} {:>11.1f}%\n", ph, sec, tps, tps > 0 ? 1e3 / tps : 0.0,
                     100 * num(p.at("comm_share")));
  }
  if (const auto* e = r.if_contains("engram_prefetch")) {
    s += "  Engram lookups prefetched ahead of their layers (per repetition):\n";
    s += fmt::format("  {:<8} {:>8} {:>12} {:>12} {:>8}\n", "phase", "lookups", "lookup ms", "waited ms", "hidden");
    for (const char* ph : {"prefill", "decode"}) {
      const auto& p = e->as_object().at(ph).as_object();
      s += fmt::format("  {:<8} {:>8} {:>12.3f} {:>12.3f} {:>7.1f}%\n", ph, num(p.at("lookups")),
                       1e3 * num(p.at("lookup_seconds")), 1e3 * num(p.at("wait_seconds")),
                       100 * num(p.at("hidden_fraction")));
    }
  }
  return s;
}

}  // namespace dsv4::bench
