#include "reports/svg.h"

#include <fmt/core.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

namespace dsv4::report {

namespace {

// Plot area margins (pixels): room for tick labels and axis titles on the left and bottom,
// the title on top, the legend on the right.
constexpr int kLeft = 72, kMinRight = 150, kTop = 34, kBottom = 52;
constexpr double kCharWidth = 6.8;  // average width of a 12 px sans-serif character, for the legend
constexpr int kTargetTicks = 6;  // linear axes: about this many ticks
constexpr const char* kReferenceColour = "#333333";

struct Mapper {
  Scale scale;
  double lo, hi;  // in data units
  double p0, p1;  // pixels
  double t(double v) const { return scale == Scale::Log10 ? std::log10(v) : v; }
  double operator()(double v) const {
    const double a = t(lo), b = t(hi);
    return b == a ? 0.5 * (p0 + p1) : p0 + (t(v) - a) / (b - a) * (p1 - p0);
  }
};

// A 1-2-5 step giving about kTargetTicks ticks over [lo, hi].
double nice_step(double span) {
  const double raw = span / kTargetTicks;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  for (double m : {1.0, 2.0, 5.0, 10.0})
    if (raw <= m * mag) return m * mag;
  return 10 * mag;
}

std::vector<double> auto_ticks(const Axis& a, double lo, double hi) {
  std::vector<double> t;
  if (a.scale == Scale::Log10) {
    const int e0 = int(std::floor(std::log10(lo))), e1 = int(std::ceil(std::log10(hi)));
    const bool dense = e1 - e0 <= 3;  // few decades: 1, 2, 5 of each
    for (int e = e0; e <= e1; ++e)
      for (double m : dense ? std::vector<double>{1, 2, 5} : std::vector<double>{1}) {
        const double v = m * std::pow(10.0, e);
        if (v >= lo * (1 - 1e-9) && v <= hi * (1 + 1e-9)) t.push_back(v);
      }
    return t;
  }
  const double step = nice_step(hi - lo);
  for (double v = std::ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) t.push_back(std::abs(v) < step * 1e-9 ? 0 : v);
  return t;
}

// Data range of an axis over every series (and reference lines for y), padded on linear axes.
std::pair<double, double> range_of(const Axis& a, const std::vector<double>& values) {
  if (a.min < a.max) return {a.min, a.max};
  double lo = std::numeric_limits<double>::infinity(), hi = -lo;
  for (double v : values)
    if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  if (!std::isfinite(lo)) lo = a.scale == Scale::Log10 ? 1 : 0, hi = lo + 1;
  if (a.scale == Scale::Log10) {
    if (lo <= 0) throw std::invalid_argument("svg: log axis '" + a.label + "' has a value <= 0");
    if (hi == lo) lo /= 2, hi *= 2;
    return {std::pow(10.0, std::floor(std::log10(lo) * 4) / 4), std::pow(10.0, std::ceil(std::log10(hi) * 4) / 4)};
  }
  if (a.include_zero) lo = std::min(lo, 0.0), hi = std::max(hi, 0.0);
  if (hi == lo) lo -= 1, hi += 1;
  const double pad = 0.05 * (hi - lo);
  return {a.include_zero && lo == 0 ? 0 : lo - pad, hi + pad};
}

std::string label_of(const Axis& a, double v) { return a.format ? a.format(v) : compact_number(v); }

}  // namespace

const std::vector<std::string>& palette() {
  static const std::vector<std::string> p = {"#0072B2", "#E69F00", "#009E73", "#D55E00",
                                             "#CC79A7", "#56B4E9", "#F0E442"};
  return p;
}

std::string xml_escape(const std::string& s) {
  std::string o;
  for (char c : s) {
    if (c == '&') o += "&amp;";
    else if (c == '<') o += "&lt;";
    else if (c == '>') o += "&gt;";
    else if (c == '"') o += "&quot;";
    else o += c;
  }
  return o;
}

std::string compact_number(double v) {
  if (v == 0) return "0";
  const double a = std::abs(v);
  static const std::pair<double, const char*> units[] = {{1e15, "P"}, {1e12, "T"}, {1e9, "G"}, {1e6, "M"}, {1e3, "k"}};
  for (const auto& [u, s] : units)
    if (a >= u) return fmt::format("{:g}{}", std::round(v / u * 1000) / 1000, s);
  return fmt::format("{:g}", std::round(v * 1e4) / 1e4);
}

std::string tokens_label(double v) {
  if (v >= 1048576 && std::fmod(v, 1048576) == 0) return fmt::format("{:g}M", v / 1048576);
  if (v >= 1024 && std::fmod(v, 1024) == 0) return fmt::format("{:g}K", v / 1024);
  return compact_number(v);
}

std::string render_svg(const Chart& c) {
  std::vector<double> xs, ys;
  for (const auto& s : c.series) {
    if (s.x.size() != s.y.size() || (!s.lo.empty() && s.lo.size() != s.y.size()) || s.lo.size() != s.hi.size())
      throw std::invalid_argument("svg: series '" + s.name + "' has mismatched lengths");
    xs.insert(xs.end(), s.x.begin(), s.x.end());
    ys.insert(ys.end(), s.y.begin(), s.y.end());
    ys.insert(ys.end(), s.lo.begin(), s.lo.end());
    ys.insert(ys.end(), s.hi.begin(), s.hi.end());
  }
  for (const auto& h : c.hlines) ys.push_back(h.y);
  const auto [x0, x1] = range_of(c.x, xs);
  const auto [y0, y1] = range_of(c.y, ys);
  // The legend column is as wide as its longest name; the plot keeps c.width.
  size_t longest = 0;
  for (const auto& s : c.series) longest = std::max(longest, s.name.size());
  const int kRight = std::max(kMinRight, 40 + int(kCharWidth * double(longest)));
  const int W = c.width + std::max(0, kRight - kMinRight), H = c.height;
  const Mapper mx{c.x.scale, x0, x1, double(kLeft), double(W - kRight)};
  const Mapper my{c.y.scale, y0, y1, double(H - kBottom), double(kTop)};
  std::string o = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {} {}\" width=\"{}\" height=\"{}\" role=\"img\" "
      "font-family=\"system-ui, sans-serif\" font-size=\"12\">\n<title>{}</title>\n",
      W, H, W, H, xml_escape(c.title));
  o += fmt::format("<text x=\"{}\" y=\"20\" font-size=\"14\" font-weight=\"600\">{}</text>\n", kLeft, xml_escape(c.title));
  // Grid and ticks.
  const auto xt = c.x.ticks.empty() ? auto_ticks(c.x, x0, x1) : c.x.ticks;
  const auto yt = c.y.ticks.empty() ? auto_ticks(c.y, y0, y1) : c.y.ticks;
  for (double v : xt) {
    if (v < x0 || v > x1) continue;
    const double px = mx(v);
    o += fmt::format("<line x1=\"{:.1f}\" y1=\"{}\" x2=\"{:.1f}\" y2=\"{}\" stroke=\"#ddd\"/>\n", px, kTop, px, H - kBottom);
    o += fmt::format("<text class=\"xtick\" x=\"{:.1f}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", px, H - kBottom + 16,
                     xml_escape(label_of(c.x, v)));
  }
  for (double v : yt) {
    if (v < y0 || v > y1) continue;
    const double py = my(v);
    o += fmt::format("<line x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\" stroke=\"#ddd\"/>\n", kLeft, py, W - kRight, py);
    o += fmt::format("<text class=\"ytick\" x=\"{}\" y=\"{:.1f}\" text-anchor=\"end\">{}</text>\n", kLeft - 6, py + 4,
                     xml_escape(label_of(c.y, v)));
  }
  o += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" fill=\"none\" stroke=\"#444\"/>\n", kLeft, kTop,
                   W - kLeft - kRight, H - kTop - kBottom);
  o += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", (kLeft + W - kRight) / 2, H - 12,
                   xml_escape(c.x.label + (c.x.scale == Scale::Log10 ? " (log scale)" : "")));
  o += fmt::format("<text transform=\"translate(16 {}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
                   (kTop + H - kBottom) / 2, xml_escape(c.y.label + (c.y.scale == Scale::Log10 ? " (log scale)" : "")));
  for (const auto& h : c.hlines) {
    const double py = my(h.y);
    o += fmt::format(
        "<line class=\"ref\" data-y=\"{}\" x1=\"{}\" y1=\"{:.1f}\" x2=\"{}\" y2=\"{:.1f}\" stroke=\"#555\" stroke-dasharray=\"5 4\"/>\n",
        h.y, kLeft, py, W - kRight, py);
    o += fmt::format("<text x=\"{}\" y=\"{:.1f}\" font-size=\"11\" fill=\"#333\" text-anchor=\"end\">{}</text>\n",
                     W - kRight - 4, py - 4, xml_escape(h.label));
  }
  // Series: band, line, markers.
  for (size_t i = 0; i < c.series.size(); ++i) {
    const Series& s = c.series[i];
    const std::string col = s.reference ? std::string(kReferenceColour)
                                        : palette()[size_t(s.color >= 0 ? s.color : int(i)) % palette().size()];
    if (!s.lo.empty() && !s.x.empty()) {
      std::string pts;
      for (size_t k = 0; k < s.x.size(); ++k) pts += fmt::format("{:.1f},{:.1f} ", mx(s.x[k]), my(s.hi[k]));
      for (size_t k = s.x.size(); k-- > 0;) pts += fmt::format("{:.1f},{:.1f} ", mx(s.x[k]), my(s.lo[k]));
      o += fmt::format("<polygon class=\"band\" points=\"{}\" fill=\"{}\" fill-opacity=\"0.18\" stroke=\"none\"/>\n", pts, col);
    }
    if (s.line && s.x.size() > 1) {
      std::string pts;
      for (size_t k = 0; k < s.x.size(); ++k) pts += fmt::format("{:.1f},{:.1f} ", mx(s.x[k]), my(s.y[k]));
      o += fmt::format("<polyline class=\"{}\" points=\"{}\" fill=\"none\" stroke=\"{}\" stroke-width=\"2\"{}/>\n",
                       s.reference ? "refcurve" : "line", pts, col, s.reference ? " stroke-dasharray=\"6 3\"" : "");
    }
    for (size_t k = 0; k < s.x.size() && !s.reference; ++k)
      o += fmt::format(
          "<circle class=\"pt\" data-series=\"{}\" data-x=\"{}\" data-y=\"{}\" cx=\"{:.1f}\" cy=\"{:.1f}\" r=\"3.5\" "
          "fill=\"{}\"><title>{}: {}, {}</title></circle>\n",
          xml_escape(s.name), s.x[k], s.y[k], mx(s.x[k]), my(s.y[k]), col, xml_escape(s.name),
          xml_escape(label_of(c.x, s.x[k])), xml_escape(compact_number(s.y[k])));
    // Legend entry.
    const int ly = kTop + 8 + int(i) * 18;
    if (s.line || s.reference)
      o += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"14\" height=\"4\" fill=\"{}\"/>\n", W - kRight + 8, ly, col);
    else
      o += fmt::format("<circle cx=\"{}\" cy=\"{}\" r=\"3.5\" fill=\"{}\"/>\n", W - kRight + 15, ly + 2, col);
    o += fmt::format("<text class=\"legend\" x=\"{}\" y=\"{}\">{}</text>\n", W - kRight + 28, ly + 6, xml_escape(s.name));
  }
  o += "</svg>\n";
  return o;
}

std::string render_heatmap(const Heatmap& h) {
  if (h.v.size() != h.rows.size()) throw std::invalid_argument("heatmap: row count mismatch");
  for (const auto& r : h.v)
    if (r.size() != h.cols.size()) throw std::invalid_argument("heatmap: column count mismatch");
  const int left = 110, top = 40, C = h.cell;
  // Wide enough for the cells and the colour scale, and for the title.
  const int W = std::max(left + int(h.cols.size()) * C + 90, left + int(kCharWidth * 14 / 12 * double(h.title.size())) + 10);
  const int H = top + int(h.rows.size()) * C + 50;
  // Sequential ramp (light yellow -> dark blue), readable for the common colour deficiencies.
  auto colour = [&](double v) {
    if (!std::isfinite(v)) return std::string("#bbbbbb");
    const double t = std::clamp((v - h.vmin) / (h.vmax - h.vmin), 0.0, 1.0);
    const double a[3] = {255, 247, 188}, b[3] = {37, 52, 148};
    return fmt::format("#{:02x}{:02x}{:02x}", int(a[0] + (b[0] - a[0]) * t), int(a[1] + (b[1] - a[1]) * t),
                       int(a[2] + (b[2] - a[2]) * t));
  };
  std::string o = fmt::format(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" viewBox=\"0 0 {} {}\" width=\"{}\" height=\"{}\" role=\"img\" "
      "font-family=\"system-ui, sans-serif\" font-size=\"12\">\n<title>{}</title>\n",
      W, H, W, H, xml_escape(h.title));
  o += fmt::format("<text x=\"{}\" y=\"20\" font-size=\"14\" font-weight=\"600\">{}</text>\n", left, xml_escape(h.title));
  for (size_t r = 0; r < h.rows.size(); ++r) {
    o += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{}</text>\n", left - 6, top + int(r) * C + C / 2 + 4,
                     xml_escape(h.rows[r]));
    for (size_t k = 0; k < h.cols.size(); ++k) {
      const double v = h.v[r][k];
      const int x = left + int(k) * C, y = top + int(r) * C;
      o += fmt::format(
          "<rect class=\"cell\" data-row=\"{}\" data-col=\"{}\" data-v=\"{}\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" "
          "fill=\"{}\" stroke=\"#fff\"><title>{} / {}: {}</title></rect>\n",
          xml_escape(h.rows[r]), xml_escape(h.cols[k]), std::isfinite(v) ? fmt::format("{}", v) : "nan", x, y, C, C,
          colour(v), xml_escape(h.rows[r]), xml_escape(h.cols[k]), std::isfinite(v) ? fmt::format("{:.2f}", v) : "n/a");
    }
  }
  for (size_t k = 0; k < h.cols.size(); ++k)
    o += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", left + int(k) * C + C / 2,
                     top + int(h.rows.size()) * C + 16, xml_escape(h.cols[k]));
  o += fmt::format("<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{}</text>\n", left + int(h.cols.size()) * C / 2, H - 8,
                   xml_escape(h.x_label));
  o += fmt::format("<text transform=\"translate(14 {}) rotate(-90)\" text-anchor=\"middle\">{}</text>\n",
                   top + int(h.rows.size()) * C / 2, xml_escape(h.y_label));
  // Colour scale.
  const int sx = left + int(h.cols.size()) * C + 24;
  for (int i = 0; i < 10; ++i)
    o += fmt::format("<rect x=\"{}\" y=\"{}\" width=\"14\" height=\"{}\" fill=\"{}\"/>\n", sx, top + i * 12, 12,
                     colour(h.vmax - (h.vmax - h.vmin) * i / 9.0));
  o += fmt::format("<text x=\"{}\" y=\"{}\">{}</text>\n<text x=\"{}\" y=\"{}\">{}</text>\n", sx + 18, top + 10,
                   compact_number(h.vmax), sx + 18, top + 118, compact_number(h.vmin));
  o += "</svg>\n";
  return o;
}

}  // namespace dsv4::report
