// V4 checkpoints on disk: the table of expected tensors, the loader and the random-weight
// writer behind `dsv4 init`. Spec: docs/v4-architecture.md §7 (names, dtypes, shapes,
// encodings), §9 items 2, 6, 7 (hash layers, MTP, tid2eid).
//
// Layout of a checkpoint directory:
//   config.json                      either config spelling (§9), or transformers' own
//                                    (layer_types / mlp_layer_types / rope_parameters)
//   model.safetensors.index.json     {"metadata": {...}, "weight_map": {tensor: shard}}
//   model-0000i-of-0000N.safetensors the shards          (or one model.safetensors)
//   tokenizer.json                   optional
//
// One table (expected_tensors) says which tensors a config implies, with their logical
// shape and role; the loader, the writer and the tests all read it.
//
// Encodings (what the loader accepts per role; `release` = what the real model stores):
//   role         accepted                                                release
//   norm         F32 / BF16 / F16 / F64                                  BF16
//   f32          F32 / BF16 / F16 / F64                                  F32
//   bf16_linear  F32 / BF16 / F16 / F64                                  BF16
//   fp8_linear   plain float, or F8_E4M3 [out, in] + `.scale`            FP8 when fp8_weights
//                F8_E8M0 (or F32) [ceil(out/B), ceil(in/B)], B = 128
//   expert       as fp8_linear, or FP4: I8/U8 [out, ceil(in/2)], element FP4 if expert_dtype
//                2k in the low nibble, + `.scale` F8_E8M0 (or F32)     is fp4, FP8 if fp8
//                [out, ceil(in/32)]
//   index        I64 / I32                                               I64
// Value = decoded code * scale of its block. Scales must be finite and positive.
// Every loaded value must be finite; every tid2eid entry must lie in [0, n_routed_experts).
//
// Names: the official flat names of §7, or transformers' names for the same tensors (with
// or without the `model.` prefix, packed experts `mlp.experts.gate_up_proj` [E, 2I, D] /
// `down_proj` [E, D, I], FP8 companions `weight_scale_inv`); model/checkpoint_names.h holds
// the one mapping table.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "model/config.h"
#include "model/weights.h"

namespace dsv4 {

// ---- the table of expected tensors --------------------------------------------------------

enum class TensorRole : uint8_t { norm, f32, bf16_linear, fp8_linear, expert, index };
enum class Encoding : uint8_t { bf16, f32, fp8, fp4, i64 };

// How `dsv4 init` fills a tensor (the choices are documented in checkpoint_writer.cc).
enum class InitKind : uint8_t {
  norm,          // 1 + U(-0.1, 0.1)
  normal,        // N(0, std^2)
  hc_base,       // mHC base of a block site: pre -> 1/n, post -> 1, comb -> near identity
  hc_head_base,  // hc_head base: pre -> 1/n
  hc_scale,      // 1 + U(-0.1, 0.1)
  tid2eid,       // k distinct experts per row
  token_map,     // Engram canonical-id map: from the tokenizer written beside it, else identity
};

struct TensorSpec {
  std::string name;            // official name (§7)
  std::vector<int64_t> shape;  // logical shape
  TensorRole role = TensorRole::norm;
  InitKind init = InitKind::normal;
  double init_std = 0.0;       // InitKind::normal
  // Where the loader puts it: a float (or, for index, an int64) vector of ModelWeights,
  // starting at `offset` elements (routed experts are stacked [E, ...]); the vector holds
  // `dest_numel` elements in all.
  std::function<std::vector<float>*(ModelWeights&)> dest;
  std::function<std::vector<int64_t>*(ModelWeights&)> dest_int;
  int64_t offset = 0;
  int64_t dest_numel = 0;
  // Index tensors: every entry must lie in [0, index_bound) (index_bound_name says what it is).
  int64_t index_bound = 0;
  std::string index_bound_name;
  // Engram tables: where the loader puts a memory-mapped view instead of decoding (when asked).
  std::function<EngramTableView*(ModelWeights&)> dest_mapped;

  int64_t numel() const;
};

// Every tensor the config implies, in a fixed order: globals, then layers 0..n_layers-1,
// then MTP modules. `with_mtp = false` leaves the MTP modules out. V4 configs only.
std::vector<TensorSpec> expected_tensors(const ModelConfig& c, bool with_mtp = true);

// The encoding the released model uses for a role under this config.
Encoding release_encoding(const ModelConfig& c, TensorRole role);
// Stored tensors of one spec under an encoding: the weight and, for fp8/fp4, its scale.
struct StoredShape {
  std::string dtype;  // safetensors dtype name
  std::vector<int64_t> shape;
  std::string scale_dtype;  // empty: no scale
  std::vector<int64_t> scale_shape;
  int64_t bytes = 0;  // weight + scale
};
StoredShape stored_shape(const ModelConfig& c, const TensorSpec& s, Encoding e);
inline constexpr int64_t kFp4ScaleBlock = 32;  // §7: one E8M0 scale per 32 inputs

struct CheckpointSize {
  int64_t tensors = 0;        // spec entries (scales not counted)
  int64_t parameters = 0;     // logical elements (tid2eid counted)
  int64_t stored_bytes = 0;   // release encodings, scales included
  int64_t float_bytes = 0;    // the loaded ModelWeights
};
CheckpointSize checkpoint_size(const ModelConfig& c, bool with_mtp = true);

// ---- dequantisation (the loader's; exposed for tests) ---------------------------------------

// FP8: out[r, k] = e4m3(codes[r * cols + k]) * scales[(r / B) * ceil(cols / B) + k / B].
void dequantize_fp8(const uint8_t* codes, int64_t rows, int64_t cols, const float* scales, int64_t block,
                    float* out);
// FP4: packed [rows, ceil(cols / 2)], element 2j in the low nibble of byte j, 2j+1 in the
// high nibble; out[r, k] = e2m1(nibble) * scales[r * ceil(cols / 32) + k / 32].
void dequantize_fp4(const uint8_t* packed, int64_t rows, int64_t cols, const float* scales, float* out);

// ---- loading ------------------------------------------------------------------------------

struct LoadOptions {
  // MTP tensors: if_present drops the MTP modules (n_mtp_layers = 0) when the checkpoint has
  // no mtp.* tensor at all (transformers checkpoints have none) and otherwise needs all of
  // them; required makes their absence an error; skip never loads them.
  enum class Mtp { if_present, required, skip } mtp = Mtp::if_present;
  bool allow_unexpected = false;  // tensors the config does not use: error unless set
  int64_t max_bytes = 0;          // float bytes allowed; 0: the machine's physical memory
  // Engram tables stored as F32 or BF16 stay in the memory-mapped shards (read on lookup,
  // paged in on demand) instead of being decoded into memory; other dtypes are decoded.
  bool map_engram_tables = false;
};

struct LoadInfo {
  std::string naming;          // "official", "transformers" or "mixed"
  int64_t shards = 0;
  int64_t tensors_read = 0;    // stored tensors consumed (scales included)
  int64_t file_bytes = 0;      // bytes of the shards
  double seconds = 0.0;        // wall time of load_checkpoint
  int64_t peak_rss_bytes = 0;  // process peak resident set (getrusage) after loading
  std::vector<std::string> notes;  // e.g. MTP dropped, tensors skipped
};

// LoadOptions for --engram-tables NAME: "memory" (decode) or "mmap" (map_engram_tables);
// InputError otherwise.
LoadOptions engram_load_options(const std::string& name);

// Reads DIR/config.json and DIR/model.safetensors.index.json (or DIR/model.safetensors),
// memory-maps every shard, checks every tensor against expected_tensors and dequantises to
// float. Any problem is an InputError naming the file and the tensor.
ModelWeights load_checkpoint(const std::string& dir, const LoadOptions& opts = {},
                             LoadInfo* info = nullptr);

// The model config of a checkpoint directory (config.json in any accepted spelling).
ModelConfig checkpoint_config(const std::string& dir);

// ---- writing random checkpoints (dsv4 init) ----------------------------------------------

struct WriteOptions {
  bool force = false;           // replace an existing non-empty DIR
  std::string tokenizer = "";   // tokenizer.json to copy; "" = default_tokenizer_asset()
  int64_t max_bytes = 64ll << 30;  // refuse checkpoints larger than this (0: no limit)
};
struct WriteSummary {
  CheckpointSize size;
  int64_t shards = 0;
  int64_t file_bytes = 0;
  bool tokenizer_copied = false;
  std::string tokenizer_note;
};

// Writes config.json, model.safetensors.index.json and the shards
// model-0000i-of-0000N.safetensors (each at most shard_bytes, a tensor and its scale never
// split; shard_bytes <= 0: one shard) in the official layout and release encodings, filled
// from `seed` (same seed, same bytes). Writes into DIR.tmp-XXXXXX and renames it into
// place (a killed process can leave DIR.tmp-XXXXXX, never a half-written DIR); refuses an existing non-empty DIR unless opts.force, and checkpoints that do not
// fit (disk, memory, opts.max_bytes) with the size they would need. Throws InputError.
WriteSummary write_random_checkpoint(const ModelConfig& c, uint64_t seed, const std::string& dir,
                                     int64_t shard_bytes, const WriteOptions& opts = {});

// The tensor values of a checkpoint to write (a constructed model, e.g. model/probe.h).
struct CheckpointContents {
  // Logical values [numel] of a float tensor of expected_tensors(c) / of an index tensor.
  std::function<std::vector<float>(const TensorSpec&)> values;
  std::function<std::vector<int64_t>(const TensorSpec&)> indices;
  bool exact_float = false;  // store every float tensor as F32 instead of the release encoding
  // Extra files {name, text} written into DIR (no '/', not config.json nor *.safetensors*); a
  // "tokenizer.json" among them replaces the copied tokenizer.
  std::vector<std::pair<std::string, std::string>> files;
  uint64_t seed = 0;                    // recorded in the index metadata
  std::string generator = "dsv4 init";  // recorded in the index metadata
};

// write_random_checkpoint with given values: the same layout, encodings, sharding, checks
// and atomic rename.
WriteSummary write_checkpoint(const ModelConfig& c, const CheckpointContents& contents, const std::string& dir,
                              int64_t shard_bytes, const WriteOptions& opts = {});

// model/assets/tokenizer-tiny.json of the source tree (may not exist).
std::string default_tokenizer_asset();

}  // namespace dsv4
