// The RoPE keys of op-contract.md `rope`, shared by every op that rotates.
#pragma once

#include "cli/op_spec.h"
#include "reference/rope.h"

namespace dsv4::cli {

// preset (v4-compressed | v4-swa | v3 | v32-indexer) sets the table; explicit keys
// (rope_dim, theta, yarn_factor, yarn_orig, beta_fast, beta_slow, attn_factor, layout,
// placement) override it; with neither `theta` nor `preset` given, the op's default
// preset applies.
RopeConfig rope_from_keys(const Keys& k, const std::string& default_preset);

}  // namespace dsv4::cli
