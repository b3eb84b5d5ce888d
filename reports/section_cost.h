// The report's cost section, from `dsv4 eval cost` documents (RUN/cost.json, kind
// dsv4.eval.cost, evals/cost.h): per priced run and task x length bin the cost per sample, the
// mean score and score per unit of currency; a cost-vs-accuracy scatter (one point per run and
// task: the sample-weighted mean over its bins; x on a log axis; one chart per currency); and
// "cost to reach accuracy X" per task (the cheapest priced run whose mean reaches X, for X in
// kAccuracyTargets). Every price is shown with its table's date and source.
// summary.json gets "cost": per run the price, the total and the per-task points.
#pragma once

#include <boost/json.hpp>

#include "reports/inputs.h"
#include "reports/report.h"

namespace dsv4::report {

inline constexpr double kAccuracyTargets[] = {0.5, 0.9};

Section cost(const Inputs& in, boost::json::object& summary);

}  // namespace dsv4::report
