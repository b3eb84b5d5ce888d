// The whole-model benchmark: prefill and decode time of a checkpoint on the reference
// backend, unsharded or sharded over ranks (`mpirun -np N dsv4 bench --model DIR --tp T
// --ep E`), with the time every rank spends in collectives (comm/timing_comm.h).
//
// Per repetition, on a fresh sequence: prefill `prompt` seeded random in-vocabulary tokens
// in chunks of `chunk`, then `decode` single-token steps (fixed seeded ids: the timing does not
// depend on sampling). Each phase is timed on every rank between barriers; medians over the
// repetitions are reported. Communication: per phase and per collective, this rank's calls,
// elements sent and seconds inside the call (waiting for slower ranks included), gathered from
// every rank. Writes kind dsv4.bench.model (schema below) on rank 0.
//
//   {"kind": "dsv4.bench.model", "schema_version": 1, "model": DIR, "config": NAME,
//    "ranks": N, "tp": T, "ep": E, "transport": "local|mpi|nccl", "numerics", "kv_layout",
//    "prompt_tokens", "decode_tokens", "chunk", "repetitions",
//    "prefill": {"seconds": median, "tokens_per_second", "comm_seconds": [per rank],
//                "comm_share": max over ranks of comm_seconds / seconds,
//                "collectives": {name: {"calls", "elements"}} (rank 0, per repetition)},
//    "decode":  {"seconds", "ms_per_token", "tokens_per_second", "comm_seconds", "comm_share",
//                "collectives"},
//    "engram_prefetch" (Engram models only): {"prefill"|"decode": {"lookups" (all repetitions),
//                "lookup_seconds", "wait_seconds" (per repetition), "hidden_fraction"}}: the
//                lookups the backend ran ahead of their layers and how long the layers waited
//                for them (Backend::engram_prefetch_stats; zeros where a backend does not measure)}
#pragma once

#include <boost/json.hpp>
#include <cstdint>
#include <string>

#include "comm/timing_comm.h"
#include "model/model.h"

namespace dsv4::bench {

struct ModelBenchOptions {
  int64_t prompt = 512;   // prefill tokens
  int64_t decode = 16;    // decode steps after it
  int64_t chunk = 512;    // prefill chunk
  int repetitions = 3;
  uint64_t seed = 0;
};

// Runs the benchmark on every rank of `world` (the TimingComm the backend was built on; a
// one-rank run passes a TimingComm over a LocalComm). Returns the JSON object (the same on
// every rank). InputError on bad options.
boost::json::object run_model_bench(Model& model, comm::TimingComm& world, const ModelBenchOptions& o);

// A short human-readable table of the result.
std::string model_bench_table(const boost::json::object& r);

}  // namespace dsv4::bench
