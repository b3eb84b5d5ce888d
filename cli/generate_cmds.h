// dsv4 forward and dsv4 generate: whole-model runs on a checkpoint directory.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dsv4::cli {

struct ModelRunArgs {
  std::string model;        // checkpoint directory
  std::string prompt;       // --prompt TEXT (tokenised with DIR/tokenizer.json)
  std::string chat;         // --chat TEXT: one user turn in the V4 chat format
  std::string tokens_file;  // --tokens FILE: one id per line
  std::string backend = "ref";
  std::string precision = "f32";
  std::string numerics = "official";
  std::string kv_layout = "f32";
  std::string engram_tables = "memory";  // memory | mmap (docs/engram.md)
  int64_t chunk = 512;
  // multi-rank (docs/parallel.md): tensor- and expert-parallel ranks; under mpirun -np N
  int tp = 1;
  int ep = 1;
  // forward
  std::string out;
  bool hidden = false;
  // generate
  int64_t max_tokens = 32;
  double temperature = 0.0;
  double top_p = 1.0;
  uint64_t seed = 0;
  std::vector<int32_t> stop;  // default: the eos id
  bool thinking = false;
};

// Logits of every position (and with --hidden each layer's residual streams) to a
// safetensors file; docs/op-contract.md "Whole-model files".
// Both commands run sharded under mpirun with --tp/--ep (model/backend_sharded.h): every rank
// computes, rank 0 alone prints and writes; a rank that fails ends every rank (comm abort).
int forward_command(const ModelRunArgs& a);
// Prints the generated text (stdout) and timing (stderr).
int generate_command(const ModelRunArgs& a);

}  // namespace dsv4::cli
