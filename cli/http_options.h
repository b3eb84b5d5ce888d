// The http backend's command-line options, shared by `dsv4 eval --endpoint` (and any later
// command that talks to an OpenAI-compatible server): evals/http_backend.h.
#pragma once

#include <CLI/CLI.hpp>
#include <memory>
#include <string>
#include <vector>

#include "evals/http_backend.h"

namespace dsv4::cli {

struct HttpArgs {
  // base URLs; non-empty selects the http backend. Several (--endpoint A --endpoint B, each
  // with its --model-name in the same order): the same items on every server, interleaved.
  std::vector<std::string> endpoints;
  std::vector<std::string> model_names;  // --model-name, one per --endpoint
  std::string api_key_env = "OPENAI_API_KEY";
  std::string tokenizer;  // local tokenizer.json ("" : DIR/tokenizer.json when --model DIR has one)
  bool server_tokenize = false;
  bool text_prompts = false;
  bool stream = false;
  bool no_logprobs = false;
  int top_logprobs = 20;
  int concurrency = 4;
  double timeout_s = 600;
  int retries = 4;
  double backoff_s = 0.5;
};

// Adds --endpoint, --model-name, --api-key-env, --tokenizer, --server-tokenize,
// --text-prompts, --stream, --no-logprobs, --top-logprobs, --concurrency, --timeout,
// --retries, --backoff to c.
void add_http_options(CLI::App* c, HttpArgs& a);

// The backend options of endpoint i from the flags; `model_dir` (may be "") supplies
// DIR/tokenizer.json when --tokenizer is not given. InputError for bad values (a missing or
// extra --model-name).
evals::HttpBackendOptions http_backend_options(const HttpArgs& a, const std::string& model_dir, size_t i = 0);

}  // namespace dsv4::cli
