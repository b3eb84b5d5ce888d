// Small builders shared by the report's sections (reports/report.cc and the section_*.cc files):
// a paragraph, a table or a figure as a Block, the context-length axis, a short file name.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

#include "reports/report.h"
#include "reports/svg.h"

namespace dsv4::report {

inline Block text(std::string s) {
  Block b;
  b.text = std::move(s);
  return b;
}

inline Block table(Table t) {
  Block b;
  b.kind = Block::TableBlock;
  b.table = std::move(t);
  return b;
}

inline Block figure(std::string id, std::string caption, std::string svg) {
  Block b;
  b.kind = Block::FigureBlock;
  b.figure = {std::move(id), std::move(caption), std::move(svg)};
  return b;
}

// Context length on a logarithmic axis, ticks at the given contexts labelled 4K ... 1M (the
// bins are powers of two, so this reads as a log2 axis).
inline Axis context_axis(const std::vector<double>& contexts) {
  Axis a;
  a.label = "context (tokens)";
  a.scale = Scale::Log10;
  a.ticks = contexts;
  a.format = tokens_label;
  return a;
}

// "run/results.json": the file with its parent folder, enough to tell runs apart.
inline std::string short_file(const std::string& f) {
  namespace fs = std::filesystem;
  return fs::path(f).parent_path().filename().string() + "/" + fs::path(f).filename().string();
}

}  // namespace dsv4::report
