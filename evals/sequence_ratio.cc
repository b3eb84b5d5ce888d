#include "evals/sequence_ratio.h"

#include <utility>
#include <vector>

namespace dsv4::evals {

MatchBlock longest_match(std::string_view a, std::string_view b, int64_t alo, int64_t ahi,
                         int64_t blo, int64_t bhi) {
  // run[j]: length of the common run ending at a[i], b[j] (the previous row kept in `prev`).
  // Scanning i then j upward and replacing only on a strictly longer run keeps the first
  // block in a, then in b, among the longest.
  MatchBlock best{alo, blo, 0};
  const size_t width = size_t(bhi - blo);
  std::vector<int64_t> prev(width + 1, 0), run(width + 1, 0);
  for (int64_t i = alo; i < ahi; ++i) {
    for (int64_t j = blo; j < bhi; ++j) {
      const size_t c = size_t(j - blo) + 1;
      run[c] = a[size_t(i)] == b[size_t(j)] ? prev[c - 1] + 1 : 0;
      if (run[c] > best.size) best = {i - run[c] + 1, j - run[c] + 1, run[c]};
    }
    std::swap(prev, run);
  }
  return best;
}

int64_t matching_characters(std::string_view a, std::string_view b) {
  // An explicit stack of ranges [alo, ahi) x [blo, bhi) instead of recursion: the total
  // is the same whatever order the ranges are taken in.
  struct Range {
    int64_t alo, ahi, blo, bhi;
  };
  std::vector<Range> todo = {{0, int64_t(a.size()), 0, int64_t(b.size())}};
  int64_t matched = 0;
  while (!todo.empty()) {
    const Range r = todo.back();
    todo.pop_back();
    if (r.alo >= r.ahi || r.blo >= r.bhi) continue;
    const MatchBlock m = longest_match(a, b, r.alo, r.ahi, r.blo, r.bhi);
    if (m.size == 0) continue;
    matched += m.size;
    todo.push_back({r.alo, m.a_pos, r.blo, m.b_pos});
    todo.push_back({m.a_pos + m.size, r.ahi, m.b_pos + m.size, r.bhi});
  }
  return matched;
}

double sequence_ratio(std::string_view a, std::string_view b) {
  const int64_t total = int64_t(a.size() + b.size());
  if (total == 0) return 1.0;
  return 2.0 * double(matching_characters(a, b)) / double(total);
}

}  // namespace dsv4::evals
