// `dsv4 report`: result files -> report.md, index.html, summary.json (+ figures/*.svg).
//
// The report is a list of sections, each built only when its inputs exist (reports/inputs.h):
//   reproduction   the paper's efficiency claims (dsv4.kv_claims, dsv4.flops_claims): the claims
//                  table (ours, paper, difference, convention) and the KV-per-sequence and
//                  decode-FLOPs-per-token curves over 4K..1M on log axes
//   kernels        the correctness status per op and backend (dsv4.ops, `dsv4 op --list --json`);
//                  per dsv4.bench run: the per-op table (time, GFLOP/s, GB/s, share of the
//                  same-run ceiling, target), a roofline chart and the V4 speedups vs context
//   recall         dsv4.eval.results of the recall suite: per task the length table (mean, 95 % CI,
//                  noise floors, tokens/s), the score-vs-length chart, the depth x length heatmap
//                  and the compression-geometry table; probes labelled with their knobs
//   degradation    dsv4.eval.results of the degradation suite (or any with metrics_by_length):
//                  per run a length table and its own figures (reports/section_degradation.h)
//   coding         dsv4.eval.results of the coding suite: pass@k overall and per language, failure
//                  classes, per-problem table (reports/section_coding.h)
//   comparison     dsv4.eval.compare: paired differences of eval runs per length bin, the exact
//                  test and the verdict (reports/section_compare.h)
//   cost           dsv4.eval.cost: cost per sample against accuracy, cost to reach accuracy X
//                  (reports/section_cost.h)
//   regression     dsv4.bench.compare: faster / slower / no clear difference per benchmark
//   provenance     the files read, the benchmark machine, the report's build revision
// Each section renders to Markdown (figures linked as figures/<id>.svg) and to HTML (figures
// inlined: one self-contained page, no external resources, no scripts).
#pragma once

#include <boost/json.hpp>
#include <string>
#include <vector>

#include "reports/inputs.h"

namespace dsv4::report {

struct Table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  std::vector<bool> numeric;  // per column: right-aligned
};

struct Figure {
  std::string id;       // file stem: figures/<id>.svg
  std::string caption;  // one sentence: what is plotted, units
  std::string svg;
};

struct Block {
  enum Kind { Text, TableBlock, FigureBlock } kind = Text;
  std::string text;  // Text: one paragraph (Markdown inline syntax: `code`, **bold**)
  Table table;
  Figure figure;
};

struct Section {
  std::string id, title;
  std::vector<Block> blocks;
};

struct Report {
  std::string title;
  std::vector<Section> sections;
  boost::json::object summary;  // summary.json
};

// Builds every section whose inputs exist. `generated_at` is an ISO date-time string.
Report build_report(const Inputs& in, const std::string& generated_at);

std::string render_markdown(const Report& r);
std::string render_html(const Report& r);

// Writes DIR/report.md, DIR/index.html, DIR/summary.json and DIR/figures/*.svg: everything is
// written to a temporary folder inside DIR first, then moved into place, so a failure leaves
// the previous report (if any) as it was. Throws InputError when DIR cannot be written.
void write_report(const Report& r, const std::string& dir);

// The git revision this binary was built from ("unknown" outside a git checkout).
std::string build_revision();

}  // namespace dsv4::report
