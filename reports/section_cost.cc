#include "reports/section_cost.h"

#include <fmt/core.h>

#include <map>

#include "reports/blocks.h"
#include "reports/svg.h"

namespace dsv4::report {

namespace json = boost::json;

namespace {

// One run's overall point for a task: sample-weighted means over its bins.
struct Point {
  double n = 0, cost = 0, score = 0;  // sums: n, n x cost per sample, n x mean score
  double cost_per_sample() const { return cost / n; }
  double mean() const { return score / n; }
};

std::string run_name(const RunCost& c) { return short_file(c.file).substr(0, short_file(c.file).find('/')); }

}  // namespace

Section cost(const Inputs& in, json::object& summary) {
  Section s{"cost", "Cost against accuracy", {}};
  Table t{{"run", "price (as of)", "task", "context", "n", "cost / sample", "mean score", "score per unit"},
          {},
          {false, false, false, true, true, true, true, true}};
  std::map<std::string, std::map<std::string, std::map<std::string, Point>>> points;  // currency -> run -> task
  json::array out;
  for (const RunCost& c : in.costs) {
    s.blocks.push_back(text(fmt::format("`{}` priced as **{}** ({} as of {}; source: {}): total {:.6g} {}.", c.run, c.price,
                                        c.currency, c.date, c.source, c.total, c.currency)));
    json::object tasks;
    for (const CostRow& r : c.rows) {
      t.rows.push_back({run_name(c), fmt::format("{} ({})", c.price, c.date), r.task, tokens_label(r.length),
                        fmt::format("{:.0f}", r.n), fmt::format("{:.4g} {}", r.cost_per_sample, c.currency),
                        fmt::format("{:.3f}", r.mean_score),
                        r.cost_per_sample > 0 ? fmt::format("{:.4g}", r.mean_score / r.cost_per_sample) : "n/a"});
      Point& p = points[c.currency][run_name(c) + " · " + c.price][r.task];
      p.n += r.n;
      p.cost += r.n * r.cost_per_sample;
      p.score += r.n * r.mean_score;
    }
    for (const auto& [task, p] : points[c.currency][run_name(c) + " · " + c.price])
      tasks[task] = json::object{{"cost_per_sample", p.cost_per_sample()}, {"mean_score", p.mean()}, {"n", p.n}};
    out.push_back(json::object{{"file", c.file}, {"run", c.run}, {"price", c.price}, {"date", c.date},
                               {"currency", c.currency}, {"total", c.total}, {"tasks", tasks}});
  }
  s.blocks.push_back(table(std::move(t)));
  int chart = 0;
  for (const auto& [currency, runs] : points) {
    Chart ch;
    ch.title = "Accuracy against cost per sample (" + currency + "; one point per run and task)";
    ch.x.label = "cost per sample (" + currency + ")";
    ch.x.scale = Scale::Log10;
    ch.y.label = "mean score";
    ch.y.min = 0, ch.y.max = 1;
    bool drawable = true;
    for (const auto& [run, tasks] : runs) {
      Series sr;
      sr.name = run;
      sr.line = false;
      for (const auto& [task, p] : tasks) {
        drawable = drawable && p.cost_per_sample() > 0;
        sr.x.push_back(p.cost_per_sample());
        sr.y.push_back(p.mean());
      }
      ch.series.push_back(std::move(sr));
    }
    if (drawable)
      s.blocks.push_back(figure(fmt::format("cost{}_accuracy", chart++),
                                "Mean score against cost per sample, one point per priced run and task (log x).",
                                render_svg(ch)));
    else
      s.blocks.push_back(text("A run costs nothing per sample under its price (" + currency +
                              "): the cost axis is logarithmic, so no chart."));
    // Cost to reach accuracy X: the cheapest run per task whose mean reaches X.
    std::map<std::string, std::map<std::string, Point>> by_task;
    for (const auto& [run, tasks] : runs)
      for (const auto& [task, p] : tasks) by_task[task][run] = p;
    for (const auto& [task, rs] : by_task)
      for (double x : kAccuracyTargets) {
        const std::pair<const std::string, Point>* best = nullptr;
        for (const auto& e : rs)
          if (e.second.mean() >= x && (!best || e.second.cost_per_sample() < best->second.cost_per_sample())) best = &e;
        s.blocks.push_back(text(best ? fmt::format("Cost to reach accuracy {:g} on {}: {:.4g} {} per sample (`{}`).", x, task,
                                                   best->second.cost_per_sample(), currency, best->first)
                                     : fmt::format("Cost to reach accuracy {:g} on {}: no priced run reaches it.", x, task)));
      }
  }
  summary["cost"] = std::move(out);
  return s;
}

}  // namespace dsv4::report
