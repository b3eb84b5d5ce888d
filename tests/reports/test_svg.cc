// reports/svg.h: the chart writer. The numbers drawn are read back from the data-* attributes
// and the pixel positions are checked against the axis mapping (linear and log10), so a chart
// that puts a point in the wrong place fails.
#include <gtest/gtest.h>

#include <cmath>
#include <regex>
#include <string>
#include <vector>

#include "reports/svg.h"

namespace dsv4::report {
namespace {

struct Point {
  std::string series;
  double x, y, cx, cy;
};

std::vector<Point> points(const std::string& svg) {
  static const std::regex re(
      R"re(<circle class="pt" data-series="([^"]*)" data-x="([^"]*)" data-y="([^"]*)" cx="([^"]*)" cy="([^"]*)")re");
  std::vector<Point> out;
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), re); it != std::sregex_iterator(); ++it)
    out.push_back({(*it)[1], std::stod((*it)[2]), std::stod((*it)[3]), std::stod((*it)[4]), std::stod((*it)[5])});
  return out;
}

std::vector<std::string> tick_labels(const std::string& svg, const char* cls) {
  const std::regex re(std::string("<text class=\"") + cls + R"(\"[^>]*>([^<]*)</text>)");
  std::vector<std::string> out;
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), re); it != std::sregex_iterator(); ++it)
    out.push_back((*it)[1]);
  return out;
}

TEST(Svg, PointsCarryTheirValuesAndSitWhereTheAxesSay) {
  Chart c;
  c.title = "t";
  c.x.label = "context";
  c.x.scale = Scale::Log10;
  c.x.min = 1e3, c.x.max = 1e6;
  c.y.label = "y";
  c.y.min = 0, c.y.max = 10;
  c.series.push_back({"a", {1e3, 1e4, 1e6}, {0, 5, 10}});
  c.series.push_back({"b & c", {3e4}, {2.5}});
  const std::string svg = render_svg(c);
  const auto p = points(svg);
  ASSERT_EQ(p.size(), 4u);
  EXPECT_EQ(p[0].series, "a");
  EXPECT_EQ(p[3].series, "b &amp; c") << "names are escaped";
  // Pixel positions within the plot frame: x over 3 decades (log), y over [0, 10] (linear).
  static const std::regex frame(R"re(<rect x="([^"]*)" y="([^"]*)" width="([^"]*)" height="([^"]*)" fill="none")re");
  std::smatch f;
  ASSERT_TRUE(std::regex_search(svg, f, frame));
  const double L = std::stod(f[1]), T = std::stod(f[2]), R = L + std::stod(f[3]), B = T + std::stod(f[4]);
  EXPECT_NEAR(p[3].cx, L + (std::log10(3e4) - 3) / 3 * (R - L), 0.06);
  EXPECT_NEAR(p[1].cx, L + (R - L) / 3.0, 0.06);
  EXPECT_NEAR(p[0].cy, B, 0.06);
  EXPECT_NEAR(p[2].cy, T, 0.06);
  EXPECT_NEAR(p[1].cy, B - 0.5 * (B - T), 0.06);
  EXPECT_DOUBLE_EQ(p[1].x, 1e4);
  EXPECT_DOUBLE_EQ(p[1].y, 5);
  EXPECT_NE(svg.find("context (log scale)"), std::string::npos) << "log axes say so";
}

TEST(Svg, TicksOnLogAndLinearAxes) {
  Chart c;
  c.x.scale = Scale::Log10;
  c.x.ticks = {4096, 32768, 131072, 1048576};
  c.x.format = tokens_label;
  c.y.scale = Scale::Linear;
  c.y.min = 0, c.y.max = 1;
  c.series.push_back({"s", {4096, 1048576}, {0.2, 0.9}});
  const std::string svg = render_svg(c);
  EXPECT_EQ(tick_labels(svg, "xtick"), (std::vector<std::string>{"4K", "32K", "128K", "1M"}));
  EXPECT_EQ(tick_labels(svg, "ytick"), (std::vector<std::string>{"0", "0.2", "0.4", "0.6", "0.8", "1"}));
  Chart d;
  d.y.scale = Scale::Log10;
  d.series.push_back({"s", {1, 2}, {1e9, 1e12}});
  const auto labels = tick_labels(render_svg(d), "ytick");
  EXPECT_NE(std::find(labels.begin(), labels.end(), "1G"), labels.end());
  EXPECT_NE(std::find(labels.begin(), labels.end(), "1T"), labels.end());
}

TEST(Svg, BandsReferenceLinesAndBadInput) {
  Chart c;
  c.series.push_back({"s", {1, 2, 3}, {0.5, 0.6, 0.7}, {0.4, 0.5, 0.6}, {0.6, 0.7, 0.8}});
  c.hlines.push_back({"chance", 0.25});
  Series roof{"roof", {1, 3}, {1, 1}};
  roof.reference = true;
  c.series.push_back(roof);
  const std::string svg = render_svg(c);
  EXPECT_NE(svg.find("class=\"band\""), std::string::npos);
  EXPECT_NE(svg.find("class=\"ref\" data-y=\"0.25\""), std::string::npos);
  EXPECT_NE(svg.find("class=\"refcurve\""), std::string::npos);
  EXPECT_EQ(points(svg).size(), 3u) << "reference curves have no markers";
  Chart bad;
  bad.y.scale = Scale::Log10;
  bad.series.push_back({"s", {1, 2}, {0, 1}});
  EXPECT_THROW(render_svg(bad), std::invalid_argument) << "0 on a log axis";
  Chart mismatch;
  mismatch.series.push_back({"s", {1, 2}, {1}});
  EXPECT_THROW(render_svg(mismatch), std::invalid_argument);
}

TEST(Svg, HeatmapCellsCarryValues) {
  Heatmap h;
  h.title = "recall";
  h.cols = {"4K", "16K"};
  h.rows = {"0 %", "50 %", "100 %"};
  h.v = {{1, 0.5}, {0, NAN}, {0.25, 1}};
  const std::string svg = render_heatmap(h);
  static const std::regex re(R"re(data-row="([^"]*)" data-col="([^"]*)" data-v="([^"]*)")re");
  std::vector<std::string> got;
  for (auto it = std::sregex_iterator(svg.begin(), svg.end(), re); it != std::sregex_iterator(); ++it)
    got.push_back(std::string((*it)[1]) + "/" + std::string((*it)[2]) + "=" + std::string((*it)[3]));
  EXPECT_EQ(got, (std::vector<std::string>{"0 %/4K=1", "0 %/16K=0.5", "50 %/4K=0", "50 %/16K=nan", "100 %/4K=0.25",
                                           "100 %/16K=1"}));
  h.v.pop_back();
  EXPECT_THROW(render_heatmap(h), std::invalid_argument);
}

TEST(Svg, Labels) {
  EXPECT_EQ(tokens_label(4096), "4K");
  EXPECT_EQ(tokens_label(1048576), "1M");
  EXPECT_EQ(tokens_label(131072), "128K");
  EXPECT_EQ(tokens_label(1000), "1k");
  EXPECT_EQ(compact_number(1.5e11), "150G");
  EXPECT_EQ(compact_number(0.25), "0.25");
  EXPECT_EQ(compact_number(0), "0");
  EXPECT_EQ(xml_escape("a<b>&\"c\""), "a&lt;b&gt;&amp;&quot;c&quot;");
}

}  // namespace
}  // namespace dsv4::report
