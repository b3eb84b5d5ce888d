// The one model interface every eval talks to (docs/evals.md "Model interface").
//
// A LanguageModel is text-in/text-out with token access where the backend has it:
//   tokenize / detokenize      the model's own tokenizer (ids are exact: generators build
//                              prompts in token space so lengths and depths are exact)
//   render_chat                the chat prompt text for messages, ending with the generation
//                              prompt (so a prompt can be built in token space around it)
//   generate                   sampling from a token prompt (SamplingParams below)
//   loglik                     log p(continuation | context), summed, and whether it is the
//                              greedy continuation
//   score_candidates           log-softmax of the next-token logits after a prompt, read at a
//                              candidate id set (the probe's recall answer is the argmax over
//                              its value ids)
//   trace                      one prefill of a prompt with the last position traced layer by
//                              layer (attention output, indexer selection and scores, weights),
//                              on the deployment path or on the float64 reference
//                              (the degradation suite; local engines only)
// Backends:
//   engine (evals/engine_backend.h)  this project's Model on a checkpoint dir: everything.
//   http   (OpenAI-compatible, evals/http_backend.h) generate via /v1/completions with a token-array prompt
//          (vLLM/SGLang accept one) or text; loglik via `echo` + `logprobs` where the server
//          has them; score_candidates via top_logprobs (exact only when every candidate is in
//          the returned top set, otherwise Unsupported) or via `logit_bias`-restricted
//          one-token generation; tokenize via the server's /tokenize endpoint or a local
//          tokenizer.json. A method a backend cannot do throws Unsupported.
// Tasks declare what they need as a Capability mask (Task::needs); the runner checks it
// against capabilities() before generating anything and stops with a clear error (exit 2).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace dsv4::evals {

// A method this backend does not implement (see capabilities()).
class Unsupported : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// Bit flags: what a backend can do / what a task needs.
enum Capability : uint32_t {
  kTokens = 1u << 0,      // tokenize/detokenize with exact ids; token prompts
  kChat = 1u << 1,        // render_chat
  kGenerate = 1u << 2,    // generate
  kLoglik = 1u << 3,      // loglik
  kCandidates = 1u << 4,  // score_candidates
  kTrace = 1u << 5,       // trace (deployment and fp64 reference paths)
};
// "tokens,chat,generate" for the bits set.
std::string capability_names(uint32_t caps);

struct SamplingParams {
  int64_t max_tokens = 32;
  double temperature = 0.0;  // 0: greedy (argmax, ties to the lower id)
  double top_p = 1.0;
  uint64_t seed = 0;  // below 2^63 (the OpenAI API's seed is a signed 64-bit integer)
  std::vector<std::string> stop;  // stop strings: generation ends once the text contains one
                                  // (the text is cut before it); eos always stops
};

struct Usage {
  int64_t prompt_tokens = 0;
  int64_t completion_tokens = 0;
  double prefill_seconds = 0;  // time to the first token's logits
  double decode_seconds = 0;
  int64_t cached_prompt_tokens = 0;  // of prompt_tokens, served from the server's prompt cache
  int64_t reasoning_tokens = 0;      // of completion_tokens, spent on reasoning (where reported)
};

struct Completion {
  std::string text;             // detokenized, special tokens dropped, cut at a stop string
  std::vector<int32_t> tokens;  // every generated id (eos included when hit)
  Usage usage;
};

struct ChatMessage {
  std::string role;  // "system" | "user" | "assistant"
  std::string content;
};

struct Loglik {
  double logprob = 0;   // sum over the continuation tokens of log p(token | everything before)
  bool greedy = false;  // every continuation token was the argmax
  Usage usage;
};

struct CandidateScores {
  std::vector<double> logprob;  // [candidates]: log-softmax over the whole vocabulary
  Usage usage;
};

// Which numerics a trace runs: the engine as configured (FP8/FP4 simulation, the KV layout),
// or the float64 reference (the same ops in double, exact math, on the same weights).
enum class TracePath { deployment, reference };

// One layer's attention sub-layer at the last prompt position.
struct LayerTrace {
  int64_t layer = 0;
  int64_t ratio = 0;                 // 0 window-only, 4 CSA, 128 HCA
  int64_t heads = 0;
  std::vector<float> output;         // the sub-layer output [D]
  std::vector<int32_t> selected;     // CSA: the indexer's top-k entry numbers (-1 pads)
  std::vector<double> index_scores;  // CSA: [N] every key's score (-inf: not visible)
  std::vector<int64_t> window;       // positions of the window rows attended
  std::vector<int64_t> entries;      // compressed entries attended (entry j pools positions
                                     // [m j, m j + m - 1]; CSA also the block before)
  std::vector<double> weights;       // [heads, window.size() + entries.size()]; sink = rest
};

struct PromptTrace {
  std::vector<float> logits;       // [V] at the last position
  std::vector<LayerTrace> layers;  // every layer
  int64_t kv_bytes = 0;            // the sequence's cache after the prompt
  double decode_flops = 0;         // analytic FLOPs of one decode token at this context
  Usage usage;
};

class LanguageModel {
 public:
  virtual ~LanguageModel() = default;
  // "engine:ref" etc.: what results.json records as the backend.
  virtual std::string spec() const = 0;
  virtual uint32_t capabilities() const = 0;

  virtual std::vector<int32_t> tokenize(std::string_view text) const = 0;
  virtual std::string detokenize(const std::vector<int32_t>& ids) const = 0;
  // The chat prompt for `messages` as text, ending with the assistant generation prompt.
  virtual std::string render_chat(const std::vector<ChatMessage>& messages) const = 0;

  virtual Completion generate(const std::vector<int32_t>& prompt, const SamplingParams& p) = 0;
  // Text prompt: tokenize(text) then generate, for backends with tokens; an HTTP backend
  // sends the text. The default goes through tokenize().
  virtual Completion generate_text(std::string_view prompt, const SamplingParams& p) {
    return generate(tokenize(prompt), p);
  }
  virtual Loglik loglik(const std::vector<int32_t>& context,
                        const std::vector<int32_t>& continuation) = 0;
  virtual CandidateScores score_candidates(const std::vector<int32_t>& prompt,
                                           const std::vector<int32_t>& candidates) = 0;
  virtual PromptTrace trace(const std::vector<int32_t>& prompt, TracePath path) {
    (void)prompt, (void)path;
    throw Unsupported("backend " + spec() + " cannot trace a prompt");
  }
};

}  // namespace dsv4::evals
