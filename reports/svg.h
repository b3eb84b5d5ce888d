// A small SVG chart writer for the reports: line/scatter charts on linear or log10 axes, with
// optional confidence bands, horizontal reference lines (ceilings, noise floors), a legend,
// axis labels with units, and the Okabe-Ito colour-blind-safe palette.
//
// Why our own: the report must be one self-contained page that opens offline, with no script
// fetched from anywhere; Debian's plotting libraries are Python/JS/gnuplot programs the product
// must not need. The subset needed here (axes, ticks, polylines, markers, bands, heatmap
// cells) is ~300 lines and is tested (tests/reports/test_svg.cc).
//
// Every data point is drawn with data-series / data-x / data-y attributes holding the exact
// values, and a <title> tooltip, so tests (and curious readers) can read the numbers back.
#pragma once

#include <functional>
#include <string>
#include <vector>

namespace dsv4::report {

enum class Scale { Linear, Log10 };

struct Axis {
  std::string label;  // with the unit, e.g. "context (tokens)"
  Scale scale = Scale::Linear;
  std::vector<double> ticks;                    // empty: chosen from the data range
  std::function<std::string(double)> format;    // tick label; empty: compact number
  double min = 0, max = 0;                      // min < max: fixed range (else from the data)
  bool include_zero = false;                    // linear axes: extend the range to 0
};

struct Series {
  std::string name;
  std::vector<double> x, y;
  std::vector<double> lo, hi;  // optional confidence band (same length as y)
  bool line = true;            // false: markers only (scatter)
  int color = -1;              // palette index; -1: the series' position
  bool reference = false;      // a reference curve (a roof, a model prediction): dark grey,
                               // dashed, no markers; still listed in the legend
};

struct RefLine {
  std::string label;
  double y = 0;
};

struct Chart {
  std::string title;
  Axis x, y;
  std::vector<Series> series;
  std::vector<RefLine> hlines;
  int width = 720, height = 400;
};

// Colour-blind-safe palette (Okabe & Ito 2008), black excluded.
const std::vector<std::string>& palette();

// The chart as one <svg> element (no XML declaration: it is inlined into HTML). Throws
// std::invalid_argument on a non-positive value on a log axis or mismatched series lengths.
std::string render_svg(const Chart& c);

// A heatmap: rows x cols cells coloured by value in [vmin, vmax] (a sequential, colour-blind-
// safe ramp), NaN cells grey; each cell carries data-row / data-col / data-v.
struct Heatmap {
  std::string title, x_label, y_label;
  std::vector<std::string> cols, rows;
  std::vector<std::vector<double>> v;  // [rows][cols]
  double vmin = 0, vmax = 1;
  int cell = 36;
};
std::string render_heatmap(const Heatmap& h);

// Tick labels: 4096 -> "4K", 1048576 -> "1M" (powers of 1024); 0.25 -> "0.25"; 1.5e11 -> "150G".
std::string tokens_label(double v);
std::string compact_number(double v);

// &, <, >, " escaped.
std::string xml_escape(const std::string& s);

}  // namespace dsv4::report
