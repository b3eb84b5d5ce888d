// The `http` backend: a LanguageModel over an OpenAI-compatible server (vLLM, SGLang, the
// DeepSeek API, `dsv4 serve`), through HttpTransport (evals/http_transport.h).
//
//   generate          POST /v1/completions; the prompt as a token array (vLLM, SGLang and
//                     dsv4 serve accept one) or, with token_prompts = false, as text
//                     (detokenized); max_tokens, temperature, top_p, seed and stop passed on;
//                     stream = true reads server-sent events (prefill_seconds = time to the
//                     first event)
//   generate_text     the same with the text prompt as given
//   chat              POST /v1/chat/completions (messages in, the assistant message out)
//   loglik            POST /v1/completions with echo + logprobs = 1 over context ++
//                     continuation: the sum of the continuation's token log-probs; greedy when
//                     each continuation token is its position's top-1
//   score_candidates  POST /v1/completions, 1 token, logprobs = top_logprobs: the candidates'
//                     log-probs when every candidate is in the returned top set, else
//                     Unsupported (raise top_logprobs; dsv4 serve allows the whole vocabulary)
//   tokenize          a local tokenizer.json (`tokenizer`), else the server's /tokenize and
//                     /detokenize (vLLM's) when server_tokenize; else Unsupported
//   render_chat       the local tokenizer's chat template only
// Top-logprob keys: "token_id:N" when the server honours return_tokens_as_token_ids (vLLM,
// dsv4 serve); otherwise token text, mapped to ids through the local tokenizer.
// The API key is read from the environment variable named by http.api_key_env and sent as
// a Bearer token only; spec() and every error leave it out.
#pragma once

#include <memory>
#include <string>

#include "evals/http_transport.h"
#include "evals/model_api.h"

namespace dsv4 {
class Tokenizer;
}

namespace dsv4::evals {

struct HttpBackendOptions {
  HttpOptions http;
  std::string model;             // the server's model name (required)
  std::string tokenizer;         // local tokenizer.json ("" = none)
  bool server_tokenize = false;  // use the server's /tokenize and /detokenize
  bool token_prompts = true;     // send token arrays (false: text)
  bool stream = false;           // generate through server-sent events
  bool logprobs = true;          // the server returns logprobs (loglik, score_candidates)
  int top_logprobs = 20;         // how many top log-probs score_candidates asks for
};

class HttpModel final : public LanguageModel {
 public:
  // Throws InputError for bad options (no model name, a missing tokenizer file, ...). Makes
  // no request: a server that is down fails the first call (HttpError).
  explicit HttpModel(const HttpBackendOptions& o);
  ~HttpModel() override;

  // "http:MODEL@BASE_URL"
  std::string spec() const override;
  uint32_t capabilities() const override;
  const std::string& base_url() const;
  const std::string& model_name() const { return opt_.model; }

  std::vector<int32_t> tokenize(std::string_view text) const override;
  std::string detokenize(const std::vector<int32_t>& ids) const override;
  std::string render_chat(const std::vector<ChatMessage>& messages) const override;
  Completion generate(const std::vector<int32_t>& prompt, const SamplingParams& p) override;
  Completion generate_text(std::string_view prompt, const SamplingParams& p) override;
  // The server applies its own chat template (POST /v1/chat/completions).
  Completion chat(const std::vector<ChatMessage>& messages, const SamplingParams& p);
  Loglik loglik(const std::vector<int32_t>& context,
                const std::vector<int32_t>& continuation) override;
  CandidateScores score_candidates(const std::vector<int32_t>& prompt,
                                   const std::vector<int32_t>& candidates) override;

 private:
  // A top-logprobs key ("token_id:N", or token text through the local tokenizer) as an id;
  // -1 when it names no single token.
  int32_t key_to_id(const std::string& key) const;
  Completion finish(Completion c, const SamplingParams& p) const;

  HttpBackendOptions opt_;
  std::unique_ptr<HttpTransport> http_;  // mutable use from const tokenize()
  std::unique_ptr<Tokenizer> tokenizer_;
};

}  // namespace dsv4::evals
