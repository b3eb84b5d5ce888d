// The report's model-comparison section, from `dsv4 eval compare --out FILE` documents
// (kind dsv4.eval.compare, evals/compare.h): per comparison of run A with run B, one table with a
// row per task x length bin (each run's mean with its 95 % CI, the paired difference A - B with
// its paired-bootstrap CI, the exact test and its p, the verdict) and one figure of the paired
// difference against context (a CI band per task, the zero line for "no difference").
// summary.json gets "comparison": per comparison the runs and the verdict counts.
#pragma once

#include <boost/json.hpp>

#include "reports/inputs.h"
#include "reports/report.h"

namespace dsv4::report {

Section comparison(const Inputs& in, boost::json::object& summary);

}  // namespace dsv4::report
