#include "reports/section_compare.h"

#include <fmt/core.h>

#include <map>
#include <set>

#include "reports/blocks.h"
#include "reports/svg.h"

namespace dsv4::report {

namespace json = boost::json;

namespace {

std::string mean_ci(double m, double lo, double hi) { return fmt::format("{:.3f} [{:.3f}, {:.3f}]", m, lo, hi); }

}  // namespace

Section comparison(const Inputs& in, json::object& summary) {
  Section s{"comparison", "Model comparisons", {}};
  s.blocks.push_back(text(
      "Paired comparisons of runs on the same items (`dsv4 eval compare`): every sample of run A is matched with its "
      "twin in run B (same task, generator version, length, cell, index and prompt). A − B is the paired difference with "
      "a bootstrap interval over the pairs; the exact test (McNemar for 0/1 scores, the sign test otherwise) decides "
      "the verdict."));
  json::array out;
  for (size_t ci = 0; ci < in.comparisons.size(); ++ci) {
    const EvalComparison& c = in.comparisons[ci];
    s.blocks.push_back(text(fmt::format("**A** = `{}`, **B** = `{}` (from `{}`).", c.a_model, c.b_model, short_file(c.file))));
    Table t{{"task", "context", "n", "A mean [95 % CI]", "B mean [95 % CI]", "A − B [95 % CI]", "test", "p", "verdict"},
            {},
            {false, true, true, true, true, true, false, true, false}};
    std::map<std::string, int> verdicts;
    std::map<std::string, Series> by_task;
    std::set<double> contexts;
    for (const PairedRow& r : c.rows) {
      t.rows.push_back({r.task, tokens_label(r.length), fmt::format("{:.0f}", r.n), mean_ci(r.a, r.a_lo, r.a_hi),
                        mean_ci(r.b, r.b_lo, r.b_hi), mean_ci(r.diff, r.diff_lo, r.diff_hi), r.test,
                        fmt::format("{:.3g}", r.p), r.verdict == "no clear difference" ? r.verdict : "**" + r.verdict + "**"});
      ++verdicts[r.verdict];
      Series& sr = by_task[r.task];
      sr.name = r.task + " (A − B)";
      sr.x.push_back(r.length);
      sr.y.push_back(r.diff);
      sr.lo.push_back(r.diff_lo);
      sr.hi.push_back(r.diff_hi);
      contexts.insert(r.length);
    }
    s.blocks.push_back(table(std::move(t)));
    if (!c.rows.empty()) {
      Chart ch;
      ch.title = "Paired difference A − B per length bin (95 % CI band)";
      ch.x = context_axis(std::vector<double>(contexts.begin(), contexts.end()));
      ch.y.label = "score difference A − B";
      ch.y.include_zero = true;
      for (auto& [task, sr] : by_task) ch.series.push_back(std::move(sr));
      ch.hlines.push_back({"no difference", 0.0});
      const std::string id = fmt::format("cmp{}_diff", ci);
      s.blocks.push_back(figure(id, "Paired score difference A − B against context, one band per task.", render_svg(ch)));
    }
    json::object o{{"file", c.file}, {"a", c.a}, {"b", c.b}};
    for (const auto& [k, v] : verdicts) o[k] = v;
    out.push_back(std::move(o));
  }
  summary["comparison"] = std::move(out);
  return s;
}

}  // namespace dsv4::report
