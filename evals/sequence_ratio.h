// The sequence-match ratio of two strings (MRCR scoring, docs/evals.md "mrcr"):
//
//   ratio(a, b) = 2 M / (|a| + |b|)      (1.0 when both are empty)
//
// where M is the number of characters in the matching blocks found by the Ratcliff/Obershelp
// "longest matching block" recursion: take the longest common substring of a[alo:ahi] and
// b[blo:bhi] (ties: the one starting first in a, then first in b), count it, and recurse on
// the pieces to its left and to its right. This is the definition Python's difflib uses
// for SequenceMatcher(None, a, b).ratio() with no junk; difflib's "autojunk" heuristic only
// applies when b has 200 or more characters, and is not reproduced here. Bytes are compared
// (UTF-8 text compares by code units). Cost: O(|a| |b|) per recursion level.
#pragma once

#include <cstdint>
#include <string_view>

namespace dsv4::evals {

// One matching block: a[a_pos, a_pos + size) == b[b_pos, b_pos + size).
struct MatchBlock {
  int64_t a_pos = 0, b_pos = 0, size = 0;
};

// The longest common block of a[alo, ahi) and b[blo, bhi) (size 0 when none).
MatchBlock longest_match(std::string_view a, std::string_view b, int64_t alo, int64_t ahi,
                         int64_t blo, int64_t bhi);

// M: the total size of the matching blocks of the recursion above.
int64_t matching_characters(std::string_view a, std::string_view b);

// 2 M / (|a| + |b|), in [0, 1]; 1 for two empty strings.
double sequence_ratio(std::string_view a, std::string_view b);

}  // namespace dsv4::evals
