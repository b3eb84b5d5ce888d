// What each answer of an eval run costs (`dsv4 eval cost RUN --prices FILE --price NAME`,
// docs/evals.md "Cost").
//
// A price table is a user-written, dated JSON file:
//   {"kind": "dsv4.prices", "schema_version": 1, "date": "YYYY-MM-DD", "source": "where the
//    numbers come from", "currency": "USD",
//    "prices": {"NAME": {"input_per_mtok": X, "cached_input_per_mtok": Y, "output_per_mtok": Z},
//               "NAME2": {"per_gpu_hour": R, "gpus": G}}}
// Token pricing (an API): cost = ((prompt - cached) X + cached Y + completion Z) / 10^6, with
// Y = X when the table has no cached price; reasoning tokens are part of completion (as the
// OpenAI usage reports them). Time pricing (our engine, or a rented server): cost = model
// seconds x G x R / 3600. evals/prices.example.json is a clearly dated example.
//
// Costing is a pure function of a finished run's samples and one price entry, so a run can be
// priced again when prices change; the result is RUN/cost.json ("kind": "dsv4.eval.cost").
#pragma once

#include <boost/json.hpp>
#include <map>
#include <string>

#include "evals/results.h"

namespace dsv4::evals {

struct Price {
  std::string name;
  bool per_token = true;
  double input_per_mtok = 0, cached_input_per_mtok = 0, output_per_mtok = 0;  // per_token
  double per_gpu_hour = 0;                                                    // time pricing
  int64_t gpus = 1;
};

struct PriceTable {
  std::string path, date, source, currency;
  std::map<std::string, Price> prices;
  const Price& at(const std::string& name) const;  // InputError listing the known names
};

// Reads and validates a price table; InputError naming the file and the field.
PriceTable read_prices(const std::string& path);

// The cost of one sample under a price, in the table's currency.
double sample_cost(const Price& p, const SampleRecord& r);

// The cost document of a finished run (results.json + samples.jsonl, evals/compare.h
// read_run): per task and length bin the samples, total and per-sample cost, the mean score
// and score per unit of currency; the run's total.
boost::json::object cost_document(const std::string& run_dir, const std::vector<SampleRecord>& samples,
                                  const PriceTable& t, const Price& p);

// A plain-text table of a cost document.
std::string cost_table(const boost::json::object& doc);

}  // namespace dsv4::evals
