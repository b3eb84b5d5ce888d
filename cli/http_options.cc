#include "cli/http_options.h"

#include <filesystem>

#include "reference/errors.h"

namespace dsv4::cli {

void add_http_options(CLI::App* c, HttpArgs& a) {
  c->add_option("--endpoint", a.endpoints,
                "OpenAI-compatible server base URL (e.g. http://127.0.0.1:8000/v1): the http backend; repeat "
                "for several servers on the same items (OUT/<model name>/ each, OUT/compare.json)");
  c->add_option("--model-name", a.model_names, "with --endpoint: the server's model name (one per --endpoint)");
  c->add_option("--api-key-env", a.api_key_env,
                "environment variable holding the API key (never logged)")
      ->default_str(a.api_key_env);
  c->add_option(
      "--tokenizer", a.tokenizer,
      "with --endpoint: a local tokenizer.json (default: --model DIR/tokenizer.json when present)");
  c->add_flag("--server-tokenize", a.server_tokenize,
              "with --endpoint: tokenize through the server's /tokenize");
  c->add_flag("--text-prompts", a.text_prompts,
              "with --endpoint: send prompts as text, not token ids");
  c->add_flag("--stream", a.stream, "with --endpoint: generate through server-sent events");
  c->add_flag("--no-logprobs", a.no_logprobs, "with --endpoint: the server gives no logprobs");
  c->add_option("--top-logprobs", a.top_logprobs,
                "with --endpoint: top log-probs asked for when scoring candidates (every candidate "
                "must be in them)")
      ->default_str(std::to_string(a.top_logprobs));
  c->add_option("--concurrency", a.concurrency, "with --endpoint: requests in flight")
      ->default_str(std::to_string(a.concurrency));
  c->add_option("--timeout", a.timeout_s, "with --endpoint: seconds per request")
      ->default_str("600");
  c->add_option("--retries", a.retries, "with --endpoint: retries on 429/5xx/connection errors")
      ->default_str(std::to_string(a.retries));
  c->add_option("--backoff", a.backoff_s,
                "with --endpoint: first retry delay, seconds (doubles each retry)")
      ->default_str("0.5");
}

evals::HttpBackendOptions http_backend_options(const HttpArgs& a, const std::string& model_dir, size_t i) {
  if (a.model_names.size() != a.endpoints.size())
    throw InputError("--endpoint needs --model-name NAME (the server's model), one per --endpoint: " +
                     std::to_string(a.endpoints.size()) + " endpoints, " + std::to_string(a.model_names.size()) +
                     " model names");
  if (i >= a.endpoints.size()) throw InputError("--endpoint: no endpoint " + std::to_string(i));
  evals::HttpBackendOptions o;
  o.http.base_url = a.endpoints[i];
  o.http.api_key_env = a.api_key_env;
  o.http.concurrency = a.concurrency;
  o.http.timeout_s = a.timeout_s;
  o.http.max_retries = a.retries;
  o.http.backoff_s = a.backoff_s;
  o.model = a.model_names[i];
  o.tokenizer = a.tokenizer;
  if (o.tokenizer.empty() && !model_dir.empty()) {
    const auto tj = std::filesystem::path(model_dir) / "tokenizer.json";
    if (std::filesystem::exists(tj)) o.tokenizer = tj.string();
  }
  o.server_tokenize = a.server_tokenize;
  o.token_prompts = !a.text_prompts;
  o.stream = a.stream;
  o.logprobs = !a.no_logprobs;
  o.top_logprobs = a.top_logprobs;
  return o;
}

}  // namespace dsv4::cli
