// `dsv4 report RESULTS... --out DIR`: reports/report.h.
#pragma once

#include <string>
#include <vector>

namespace dsv4::cli {

struct ReportArgs {
  std::vector<std::string> inputs;  // result files or folders
  std::string out = "results/report";
};

// 0 on success; 2 on bad input (a message naming the file and field on stderr).
int report_command(const ReportArgs& a);

}  // namespace dsv4::cli
