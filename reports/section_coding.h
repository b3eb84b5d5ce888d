// The report's coding section, from dsv4.eval.results files of the coding suite (tasks[].summary,
// evals/coding/coding_task.h): per run the model heading, a pass@k table overall and per
// language (pass@1/10/100 by the unbiased estimator, "n/a" where k > n) with the failure
// classes counted apart (wrong answers, timeouts, sandbox kills, sandbox errors), a pass@k-vs-k
// chart per language, and the per-problem table (n, c, pass@1, its failure classes).
// summary.json gets "coding": per run and scope the pass@k and the class counts.
#pragma once

#include <boost/json.hpp>

#include "reports/inputs.h"
#include "reports/report.h"

namespace dsv4::report {

// The run has a coding summary.
bool has_coding(const EvalRun& run);

Section coding(const Inputs& in, boost::json::object& summary);

}  // namespace dsv4::report
