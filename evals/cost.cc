#include "evals/cost.h"

#include <fmt/core.h>

#include <cmath>
#include <fstream>
#include <regex>
#include <sstream>

#include "reference/errors.h"

namespace dsv4::evals {

namespace json = boost::json;

namespace {

constexpr double kPerMillion = 1e6;
constexpr double kSecondsPerHour = 3600;

double non_negative(const json::object& o, const char* key, const std::string& where, bool required) {
  const json::value* v = o.if_contains(key);
  if (!v) {
    if (required) throw InputError(where + "." + key + ": missing");
    return -1;
  }
  if (!v->is_number() || !std::isfinite(v->to_number<double>()) || v->to_number<double>() < 0)
    throw InputError(where + "." + key + ": expected a non-negative number");
  return v->to_number<double>();
}

std::string text(const json::object& o, const char* key, const std::string& where) {
  const json::value* v = o.if_contains(key);
  if (!v || !v->is_string() || v->as_string().empty()) throw InputError(where + "." + key + ": expected a non-empty string");
  return std::string(v->as_string());
}

}  // namespace

const Price& PriceTable::at(const std::string& name) const {
  const auto it = prices.find(name);
  if (it != prices.end()) return it->second;
  std::string known;
  for (const auto& [k, v] : prices) known += (known.empty() ? "" : ", ") + k;
  throw InputError(path + ": no price named '" + name + "' (known: " + known + ")");
}

PriceTable read_prices(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError("--prices: cannot read '" + path + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  boost::system::error_code ec;
  const json::value v = json::parse(ss.str(), ec);
  if (ec || !v.is_object()) throw InputError(path + ": not a JSON object");
  const json::object& o = v.as_object();
  const json::value* kind = o.if_contains("kind");
  if (!kind || !kind->is_string() || kind->as_string() != "dsv4.prices")
    throw InputError(path + ": kind: expected \"dsv4.prices\"");
  PriceTable t;
  t.path = path;
  t.date = text(o, "date", path);
  if (!std::regex_match(t.date, std::regex(R"(\d{4}-\d{2}-\d{2})")))
    throw InputError(path + ".date: expected YYYY-MM-DD (when these prices were read)");
  t.source = text(o, "source", path);
  t.currency = text(o, "currency", path);
  const json::value* ps = o.if_contains("prices");
  if (!ps || !ps->is_object() || ps->as_object().empty()) throw InputError(path + ".prices: expected a non-empty object");
  for (const auto& [name, pv] : ps->as_object()) {
    const std::string where = path + ".prices." + std::string(name);
    if (!pv.is_object()) throw InputError(where + ": expected an object");
    const json::object& po = pv.as_object();
    Price p;
    p.name = std::string(name);
    if (po.contains("per_gpu_hour")) {
      p.per_token = false;
      p.per_gpu_hour = non_negative(po, "per_gpu_hour", where, true);
      const double g = non_negative(po, "gpus", where, false);
      if (g >= 0 && (g < 1 || g != std::floor(g))) throw InputError(where + ".gpus: expected a positive integer");
      p.gpus = g < 0 ? 1 : int64_t(g);
      if (po.contains("input_per_mtok") || po.contains("output_per_mtok"))
        throw InputError(where + ": either per-token prices or per_gpu_hour, not both");
    } else {
      p.input_per_mtok = non_negative(po, "input_per_mtok", where, true);
      p.output_per_mtok = non_negative(po, "output_per_mtok", where, true);
      const double c = non_negative(po, "cached_input_per_mtok", where, false);
      p.cached_input_per_mtok = c < 0 ? p.input_per_mtok : c;
    }
    t.prices.emplace(p.name, p);
  }
  return t;
}

double sample_cost(const Price& p, const SampleRecord& r) {
  if (!p.per_token) return r.seconds * double(p.gpus) * p.per_gpu_hour / kSecondsPerHour;
  const double cached = double(std::min(r.cached_prompt_tokens, r.prompt_tokens));
  return ((double(r.prompt_tokens) - cached) * p.input_per_mtok + cached * p.cached_input_per_mtok +
          double(r.completion_tokens) * p.output_per_mtok) /
         kPerMillion;
}

json::object cost_document(const std::string& run_dir, const std::vector<SampleRecord>& samples, const PriceTable& t,
                           const Price& p) {
  struct Bin {
    int64_t n = 0, prompt = 0, cached = 0, completion = 0;
    double cost = 0, score = 0, seconds = 0;
  };
  std::map<std::string, std::map<int64_t, Bin>> bins;
  double total = 0;
  for (const SampleRecord& r : samples) {
    Bin& b = bins[r.task][r.length];
    const double c = sample_cost(p, r);
    ++b.n;
    b.prompt += r.prompt_tokens;
    b.cached += r.cached_prompt_tokens;
    b.completion += r.completion_tokens;
    b.cost += c;
    b.score += r.score;
    b.seconds += r.seconds;
    total += c;
  }
  json::array tasks;
  for (const auto& [task, by_len] : bins) {
    json::array rows;
    for (const auto& [L, b] : by_len) {
      const double mean = b.score / double(b.n), per = b.cost / double(b.n);
      rows.push_back(json::object{{"length", L},
                                  {"n", b.n},
                                  {"prompt_tokens", b.prompt},
                                  {"cached_prompt_tokens", b.cached},
                                  {"completion_tokens", b.completion},
                                  {"model_seconds", b.seconds},
                                  {"cost_total", b.cost},
                                  {"cost_per_sample", per},
                                  {"mean_score", mean},
                                  {"score_per_currency_unit", per > 0 ? json::value(mean / per) : json::value(nullptr)}});
    }
    tasks.push_back(json::object{{"name", task}, {"by_length", rows}});
  }
  json::object price{{"name", p.name}, {"table", t.path}, {"date", t.date}, {"source", t.source}, {"currency", t.currency}};
  if (p.per_token) {
    price["input_per_mtok"] = p.input_per_mtok;
    price["cached_input_per_mtok"] = p.cached_input_per_mtok;
    price["output_per_mtok"] = p.output_per_mtok;
  } else {
    price["per_gpu_hour"] = p.per_gpu_hour;
    price["gpus"] = p.gpus;
  }
  return {{"kind", "dsv4.eval.cost"},
          {"schema_version", 1},
          {"run", run_dir},
          {"price", price},
          {"rule", p.per_token ? "((prompt - cached) input + cached cached_input + completion output) / 1e6"
                               : "model seconds x gpus x per_gpu_hour / 3600"},
          {"samples", int64_t(samples.size())},
          {"total", total},
          {"tasks", tasks}};
}

std::string cost_table(const json::object& doc) {
  const auto& price = doc.at("price").as_object();
  const std::string cur(price.at("currency").as_string());
  std::string s = fmt::format("{}: price '{}' ({} as of {}, {}) -> total {:.6g} {}\n", std::string(doc.at("run").as_string()),
                              std::string(price.at("name").as_string()), std::string(price.at("table").as_string()),
                              std::string(price.at("date").as_string()), std::string(price.at("source").as_string()),
                              doc.at("total").to_number<double>(), cur);
  s += fmt::format("  {:<18} {:>8} {:>4} {:>12} {:>12} {:>14} {:>10} {:>16}\n", "task", "length", "n", "prompt tok",
                   "compl. tok", "cost/sample", "mean", "score per " + cur);
  for (const auto& tv : doc.at("tasks").as_array())
    for (const auto& rv : tv.as_object().at("by_length").as_array()) {
      const auto& r = rv.as_object();
      const auto& spc = r.at("score_per_currency_unit");
      s += fmt::format("  {:<18} {:>8} {:>4} {:>12} {:>12} {:>14.6g} {:>10.3f} {:>16}\n",
                       std::string(tv.as_object().at("name").as_string()), r.at("length").as_int64(), r.at("n").as_int64(),
                       r.at("prompt_tokens").as_int64(), r.at("completion_tokens").as_int64(),
                       r.at("cost_per_sample").to_number<double>(), r.at("mean_score").to_number<double>(),
                       spc.is_null() ? std::string("n/a") : fmt::format("{:.6g}", spc.to_number<double>()));
    }
  return s;
}

}  // namespace dsv4::evals
