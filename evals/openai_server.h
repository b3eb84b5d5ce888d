// An OpenAI-compatible HTTP server over a LanguageModel (cpp-httplib): what `dsv4 serve`
// runs, and what the http backend's end-to-end tests talk to on loopback.
//
// Endpoints:
//   GET  /v1/models            the one model: {"object":"list","data":[{"id":NAME,...}]}
//   POST /v1/completions       prompt (text or token-id array), max_tokens, temperature, top_p,
//                              seed, stop, logprobs (top-N per position, N <= max_logprobs),
//                              echo, stream (SSE), return_tokens_as_token_ids (vLLM's: logprob
//                              keys "token_id:N"), n (1 only), user (ignored)
//   POST /v1/chat/completions  messages [{role, content}], the same sampling fields, stream
//   POST /tokenize             {model, prompt, add_special_tokens=false} -> {tokens, count}
//   POST /detokenize           {model, tokens} -> {prompt}
// Every failure answers {"error": {"message", "type", "code"}}: 400 bad JSON, an unknown or
// mistyped field, a value out of range, an over-long prompt; 404 an unknown model or path;
// 413 a body over max_body_bytes; 503 when max_queue requests already wait or run; 500 a
// model failure.
//
// Texts are sent as valid UTF-8 (evals/results.h valid_utf8: a byte sequence that is not
// well-formed, e.g. a token ending inside a character, becomes U+FFFD), as JSON requires.
// Execution: one model call at a time (a mutex); a request first takes a place in the
// admission gate (max_queue places: running + waiting), else 503 at once.
// Log-probs come from score_candidates over the whole vocabulary, one prefill per position:
// for generated tokens (after generation; greedy 1-token requests skip generate and take the
// argmax, ties to the lower id, as the engine's sampler does) and for echoed prompt tokens
// (at most max_echo_tokens: echo costs one prefill per prompt token). Streaming sends the
// finished generation as SSE chunks, one per token (the model interface has no per-token
// callback yet).
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "evals/model_api.h"

namespace dsv4::evals {

struct ServeOptions {
  std::string host = "127.0.0.1";
  int port = 8000;                      // 0: any free port (bind() returns it)
  std::string model_name;               // what clients send as "model" (required)
  int64_t vocab_size = 0;               // the model's vocabulary (> 0)
  int64_t max_prompt_tokens = 1 << 20;  // longer prompts: 400
  int64_t max_new_tokens = 4096;        // max_tokens above this: 400
  int64_t max_logprobs = 0;             // top-N limit; 0: none (N stops at the vocabulary)
  int64_t max_echo_tokens = 1024;       // echo with logprobs on longer prompts: 400
  size_t max_body_bytes = 64u << 20;    // larger request bodies: 413
  int max_queue = 8;                    // requests running + waiting; more: 503
};

// A bounded count of admitted requests (running + waiting).
class AdmissionGate {
 public:
  explicit AdmissionGate(int capacity) : capacity_(capacity) {}
  bool try_enter();  // false when full
  void leave();
  int load() const;

 private:
  mutable std::mutex mu_;
  int capacity_, load_ = 0;
};

class OpenAIServer {
 public:
  // Throws InputError for bad options.
  OpenAIServer(LanguageModel& model, const ServeOptions& o);
  ~OpenAIServer();
  OpenAIServer(const OpenAIServer&) = delete;
  OpenAIServer& operator=(const OpenAIServer&) = delete;

  // Binds host:port (port 0: a free one) and returns the port. InputError when it cannot.
  int bind();
  // Serves until stop() (from any thread or a signal-waiting thread). Call after bind().
  void run();
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsv4::evals
