// Test helper of the perf ctest cases (tests/CMakeLists.txt): copies a bench_derived.json
// with every roofline share (wall clock and CPU time, per repetition) and every measured
// speedup multiplied by FACTOR, i.e. a
// baseline against which an unchanged run looks FACTOR times slower.
//   dsv4_perf_doctor IN OUT FACTOR
#include <boost/json.hpp>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace json = boost::json;

namespace {

void scale(json::value& v, double f) {
  if (v.is_number()) {
    v = v.to_number<double>() * f;
  } else if (v.is_array()) {
    for (auto& x : v.get_array()) scale(x, f);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: dsv4_perf_doctor IN OUT FACTOR\n");
    return 2;
  }
  const double f = std::atof(argv[3]);
  std::ifstream in(argv[1]);
  if (!in || !(f > 0)) {
    std::fprintf(stderr, "dsv4_perf_doctor: %s\n", !in ? "cannot read IN" : "FACTOR must be a positive number");
    return 2;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  boost::system::error_code ec;
  json::value root = json::parse(ss.str(), ec);
  if (ec || !root.is_object() || !root.get_object().contains("benchmarks")) {
    std::fprintf(stderr, "dsv4_perf_doctor: %s: not a bench_derived.json\n", argv[1]);
    return 2;
  }
  int scaled = 0;
  for (auto& b : root.at("benchmarks").as_array())
    for (const char* key : {"roofline_share", "roofline_share_cpu"})
      if (auto* s = b.as_object().if_contains(key)) scale(*s, f), ++scaled;
  if (auto* sp = root.get_object().if_contains("speedups"))
    for (auto& e : sp->as_array())
      for (const char* key : {"measured", "measured_per_repetition", "measured_cpu_per_repetition"})
        if (auto* m = e.as_object().if_contains(key)) scale(*m, f), ++scaled;
  std::ofstream(argv[2]) << json::serialize(root) << "\n";
  std::printf("dsv4_perf_doctor: %d series x %g -> %s\n", scaled, f, argv[2]);
  return 0;
}
