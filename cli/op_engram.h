// The host side of `dsv4 op engram_hash` (cli/ops_engram.cc), shared by its reference run and
// its CUDA runner (cli/ops_cuda.cc), so that both check the same keys and values with the same
// messages and build the same layer layout: the keys (max_ngram, heads, vocab_size, layer,
// layer_index, n_layers, seed, pad_id, vocab) checked, the ids / token_map / history values
// checked against the vocabulary, and the layer's EngramHash (docs/engram.md step 2).
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "cli/op_spec.h"
#include "reference/engram.h"

namespace dsv4::cli {

struct EngramHashSetup {
  std::vector<int32_t> map;      // token_map [V] (empty: identity)
  std::vector<int32_t> ids;      // raw ids [T]
  std::vector<int32_t> history;  // canonical ids of the N-1 tokens before ids[0] (-1: none)
  std::vector<int64_t> primes;   // [(N-1)*heads]
  EngramHash hash;               // hash.token_map points into map: keep the setup in place
};

// Throws InputError naming the op, key or tensor on a bad key or value. token_map and history
// may be nullptr (absent inputs).
std::unique_ptr<EngramHashSetup> engram_hash_setup(const Keys& keys, const Dims& dims,
                                                   const std::vector<int64_t>* token_map,
                                                   const std::vector<int64_t>& ids,
                                                   const std::vector<int64_t>* history);

// The op's outputs from the table rows [T, slots] (int64, in range: the I32 check is made by
// engram_hash_setup): rows as I32, the history to pass with the next chunk, the primes.
struct EngramHashOutputs {
  std::vector<int32_t> rows, history, primes;
};
EngramHashOutputs engram_hash_outputs(const EngramHashSetup& s, const std::vector<int64_t>& rows);

}  // namespace dsv4::cli
