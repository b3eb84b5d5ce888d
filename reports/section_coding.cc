#include "reports/section_coding.h"

#include <fmt/core.h>

#include <algorithm>

#include "reports/blocks.h"
#include "reports/svg.h"

namespace dsv4::report {

namespace json = boost::json;

namespace {

std::string pass_text(double v) { return v < 0 ? "n/a" : fmt::format("{:.3f}", v); }

json::value pass_json(double v) { return v < 0 ? json::value(nullptr) : json::value(v); }

}  // namespace

bool has_coding(const EvalRun& run) {
  return std::any_of(run.tasks.begin(), run.tasks.end(), [](const EvalTask& t) { return t.coding.has_value(); });
}

Section coding(const Inputs& in, json::object& summary) {
  Section s{"coding", "Coding", {}};
  s.blocks.push_back(text(
      "Functional correctness of generated code (`dsv4 eval --suite coding`, docs/coding.md): each completion runs "
      "against the problem's hidden tests in its own sandboxed process; pass@k is the unbiased estimator "
      "1 − C(n−c, k)/C(n, k) averaged over problems (n/a where k > n). Timeouts and sandbox kills are counted apart "
      "from wrong answers."));
  json::array out;
  int fig = 0;
  for (const EvalRun& run : in.evals)
    for (const EvalTask& t : run.tasks) {
      if (!t.coding) continue;
      const CodingSummary& c = *t.coding;
      s.blocks.push_back(text(fmt::format("**{}** (v{}) on `{}` ({}{}), from `{}`.", t.name, t.version, run.model_dir,
                                          run.backend, run.numerics.empty() ? "" : ", " + run.numerics,
                                          short_file(run.file))));
      Table agg{{"scope", "problems", "samples", "pass@1", "pass@10", "pass@100", "wrong", "timeouts", "sandbox kills",
                 "sandbox errors"},
                {},
                {false, true, true, true, true, true, true, true, true, true}};
      json::object scopes;
      Chart ch;
      ch.title = "pass@k against k (" + t.name + ")";
      ch.x.label = "k (samples allowed)";
      ch.x.scale = Scale::Log10;
      ch.x.ticks = {1, 10, 100};
      ch.y.label = "pass@k";
      ch.y.min = 0, ch.y.max = 1;
      for (const CodingAggregate& a : c.aggregates) {
        agg.rows.push_back({a.scope, fmt::format("{:.0f}", a.problems), fmt::format("{:.0f}", a.samples), pass_text(a.pass.pass1),
                            pass_text(a.pass.pass10), pass_text(a.pass.pass100), fmt::format("{:.0f}", a.wrong),
                            fmt::format("{:.0f}", a.timeouts), fmt::format("{:.0f}", a.kills), fmt::format("{:.0f}", a.errors)});
        scopes[a.scope] = json::object{{"pass@1", pass_json(a.pass.pass1)},   {"pass@10", pass_json(a.pass.pass10)},
                                       {"pass@100", pass_json(a.pass.pass100)}, {"wrong_answers", a.wrong},
                                       {"timeouts", a.timeouts},               {"sandbox_kills", a.kills},
                                       {"sandbox_errors", a.errors}};
        Series sr;
        sr.name = a.scope;
        const double ks[] = {1, 10, 100}, vs[] = {a.pass.pass1, a.pass.pass10, a.pass.pass100};
        for (int i = 0; i < 3; ++i)
          if (vs[i] >= 0) sr.x.push_back(ks[i]), sr.y.push_back(vs[i]);
        if (!sr.x.empty()) ch.series.push_back(std::move(sr));
      }
      s.blocks.push_back(table(std::move(agg)));
      if (!ch.series.empty())
        s.blocks.push_back(figure(fmt::format("coding{}_pass_at_k", fig++), "pass@k against k, overall and per language.",
                                  render_svg(ch)));
      Table per{{"problem", "language", "n", "c", "pass@1", "failure classes"}, {}, {false, false, true, true, true, false}};
      for (const CodingProblem& p : c.problems) {
        std::string classes;
        for (const auto& [cls, k] : p.classes)
          if (cls != "passed" && k > 0) classes += (classes.empty() ? "" : ", ") + fmt::format("{} {:.0f}", cls, k);
        per.rows.push_back({p.task_id, p.language, fmt::format("{:.0f}", p.n), fmt::format("{:.0f}", p.c),
                            pass_text(p.pass.pass1), classes.empty() ? "-" : classes});
      }
      s.blocks.push_back(table(std::move(per)));
      out.push_back(json::object{{"file", run.file}, {"task", t.name}, {"model", run.model_dir}, {"scopes", scopes}});
    }
  summary["coding"] = std::move(out);
  return s;
}

}  // namespace dsv4::report
