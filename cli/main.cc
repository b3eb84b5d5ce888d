// The dsv4 command: the one place that knows every folder.
//   dsv4 op NAME --in IN --out OUT ...   run one kernel on files (docs/op-contract.md)
//   dsv4 op --list [--json]              every op; --json: its status per backend (kind dsv4.ops)
//   dsv4 run [--out DIR] [--quick]       the default harness run (docs/run.md)
//   dsv4 config show PRESET|PATH         a model configuration
//   dsv4 init --preset P --seed S --out DIR  a random checkpoint (model/checkpoint.h);
//                                         --set engram=L1,L2 adds Engram (docs/engram.md)
//   dsv4 init --probe recall [--retrieval csa|hca|window] [--set KNOB=V]... --out DIR
//                                         a constructed recall probe (model/probe.h)
//   dsv4 kv --preset P --context L        KV-cache bytes (spec §4); --table: the claims
//   dsv4 flops --preset P --context L     decode FLOPs per token (spec §5); --table
//   dsv4 forward --model DIR ... --out F  logits of every position to a file
//   dsv4 generate --model DIR --prompt T  text generation
//   dsv4 eval --suite recall --model DIR --lengths 4k,16k --out DIR   eval suites (docs/evals.md)
//   dsv4 serve --model DIR --port P       the engine over an OpenAI-compatible HTTP API
//   dsv4 eval compare RUN_A RUN_B         paired comparison of runs (evals/compare.h)
//   dsv4 eval cost RUN --prices F --price N   what each answer cost (evals/cost.h)
//   dsv4 plan --preset P --gpus N ...    per-GPU memory of sharded layouts (model/plan.h)
//   dsv4 bench [--filter RE] [--quick]    microbenchmarks: bench.json + bench_derived.json (docs/bench.md)
//   dsv4 bench compare BASELINE NEW       the performance-regression check (bench/compare.h)
//   [mpirun -np N] dsv4 bench --model DIR [--tp T --ep E]  whole-model prefill/decode time (+ comm)
//   dsv4 report RESULTS... --out DIR      report.md, index.html, summary.json (docs/report.md)
#include <CLI/CLI.hpp>
#include <Eigen/Core>
#include <fmt/core.h>

#include "cli/bench_cmd.h"
#include "cli/bench_compare.h"
#include "cli/bench_model.h"
#include "cli/eval_cmd.h"
#include "cli/eval_compare.h"
#include "cli/eval_cost.h"
#include "cli/model_cmds.h"
#include "cli/generate_cmds.h"
#include "cli/init_cmd.h"
#include "cli/op_runner.h"
#include "cli/plan_cmd.h"
#include "cli/op_status.h"
#include "cli/report_cmd.h"
#include "cli/run.h"
#include "cli/serve_cmd.h"

namespace {

constexpr int kBadInput = 2;

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"dsv4: benchmark and evaluation harness for the DeepSeek-V4 architecture"};
  app.require_subcommand(1);
  // Eigen's OpenMP threads spin against each other and against other processes on small
  // machines (2 threads were ~100x slower than 1 on a loaded 2-core box), so one thread
  // unless asked.
  int threads = 1;
  app.add_option("--threads", threads, "CPU threads for the reference (0 = all cores)")->default_str("1");

  dsv4::cli::OpRunArgs op;
  bool list = false, list_json = false, op_help = false;
  auto* opc = app.add_subcommand("op", "run one kernel on safetensors files (dsv4 op --list)");
  opc->set_help_flag();  // NAME --help prints the op's contract instead
  opc->add_flag("-h,--help", op_help, "this help, or with NAME the op's contract");
  opc->add_option("name", op.op, "op name");
  opc->add_flag("--list", list, "list every op with its inputs, outputs and keys");
  opc->add_flag("--json", list_json, "with --list: each op's status per backend as JSON (kind dsv4.ops)");
  opc->add_option("--in", op.in, "input safetensors file");
  opc->add_option("--out", op.out, "output safetensors file (written atomically)");
  opc->add_option("--backend", op.backend, "ref | cuda")->default_str("ref");
  opc->add_option("--precision", op.precision, "f32 | f64")->default_str("f32");
  opc->add_option("--set", op.sets, "KEY=VALUE (repeatable)")->take_all();

  dsv4::cli::RunArgs run;
  auto* runc = app.add_subcommand("run", "the default harness run: every reference op at V4 shapes, a summary and a results file");
  runc->add_option("--out", run.out, "results directory")->default_str(run.out);
  runc->add_flag("--quick", run.quick, "small shapes only (seconds)");
  runc->add_option("--threads", run.threads, "Eigen threads (0 = all cores; targets are single-thread)")->default_str("1");

  std::string config_what;
  bool config_json = false;
  auto* cfgc = app.add_subcommand("config", "model configurations");
  cfgc->require_subcommand(1);
  auto* showc = cfgc->add_subcommand("show", "print a preset (v4-flash, v4-pro, v3.2, v3, v4-tiny) or a config.json");
  showc->add_option("what", config_what, "preset name, config.json path or model directory")->required();
  showc->add_flag("--json", config_json, "Hugging Face config.json spelling");

  dsv4::cli::InitArgs init;
  auto* initc = app.add_subcommand("init", "write a random checkpoint (official layout, FP8/FP4 as released)");
  initc->add_option("--preset", init.preset, "preset name or config.json (or --probe)");
  initc->add_option("--seed", init.seed, "random seed")->default_str("0");
  initc->add_option("--out", init.out, "checkpoint directory (created atomically)")->required();
  initc->add_option("--shard-mb", init.shard_mb, "largest shard in MiB (0: one shard)")->default_str("4096");
  initc->add_option("--max-gb", init.max_gb, "refuse checkpoints larger than this (0: no limit)")->default_str("64");
  initc->add_option("--tokenizer", init.tokenizer, "tokenizer.json to copy (default: model/assets/tokenizer-tiny.json)");
  initc->add_flag("--force", init.force, "replace an existing non-empty directory");
  initc->add_option("--probe", init.probe, "recall: a constructed recall probe instead of a preset (model/probe.h)");
  initc->add_option("--retrieval", init.retrieval, "with --probe: layer 1 is csa (default) | hca | window");
  initc->add_option("--set", init.probe_sets, "with --probe: KNOB=V (model/probe.h lists the knobs); with --preset: engram=L1,L2 and engram.* (docs/engram.md); repeatable");

  dsv4::cli::KvArgs kv;
  auto* kvc = app.add_subcommand("kv", "KV-cache bytes of one sequence by layer type, and the ratio to V3.2 and V3");
  kvc->add_option("--preset", kv.preset, "preset name or config.json")->default_str(kv.preset);
  kvc->add_option("--context", kv.context, "tokens")->default_str(std::to_string(kv.context));
  kvc->add_option("--layout", kv.layout, "fp8 (deployment) | bf16 | f32")->default_str(kv.layout);
  kvc->add_flag("--json", kv.json, "one machine-readable object");
  kvc->add_flag("--measure", kv.measure, "also allocate the real cache and compare");
  kvc->add_flag("--table", kv.table, "the paper-claims reproduction over 4K..1M");
  kvc->add_option("--set", kv.sets, "engram=L1,L2 and engram.* (docs/engram.md): Engram state and table lines; repeatable");
  dsv4::cli::FlopsArgs fl;
  auto* flc = app.add_subcommand("flops", "decode FLOPs per token by part, and the ratio to V3.2 and V3");
  flc->add_option("--preset", fl.preset, "preset name or config.json")->default_str(fl.preset);
  flc->add_option("--context", fl.context, "tokens")->default_str(std::to_string(fl.context));
  flc->add_flag("--json", fl.json, "one machine-readable object");
  flc->add_flag("--table", fl.table, "the paper-claims reproduction over 4K..1M");
  flc->add_option("--set", fl.sets, "engram=L1,L2 and engram.* (docs/engram.md): Engram FLOPs and the Engram-vs-MoE table; repeatable");

  auto* benchc = app.add_subcommand("bench", "microbenchmarks; `dsv4 bench compare`: the regression check");
  dsv4::cli::BenchCompareArgs bcmp;
  auto* bcmpc = dsv4::cli::add_bench_compare(benchc, bcmp);
  dsv4::cli::BenchArgs bench;
  benchc->add_option("--filter", bench.filter, "regex over <op>/<model>/<case> (the ceilings always run)");
  benchc->add_flag("--quick", bench.quick, "the CI subset (< 60 s)");
  benchc->add_option("--repetitions", bench.repetitions, "repetitions of each benchmark")->default_str("1");
  benchc->add_option("--min-time", bench.min_time, "seconds per benchmark repetition (0: 0.5, --quick 0.1)")->default_str("0");
  benchc->add_option("--out", bench.out, "results directory (bench.json, bench_derived.json)")->default_str(bench.out);
  benchc->add_flag("--list", bench.list, "print the case list (FLOPs, bytes, memory, skip reasons) and exit");
  benchc->add_option("--rederive", bench.rederive, "DIR: rewrite DIR/bench_derived.json and the table from DIR/bench.json");
  dsv4::cli::BenchModelArgs bench_model;
  dsv4::cli::add_bench_model_options(benchc, bench_model);

  dsv4::cli::ReportArgs rep;
  auto* repc = app.add_subcommand("report", "result files -> report.md, index.html (self-contained) and summary.json");
  repc->add_option("inputs", rep.inputs, "result files or folders (searched for dsv4 result JSON)")->required();
  repc->add_option("--out", rep.out, "output folder")->default_str(rep.out);

  dsv4::cli::EvalArgs ev;
  dsv4::cli::PlanArgs plan;
  auto* planc = dsv4::cli::add_plan_command(app, plan);
  auto* evc = dsv4::cli::add_eval_command(app, ev);
  dsv4::cli::ServeArgs serve;
  auto* servec = dsv4::cli::add_serve_command(app, serve);
  dsv4::cli::EvalCompareArgs evcmp;
  auto* evcmpc = dsv4::cli::add_eval_compare(evc, evcmp);
  dsv4::cli::EvalCostArgs evcost;
  auto* evcostc = dsv4::cli::add_eval_cost(evc, evcost);

  dsv4::cli::ModelRunArgs fwd, gen;
  auto model_options = [](CLI::App* c, dsv4::cli::ModelRunArgs& a) {
    c->add_option("--model", a.model, "checkpoint directory (dsv4 init writes one)")->required();
    c->add_option("--prompt", a.prompt, "text, tokenised with the model's tokenizer.json");
    c->add_option("--tokens", a.tokens_file, "file of token ids, one per line");
    c->add_option("--backend", a.backend, "ref | cuda")->default_str(a.backend);
    c->add_option("--precision", a.precision, "f32")->default_str(a.precision);
    c->add_option("--numerics", a.numerics, "official (FP8/FP4 simulation) | exact")->default_str(a.numerics);
    c->add_option("--kv-layout", a.kv_layout, "f32 | bf16 | fp8 (deployment)")->default_str(a.kv_layout);
    c->add_option("--engram-tables", a.engram_tables, "memory | mmap: Engram tables decoded, or mapped from the shards")
        ->default_str(a.engram_tables);
    c->add_option("--chunk", a.chunk, "prefill chunk, tokens")->default_str(std::to_string(a.chunk));
    c->add_option("--tp", a.tp, "tensor-parallel ranks (under mpirun; docs/parallel.md)")->default_str("1");
    c->add_option("--ep", a.ep, "expert-parallel ranks (under mpirun; docs/parallel.md)")->default_str("1");
  };
  auto* fwdc = app.add_subcommand("forward", "logits of every position (and hidden states) to a safetensors file");
  model_options(fwdc, fwd);
  fwdc->add_option("--out", fwd.out, "output .safetensors (written atomically)")->required();
  fwdc->add_flag("--hidden", fwd.hidden, "also each layer's residual streams, hidden.L [T, n, D]");
  auto* genc = app.add_subcommand("generate", "generate text from a prompt");
  model_options(genc, gen);
  genc->add_option("--chat", gen.chat, "one user turn in the V4 chat format");
  genc->add_flag("--thinking", gen.thinking, "with --chat: thinking mode");
  genc->add_option("--max-tokens", gen.max_tokens, "tokens to generate")->default_str(std::to_string(gen.max_tokens));
  genc->add_option("--temperature", gen.temperature, "0 = greedy")->default_str("0");
  genc->add_option("--top-p", gen.top_p, "nucleus sampling")->default_str("1");
  genc->add_option("--seed", gen.seed, "sampling seed")->default_str("0");
  genc->add_option("--stop", gen.stop, "stop token ids (default: eos)");

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fmt::print(stderr, "dsv4: {}\n", e.what());
    return kBadInput;
  }

  Eigen::setNbThreads(threads > 0 ? threads : 0);
  if (opc->parsed()) {
    if (op_help) {
      if (op.op.empty()) {
        fmt::print("{}", opc->help());
        return 0;
      }
      if (!dsv4::cli::print_op_help(op.op)) {
        fmt::print(stderr, "dsv4 op: unknown op '{}' (dsv4 op --list shows them)\n", op.op);
        return kBadInput;
      }
      return 0;
    }
    if (list_json && !list) {
      fmt::print(stderr, "dsv4 op: --json goes with --list\n");
      return kBadInput;
    }
    if (list) {
      if (list_json) dsv4::cli::print_op_list_json();
      else dsv4::cli::print_op_list();
      return 0;
    }
    if (op.op.empty()) {
      fmt::print(stderr, "dsv4 op: give an op name, or --list\n");
      return kBadInput;
    }
    return dsv4::cli::run_op(op);
  }
  if (runc->parsed()) return dsv4::cli::run_harness(run);
  if (showc->parsed()) return dsv4::cli::config_show(config_what, config_json);
  if (initc->parsed()) return dsv4::cli::init_command(init);
  if (kvc->parsed()) return dsv4::cli::kv_report(kv);
  if (planc->parsed()) return dsv4::cli::plan_command(plan);
  if (flc->parsed()) return dsv4::cli::flops_report(fl);
  if (bcmpc->parsed()) return dsv4::cli::bench_compare(bcmp);
  if (benchc->parsed() && !bench_model.model.empty()) return dsv4::cli::bench_model_command(bench_model, bench.out);
  if (benchc->parsed()) return dsv4::cli::bench_command(bench);
  if (repc->parsed()) return dsv4::cli::report_command(rep);
  if (evcmpc->parsed()) return dsv4::cli::eval_compare(evcmp);
  if (evcostc->parsed()) return dsv4::cli::eval_cost(evcost);
  if (evc->parsed()) return dsv4::cli::eval_command(ev);
  if (servec->parsed()) return dsv4::cli::serve_command(serve);
  if (fwdc->parsed()) return dsv4::cli::forward_command(fwd);
  if (genc->parsed()) return dsv4::cli::generate_command(gen);
  return kBadInput;
}
