#include "cli/report_cmd.h"

#include <fmt/core.h>

#include <chrono>
#include <ctime>

#include "reference/errors.h"
#include "reports/inputs.h"
#include "reports/report.h"

namespace dsv4::cli {

namespace {

std::string now_iso() {
  const std::time_t t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace

int report_command(const ReportArgs& a) {
  try {
    const report::Inputs in = report::load_inputs(a.inputs);
    if (in.used.empty())
      throw InputError("no result files found in the given paths (looked for dsv4.kv_claims, dsv4.flops_claims, "
                       "dsv4.bench, dsv4.bench.compare, dsv4.eval.results and dsv4.ops JSON files)");
    const report::Report r = report::build_report(in, now_iso());
    report::write_report(r, a.out);
    std::string sections;
    for (const auto& s : r.sections) sections += (sections.empty() ? "" : ", ") + s.id;
    fmt::print("dsv4 report: {} input file{} -> {}/index.html, report.md, summary.json (sections: {})\n", in.used.size(),
               in.used.size() == 1 ? "" : "s", a.out, sections);
    return 0;
  } catch (const InputError& e) {
    fmt::print(stderr, "dsv4 report: {}\n", e.what());
    return 2;
  }
}

}  // namespace dsv4::cli
