// The `engine` backend: this project's Model (model/model.h) on a checkpoint directory.
// Implements every LanguageModel method. Prompts are prefilled in chunks of `chunk` tokens
// with logits asked only for the last position (Model::forward's logit_rows), so a long
// prompt costs no LM-head work but the last row.
//   backend "ref"   the Eigen reference backend
//   backend "cuda"  not built into the model yet: an InputError saying so
// trace() also runs the float64 reference (model/backend.h make_f64_backend).
#pragma once

#include <memory>
#include <string>

#include "evals/model_api.h"

namespace dsv4 {
class Model;
class Tokenizer;
}  // namespace dsv4
namespace dsv4::comm {
class Comm;
}  // namespace dsv4::comm

namespace dsv4::evals {

struct EngineOptions {
  std::string backend = "ref";        // ref | cuda
  std::string numerics = "official";  // official (FP8/FP4 simulation) | exact
  std::string kv_layout = "f32";      // f32 | bf16 | fp8
  int64_t chunk = 512;                // prefill chunk, tokens
  // Multi-rank (docs/parallel.md, evals/multi_rank.h): with more than one rank in `world`, or
  // tp/ep above 1, this rank's shard of the sharded backend (model/backend_sharded.h).
  comm::Comm* world = nullptr;        // outlives the model; null: one rank
  int tp = 1;
  int ep = 1;
  std::string engram_tables = "memory";  // memory | mmap (docs/engram.md)
};

class EngineModel final : public LanguageModel {
 public:
  // Loads DIR (load_checkpoint) and DIR/tokenizer.json when present. Throws InputError.
  EngineModel(const std::string& dir, const EngineOptions& o);
  ~EngineModel() override;

  std::string spec() const override;
  uint32_t capabilities() const override;
  std::vector<int32_t> tokenize(std::string_view text) const override;
  std::string detokenize(const std::vector<int32_t>& ids) const override;
  std::string render_chat(const std::vector<ChatMessage>& messages) const override;
  Completion generate(const std::vector<int32_t>& prompt, const SamplingParams& p) override;
  Loglik loglik(const std::vector<int32_t>& context,
                const std::vector<int32_t>& continuation) override;
  CandidateScores score_candidates(const std::vector<int32_t>& prompt,
                                   const std::vector<int32_t>& candidates) override;
  // Prefills in chunks and traces the last position's chunk. TracePath::reference runs a
  // second Model on the float64 backend (loaded from DIR on first use, kept afterwards).
  PromptTrace trace(const std::vector<int32_t>& prompt, TracePath path) override;

  int64_t vocab_size() const;

 private:
  void check_ids(const std::vector<int32_t>& ids, const char* what) const;
  const Tokenizer& tok() const;

  EngineOptions opt_;
  std::unique_ptr<Model> model_;
  std::unique_ptr<Model> f64_;  // the fp64 reference (trace), made on first use
  std::unique_ptr<Tokenizer> tokenizer_;  // null without DIR/tokenizer.json
  std::string dir_;
};

}  // namespace dsv4::evals
