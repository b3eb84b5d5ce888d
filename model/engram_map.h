// The Engram canonical-id map (docs/engram.md step 1): a surjective map of the tokenizer's
// vocabulary onto canonical ids, so that tokens differing only in ASCII case, surrounding
// whitespace or whitespace runs share one id (and so one set of n-gram table rows).
//
// key(id) = the token's bytes, ASCII lower-cased, every run of space/tab/CR/LF collapsed to
// one space, leading and trailing spaces stripped; a token of whitespace only keys to " ";
// a token whose bytes are not valid UTF-8 (a partial byte of a multi-byte character), or that
// has no bytes (an unused id), keys to itself alone. Canonical ids are numbered in order of
// first appearance by raw id, so the map is onto [0, number of keys).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "model/tokenizer.h"

namespace dsv4 {

// The normalised key of one token's bytes; empty when the token keys to itself alone.
std::string engram_token_key(const std::string& bytes);
// map[id] for id < vocab (ids the tokenizer lacks key to themselves alone).
std::vector<int64_t> engram_token_map(const Tokenizer& tok, int64_t vocab);
// The identity map (a model without a tokenizer).
std::vector<int64_t> engram_identity_map(int64_t vocab);

}  // namespace dsv4
