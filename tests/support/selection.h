// Checks of an indexer's top-k selection (§2.4 V4 lightning indexer, §2.10 V3.2 DSA indexer),
// shared by tests/reference/test_indexer.cc and test_dsa_indexer.cc.
//
// A case type C has int64_t members T (query rows), N (keys), HI (heads), dI (head dim),
// topk, and a member bool visible(int64_t r, int64_t j) const (the visibility rule of §2.8).
// Scores and indices are row-major [T, N] and [T, topk].
#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <set>
#include <vector>

#include "tests/support/naive.h"
#include "tests/support/tolerance.h"

namespace dsv4::test {

// Number of keys row r may see.
template <class C>
int64_t n_visible(const C& c, int64_t r) {
  int64_t v = 0;
  for (int64_t j = 0; j < c.N; ++j) v += c.visible(r, j);
  return v;
}

// naive::index_scores under the case's visibility.
template <class C>
void oracle_scores(const C& c, const std::vector<double>& q, const std::vector<double>& k,
                   const std::vector<double>& w, std::vector<double>& scores,
                   std::vector<double>& mag) {
  naive::index_scores(c.T, c.N, c.HI, c.dI, q, k, w,
                      [&](int64_t r, int64_t j) { return c.visible(r, j); }, scores, mag);
}

// naive::index_topk under the case's visibility.
template <class C>
std::vector<int32_t> oracle_topk(const C& c, const std::vector<double>& scores) {
  return naive::index_topk(c.T, c.N, c.topk, [&](int64_t r, int64_t j) { return c.visible(r, j); },
                           scores);
}

// Score tolerance of row r for an op in T: each q.k is a length-dI reduction and the head
// sum a length-HI one, so |err| <= (sqrt(dI) + sqrt(HI)) c u M_r <= sqrt(2 (dI + HI)) c u M_r,
// M_r = the row's mag from oracle_scores.
template <class T, class C>
double score_tol(const C& c, double mag) {
  return reduction_tol<T>(2.0 * double(c.dI + c.HI), mag);
}

// Structural invariants of one selection: the first min(topk, #visible) entries of each row
// are distinct visible indices, the rest -1.
template <class C>
::testing::AssertionResult selection_invariants(const C& c, const std::vector<int32_t>& idx) {
  for (int64_t r = 0; r < c.T; ++r) {
    const int64_t k = std::min(c.topk, n_visible(c, r));
    std::set<int32_t> seen;
    for (int64_t i = 0; i < c.topk; ++i) {
      const int32_t j = idx[size_t(r * c.topk + i)];
      if (i < k) {
        if (j < 0 || j >= c.N || !c.visible(r, j))
          return ::testing::AssertionFailure()
                 << "row " << r << " slot " << i << ": index " << j << " is not visible";
        if (!seen.insert(j).second)
          return ::testing::AssertionFailure() << "row " << r << ": index " << j << " twice";
      } else if (j != -1) {
        return ::testing::AssertionFailure()
               << "row " << r << " slot " << i << ": expected -1 padding, found " << j << " ("
               << k << " visible of topk " << c.topk << ")";
      }
    }
  }
  return ::testing::AssertionSuccess();
}

// An op in lower precision vs the double oracle: the selected set may differ from the
// oracle's only among indices whose oracle scores lie within 2 tol of each other (each side
// errs by <= tol): every selected score >= every unselected visible score - 2 tol, and
// consecutive selected scores are ordered up to 2 tol. Counts, in *rows_differing when
// non-null, the rows whose set is not the oracle's exactly.
template <class C>
::testing::AssertionResult selection_within_tol(const C& c, const std::vector<int32_t>& idx,
                                                const std::vector<double>& oscores,
                                                const std::vector<double>& tol,
                                                int64_t* rows_differing = nullptr) {
  const std::vector<int32_t> exact = oracle_topk(c, oscores);
  for (int64_t r = 0; r < c.T; ++r) {
    const double* s = &oscores[size_t(r * c.N)];
    const int32_t* id = &idx[size_t(r * c.topk)];
    const int64_t k = std::min(c.topk, n_visible(c, r));
    const std::set<int32_t> sel(id, id + k);
    const int32_t* ex = &exact[size_t(r * c.topk)];
    if (rows_differing && sel != std::set<int32_t>(ex, ex + k)) ++*rows_differing;
    double min_sel = naive::kInf, max_unsel = -naive::kInf;
    for (int32_t j : sel) min_sel = std::min(min_sel, s[j]);
    for (int64_t j = 0; j < c.N; ++j)
      if (c.visible(r, j) && !sel.count(int32_t(j))) max_unsel = std::max(max_unsel, s[j]);
    if (min_sel < max_unsel - 2 * tol[size_t(r)])
      return ::testing::AssertionFailure()
             << "row " << r << ": selected score " << min_sel << " below unselected "
             << max_unsel << " by more than 2 tol = " << 2 * tol[size_t(r)];
    for (int64_t i = 0; i + 1 < k; ++i)
      if (s[id[i]] < s[id[i + 1]] - 2 * tol[size_t(r)])
        return ::testing::AssertionFailure() << "row " << r << ": order of " << id[i] << ", "
                                             << id[i + 1] << " off by more than 2 tol";
  }
  return ::testing::AssertionSuccess();
}

}  // namespace dsv4::test
