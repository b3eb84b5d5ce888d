// The report's multi-rank section, from `dsv4 bench --model DIR [--tp T --ep E]` documents
// (model_bench.json, kind dsv4.bench.model, bench/model_bench.h): one row per run with its
// layout (ranks, tp x ep, transport), median prefill tokens/s and decode ms per token, and the
// largest share of each phase any rank spent inside collectives; when several runs of one
// config are given, each run's decode speedup over that config's one-rank run.
// summary.json gets "multirank": the rows.
#pragma once

#include <boost/json.hpp>

#include "reports/inputs.h"
#include "reports/report.h"

namespace dsv4::report {

Section multirank(const Inputs& in, boost::json::object& summary);

}  // namespace dsv4::report
