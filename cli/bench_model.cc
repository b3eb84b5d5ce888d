#include "cli/bench_model.h"

#include <fmt/core.h>

#include <filesystem>

#include "bench/model_bench.h"
#include "comm/comm.h"
#include "comm/timing_comm.h"
#include "evals/results.h"
#include "model/backend_factory.h"
#include "model/checkpoint.h"
#include "model/kv_cache.h"
#include "reference/errors.h"

namespace dsv4::cli {

namespace fs = std::filesystem;
namespace json = boost::json;

void add_bench_model_options(CLI::App* b, BenchModelArgs& a) {
  b->add_option("--model", a.model,
                "checkpoint directory: the whole-model prefill/decode benchmark instead of the microbenchmarks "
                "(under mpirun: sharded, with the time in collectives)");
  b->add_option("--model-backend", a.backend, "with --model: ref | cuda (the model's backend)")->default_str(a.backend);
  b->add_option("--tp", a.tp, "with --model: tensor-parallel ranks (docs/parallel.md)")->default_str("1");
  b->add_option("--ep", a.ep, "with --model: expert-parallel ranks")->default_str("1");
  b->add_option("--prompt", a.prompt, "with --model: prefill tokens")->default_str(std::to_string(a.prompt));
  b->add_option("--decode", a.decode, "with --model: decode steps")->default_str(std::to_string(a.decode));
  b->add_option("--chunk", a.chunk, "with --model: prefill chunk")->default_str(std::to_string(a.chunk));
  b->add_option("--model-reps", a.repetitions, "with --model: repetitions (medians reported)")->default_str("3");
  b->add_option("--seed", a.seed, "with --model: seed of the token ids")->default_str("0");
  b->add_option("--numerics", a.numerics, "with --model: official | exact")->default_str(a.numerics);
  b->add_option("--kv-layout", a.kv_layout, "with --model: f32 | bf16 | fp8")->default_str(a.kv_layout);
  b->add_option("--engram-tables", a.engram_tables,
                "with --model: memory | mmap (Engram tables read in place from the shards)")
      ->default_str(a.engram_tables);
}

int bench_model_command(const BenchModelArgs& a, const std::string& out) {
  std::unique_ptr<comm::TimingComm> world;
  auto fail = [&](const std::string& line, int code) {
    if (world && world->size() > 1) world->abort(line, code);
    fmt::print(stderr, "{}\n", line);
    return code;
  };
  try {
    world = std::make_unique<comm::TimingComm>(comm::init_world());
    check_backend_name(a.backend);
    if (a.numerics != "official" && a.numerics != "exact")
      throw InputError("--numerics: expected official or exact, found '" + a.numerics + "'");
    BackendOptions o;
    o.numerics = a.numerics == "official" ? Numerics::official : Numerics::exact;
    o.kv_layout = kv_layout_from_name(a.kv_layout);
    if (!fs::is_directory(a.model)) throw InputError("--model: '" + a.model + "' is not a directory");
    ModelWeights w = load_checkpoint(a.model, engram_load_options(a.engram_tables));
    Model m(make_named_backend(a.backend, std::move(w), o, world.get(), {a.tp, a.ep}));
    bench::ModelBenchOptions mo;
    mo.prompt = a.prompt, mo.decode = a.decode, mo.chunk = a.chunk, mo.repetitions = a.repetitions, mo.seed = a.seed;
    json::object r = bench::run_model_bench(m, *world, mo);
    r["model"] = fs::weakly_canonical(a.model).string();
    r["backend"] = m.backend().name();
    r["tp"] = a.tp, r["ep"] = a.ep, r["numerics"] = a.numerics, r["kv_layout"] = a.kv_layout;
    if (m.config().engram.enabled()) r["engram_tables"] = a.engram_tables;
    if (world->rank() != 0) return 0;
    fs::create_directories(out);
    const std::string path = (fs::path(out) / "model_bench.json").string();
    evals::write_file_atomic(path, evals::pretty_json(r));
    fmt::print("{}", bench::model_bench_table(r));
    fmt::print(stderr, "dsv4 bench: -> {}\n", path);
    return 0;
  } catch (const InputError& e) {
    return fail(fmt::format("dsv4 bench: {}", e.what()), 2);
  } catch (const std::exception& e) {
    return fail(fmt::format("dsv4 bench: error: {}", e.what()), 1);
  }
}

}  // namespace dsv4::cli
