// The report's degradation section: what happens inside the model as the context grows, per
// eval run that carries per-metric aggregates (the degradation suite's results.json, tasks
// niah_multikey and layer_trace; evals/degradation/layer_trace.h defines the metrics).
//
// Per run: a heading naming the model (dir, backend, numerics, checkpoint hash; probes labelled
// "mechanism probe" with their knobs), one table with a row per length bin, and its own set of
// figures (x = context, log axis at the power-of-two bins, 95 % CI bands):
//   <tag>_agreement     recall (niah_multikey), top-1 agreement, indexer recall per CSA layer (0..1)
//   <tag>_drift         logits and attention relative error vs the fp64 reference (log y)
//   <tag>_needle_mass   the retrieval layer's needle mass: deployment, fp64, predicted
//   <tag>_kv            KV cache bytes after the prompt (log y, binary units)
//   <tag>_prefill       prefill tokens/s
// with <tag> = deg<index of the run among the inputs' eval runs>. Probe and real-model runs are
// never drawn on the same axes. summary.json gets "degradation": per run the table's numbers.
#pragma once

#include <boost/json.hpp>

#include "reports/inputs.h"
#include "reports/report.h"

namespace dsv4::report {

// The run belongs in the section: suite "degradation", or a task with metrics_by_length
// (except coding runs, whose per-sample metrics are run classes: the coding section).
bool has_degradation(const EvalRun& run);

Section degradation(const Inputs& in, boost::json::object& summary);

}  // namespace dsv4::report
