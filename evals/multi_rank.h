// dsv4 eval on several ranks (mpirun ... dsv4 eval --tp T --ep E; docs/parallel.md).
//
// Rank 0 runs the eval as usual (tasks, results files, progress) against a LeaderModel; every
// call that runs the model (generate, loglik, score_candidates, trace) is first broadcast to
// the other ranks, which sit in follow() and make the same call on their own EngineModel (a
// shard of the sharded backend), so the backend's collectives line up on every rank. Only
// rank 0 sees results; the others return when the leader finishes. Calls that do not run the
// model (tokenize, render_chat, ...) stay on rank 0.
#pragma once

#include "comm/comm.h"
#include "evals/engine_backend.h"

namespace dsv4::evals {

class LeaderModel final : public LanguageModel {
 public:
  // `model` and `world` outlive this; call on rank 0 of `world`.
  LeaderModel(EngineModel& model, comm::Comm& world) : m_(model), world_(world) {}
  // Tells the followers to return (finish() if not called yet).
  ~LeaderModel() override;
  // Sends the followers home; no model call after it.
  void finish();

  std::string spec() const override { return m_.spec(); }
  uint32_t capabilities() const override { return m_.capabilities(); }
  std::vector<int32_t> tokenize(std::string_view text) const override { return m_.tokenize(text); }
  std::string detokenize(const std::vector<int32_t>& ids) const override {
    return m_.detokenize(ids);
  }
  std::string render_chat(const std::vector<ChatMessage>& messages) const override {
    return m_.render_chat(messages);
  }
  Completion generate(const std::vector<int32_t>& prompt, const SamplingParams& p) override;
  Loglik loglik(const std::vector<int32_t>& context,
                const std::vector<int32_t>& continuation) override;
  CandidateScores score_candidates(const std::vector<int32_t>& prompt,
                                   const std::vector<int32_t>& candidates) override;
  PromptTrace trace(const std::vector<int32_t>& prompt, TracePath path) override;

 private:
  EngineModel& m_;
  comm::Comm& world_;
  bool finished_ = false;
};

// On ranks other than 0: repeats the leader's model calls until it finishes.
void follow(EngineModel& model, comm::Comm& world);

}  // namespace dsv4::evals
