#include "evals/http_backend.h"

#include <boost/json.hpp>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <unordered_map>

#include "model/tokenizer.h"
#include "reference/errors.h"

namespace dsv4::evals {

namespace {

namespace json = boost::json;
using Clock = std::chrono::steady_clock;

constexpr std::string_view kTokenIdPrefix = "token_id:";  // vLLM's return_tokens_as_token_ids keys

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// A malformed response: names the endpoint and what was missing.
[[noreturn]] void bad_response(const std::string& path, const std::string& what) {
  throw std::runtime_error("server response to " + path + ": " + what);
}

const json::value& at_path(const json::value& v, std::initializer_list<std::string_view> keys,
                           const std::string& path) {
  const json::value* cur = &v;
  std::string trail;
  for (std::string_view k : keys) {
    trail += (trail.empty() ? "" : ".") + std::string(k);
    if (k == "0") {
      if (!cur->is_array() || cur->as_array().empty()) bad_response(path, "no " + trail);
      cur = &cur->as_array()[0];
    } else {
      const json::value* next = cur->is_object() ? cur->as_object().if_contains(k) : nullptr;
      if (!next) bad_response(path, "no " + trail);
      cur = next;
    }
  }
  return *cur;
}

json::value parse_response(const std::string& path, const std::string& body) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec) bad_response(path, "not JSON (" + ec.message() + ")");
  return v;
}

json::array ids_json(const std::vector<int32_t>& ids) {
  json::array a;
  a.reserve(ids.size());
  for (int32_t x : ids) a.push_back(x);
  return a;
}

void put_sampling(json::object& b, const std::string& model, const SamplingParams& p) {
  b["model"] = model;
  b["max_tokens"] = p.max_tokens;
  b["temperature"] = p.temperature;
  b["top_p"] = p.top_p;
  // The OpenAI API's seed is a signed 64-bit integer: a larger one would be refused by
  // servers (or wrapped), silently changing the sampling.
  if (p.seed > uint64_t(INT64_MAX))
    throw InputError("http backend: seed " + std::to_string(p.seed) + " does not fit the API's signed 64-bit seed");
  b["seed"] = int64_t(p.seed);
  if (!p.stop.empty()) {
    json::array s;
    for (const auto& x : p.stop) s.push_back(json::string(x));
    b["stop"] = s;
  }
}

void read_usage(const json::value& v, Usage& u) {
  const json::value* us = v.is_object() ? v.as_object().if_contains("usage") : nullptr;
  if (!us || !us->is_object()) return;
  const json::object& o = us->as_object();
  if (const auto* x = o.if_contains("prompt_tokens"); x && x->is_int64())
    u.prompt_tokens = x->as_int64();
  if (const auto* x = o.if_contains("completion_tokens"); x && x->is_int64())
    u.completion_tokens = x->as_int64();
  // Cached prompt tokens: OpenAI's prompt_tokens_details.cached_tokens, or DeepSeek's
  // prompt_cache_hit_tokens; reasoning tokens: completion_tokens_details.reasoning_tokens.
  auto detail = [&](const char* obj, const char* key) -> const json::value* {
    const auto* d = o.if_contains(obj);
    return d && d->is_object() ? d->as_object().if_contains(key) : nullptr;
  };
  if (const auto* x = detail("prompt_tokens_details", "cached_tokens"); x && x->is_int64())
    u.cached_prompt_tokens = x->as_int64();
  else if (const auto* y = o.if_contains("prompt_cache_hit_tokens"); y && y->is_int64())
    u.cached_prompt_tokens = y->as_int64();
  if (const auto* x = detail("completion_tokens_details", "reasoning_tokens"); x && x->is_int64())
    u.reasoning_tokens = x->as_int64();
}

// The generated text of one response or stream chunk: choices[0].text (completions) or
// choices[0].message.content / choices[0].delta.content (chat). "" when absent.
std::string choice_text(const json::value& v) {
  const json::value* ch = v.is_object() ? v.as_object().if_contains("choices") : nullptr;
  if (!ch || !ch->is_array() || ch->as_array().empty() || !ch->as_array()[0].is_object()) return "";
  const json::object& c = ch->as_array()[0].as_object();
  if (const auto* t = c.if_contains("text"); t && t->is_string())
    return std::string(t->as_string());
  for (const char* k : {"message", "delta"})
    if (const auto* m = c.if_contains(k); m && m->is_object())
      if (const auto* t = m->as_object().if_contains("content"); t && t->is_string())
        return std::string(t->as_string());
  return "";
}

// One request that generates: non-streaming (one JSON body) or streaming (SSE chunks whose
// texts concatenate; "[DONE]" ends).
Completion request_completion(HttpTransport& http, const std::string& path, json::object body,
                              bool stream) {
  Completion c;
  const auto t0 = Clock::now();
  if (!stream) {
    const json::value v = parse_response(path, http.post_json(path, json::serialize(body)));
    (void)at_path(v, {"choices", "0"}, path);
    c.text = choice_text(v);
    read_usage(v, c.usage);
    c.usage.prefill_seconds = seconds_since(t0);  // no first-token time without a stream
    return c;
  }
  body["stream"] = true;
  bool first = true, done = false;
  http.post_json(path, json::serialize(body), [&](std::string_view data) {
    if (data == "[DONE]") {
      done = true;
      return;
    }
    if (first) c.usage.prefill_seconds = seconds_since(t0);
    first = false;
    const json::value v = parse_response(path, std::string(data));
    c.text += choice_text(v);
    read_usage(v, c.usage);
  });
  if (!done) bad_response(path, "the event stream ended without [DONE]");
  c.usage.decode_seconds = seconds_since(t0) - c.usage.prefill_seconds;
  return c;
}

}  // namespace

HttpModel::HttpModel(const HttpBackendOptions& o) : opt_(o) {
  if (o.model.empty()) throw InputError("--model-name is required with --endpoint");
  if (o.top_logprobs < 1)
    throw InputError("--top-logprobs must be >= 1, found " + std::to_string(o.top_logprobs));
  http_ = std::make_unique<HttpTransport>(o.http);
  if (!o.tokenizer.empty()) {
    if (!std::filesystem::is_regular_file(o.tokenizer))
      throw InputError("--tokenizer: '" + o.tokenizer + "' is not a file");
    tokenizer_ = std::make_unique<Tokenizer>(o.tokenizer);
  }
}

HttpModel::~HttpModel() = default;

std::string HttpModel::spec() const {
  return "http:" + opt_.model + "@" + http_->base_url();
}

const std::string& HttpModel::base_url() const {
  return http_->base_url();
}

uint32_t HttpModel::capabilities() const {
  uint32_t c = kGenerate;
  if (tokenizer_ || opt_.server_tokenize) c |= kTokens;
  if (tokenizer_) c |= kChat;
  if (opt_.logprobs) c |= kLoglik | kCandidates;
  return c;
}

std::vector<int32_t> HttpModel::tokenize(std::string_view text) const {
  if (tokenizer_) return tokenizer_->encode(text, false);
  if (!opt_.server_tokenize)
    throw Unsupported("http backend: no tokenizer (give --tokenizer FILE or --server-tokenize)");
  const json::object b{{"model", opt_.model}, {"prompt", text}, {"add_special_tokens", false}};
  const json::value v =
      parse_response("/tokenize", http_->post_json("/tokenize", json::serialize(b)));
  const json::value& t = at_path(v, {"tokens"}, "/tokenize");
  if (!t.is_array()) bad_response("/tokenize", "tokens is not an array");
  std::vector<int32_t> ids;
  for (const auto& x : t.as_array()) {
    if (!x.is_int64()) bad_response("/tokenize", "a token is not an integer");
    ids.push_back(int32_t(x.as_int64()));
  }
  return ids;
}

std::string HttpModel::detokenize(const std::vector<int32_t>& ids) const {
  if (tokenizer_) return tokenizer_->decode(ids, true);
  if (!opt_.server_tokenize)
    throw Unsupported("http backend: no tokenizer (give --tokenizer FILE or --server-tokenize)");
  const json::object b{{"model", opt_.model}, {"tokens", ids_json(ids)}};
  const json::value v =
      parse_response("/detokenize", http_->post_json("/detokenize", json::serialize(b)));
  const json::value& t = at_path(v, {"prompt"}, "/detokenize");
  if (!t.is_string()) bad_response("/detokenize", "prompt is not a string");
  return std::string(t.as_string());
}

std::string HttpModel::render_chat(const std::vector<ChatMessage>& messages) const {
  if (!tokenizer_)
    throw Unsupported("http backend: render_chat needs a local tokenizer (--tokenizer FILE)");
  std::vector<dsv4::ChatMessage> m;
  for (const auto& x : messages) m.push_back(dsv4::ChatMessage{x.role, x.content, "", false});
  return tokenizer_->apply_chat(m, /*add_generation_prompt=*/true, /*thinking=*/false);
}

// Cuts the text at the first stop string (servers do; this makes it hold for any server)
// and fills tokens from the local tokenizer when there is one.
Completion HttpModel::finish(Completion c, const SamplingParams& p) const {
  for (const auto& s : p.stop)
    if (const size_t at = c.text.find(s); !s.empty() && at != std::string::npos) c.text.resize(at);
  if (tokenizer_) c.tokens = tokenizer_->encode(c.text, false);
  return c;
}

Completion HttpModel::generate(const std::vector<int32_t>& prompt, const SamplingParams& p) {
  if (prompt.empty()) throw InputError("generate: empty prompt");
  if (!opt_.token_prompts) return generate_text(detokenize(prompt), p);
  json::object b;
  put_sampling(b, opt_.model, p);
  b["prompt"] = ids_json(prompt);
  Completion c = request_completion(*http_, "/v1/completions", std::move(b), opt_.stream);
  if (c.usage.prompt_tokens == 0) c.usage.prompt_tokens = int64_t(prompt.size());
  return finish(std::move(c), p);
}

Completion HttpModel::generate_text(std::string_view prompt, const SamplingParams& p) {
  json::object b;
  put_sampling(b, opt_.model, p);
  b["prompt"] = prompt;
  return finish(request_completion(*http_, "/v1/completions", std::move(b), opt_.stream), p);
}

Completion HttpModel::chat(const std::vector<ChatMessage>& messages, const SamplingParams& p) {
  if (messages.empty()) throw InputError("chat: no messages");
  json::object b;
  put_sampling(b, opt_.model, p);
  json::array m;
  for (const auto& x : messages)
    m.push_back(json::object{{"role", x.role}, {"content", x.content}});
  b["messages"] = m;
  return finish(request_completion(*http_, "/v1/chat/completions", std::move(b), opt_.stream), p);
}

int32_t HttpModel::key_to_id(const std::string& key) const {
  if (key.rfind(kTokenIdPrefix, 0) == 0) {
    const std::string n = key.substr(kTokenIdPrefix.size());
    char* end = nullptr;
    const long v = std::strtol(n.c_str(), &end, 10);
    return (!n.empty() && *end == '\0' && v >= 0) ? int32_t(v) : -1;
  }
  if (!tokenizer_) return -1;
  const std::vector<int32_t> ids = tokenizer_->encode(key, false);
  return ids.size() == 1 ? ids[0] : -1;
}

Loglik HttpModel::loglik(const std::vector<int32_t>& context,
                         const std::vector<int32_t>& continuation) {
  if (!opt_.logprobs) throw Unsupported("http backend: the server gives no logprobs (loglik)");
  if (context.empty() || continuation.empty())
    throw InputError("loglik: context and continuation must be non-empty");
  const std::string path = "/v1/completions";
  std::vector<int32_t> all = context;
  all.insert(all.end(), continuation.begin(), continuation.end());
  // One generated token (some servers refuse max_tokens 0); its entry past the prompt is ignored.
  const json::object b{{"model", opt_.model},
                       {"prompt", ids_json(all)},
                       {"max_tokens", 1},
                       {"temperature", 0.0},
                       {"echo", true},
                       {"logprobs", 1},
                       {"return_tokens_as_token_ids", true}};
  const auto t0 = Clock::now();
  const json::value v = parse_response(path, http_->post_json(path, json::serialize(b)));
  Loglik r;
  r.usage.prefill_seconds = seconds_since(t0);
  r.usage.prompt_tokens = int64_t(all.size());
  const json::value& lp = at_path(v, {"choices", "0", "logprobs"}, path);
  const json::value& tlp = at_path(lp, {"token_logprobs"}, path);
  const json::value& top = at_path(lp, {"top_logprobs"}, path);
  if (!tlp.is_array() || !top.is_array() || tlp.as_array().size() < all.size() ||
      top.as_array().size() < all.size())
    bad_response(path, "echo returned fewer log-probs than the " + std::to_string(all.size()) +
                           " prompt tokens (the server does not support echo with logprobs)");
  r.greedy = true;
  for (size_t i = context.size(); i < all.size(); ++i) {
    const json::value& x = tlp.as_array()[i];
    if (!x.is_number())
      bad_response(path, "token_logprobs[" + std::to_string(i) + "] is not a number");
    r.logprob += x.to_number<double>();
    // Top-1 of this position: the largest log-prob, ties to the lower id (the engine's rule).
    const json::value& t = top.as_array()[i];
    if (!t.is_object() || t.as_object().empty())
      bad_response(path, "top_logprobs[" + std::to_string(i) + "] is empty");
    int32_t best = -1;
    double best_lp = -INFINITY;
    for (const auto& kv : t.as_object()) {
      const int32_t id = key_to_id(std::string(kv.key()));
      const double l = kv.value().to_number<double>();
      if (l > best_lp || (l == best_lp && id >= 0 && (best < 0 || id < best)))
        best = id, best_lp = l;
    }
    r.greedy = r.greedy && best == all[i];
  }
  return r;
}

CandidateScores HttpModel::score_candidates(const std::vector<int32_t>& prompt,
                                            const std::vector<int32_t>& candidates) {
  if (!opt_.logprobs)
    throw Unsupported("http backend: the server gives no logprobs (score_candidates)");
  if (prompt.empty() || candidates.empty())
    throw InputError("score_candidates: prompt and candidates must be non-empty");
  if (candidates.size() > size_t(opt_.top_logprobs))
    throw Unsupported("http backend: " + std::to_string(candidates.size()) +
                      " candidates cannot all be among the top " +
                      std::to_string(opt_.top_logprobs) +
                      " log-probs (raise --top-logprobs to the vocabulary size where the server "
                      "allows it)");
  const std::string path = "/v1/completions";
  const json::object b{
      {"model", opt_.model}, {"prompt", ids_json(prompt)},    {"max_tokens", 1},
      {"temperature", 0.0},  {"logprobs", opt_.top_logprobs}, {"return_tokens_as_token_ids", true}};
  const auto t0 = Clock::now();
  const json::value v = parse_response(path, http_->post_json(path, json::serialize(b)));
  CandidateScores r;
  r.usage.prefill_seconds = seconds_since(t0);
  r.usage.prompt_tokens = int64_t(prompt.size());
  const json::value& top = at_path(v, {"choices", "0", "logprobs", "top_logprobs", "0"}, path);
  if (!top.is_object()) bad_response(path, "top_logprobs[0] is not an object");
  std::unordered_map<int32_t, double> by_id;
  for (const auto& kv : top.as_object())
    if (const int32_t id = key_to_id(std::string(kv.key())); id >= 0)
      by_id[id] = kv.value().to_number<double>();
  for (int32_t c : candidates) {
    const auto it = by_id.find(c);
    if (it == by_id.end())
      throw Unsupported("http backend: candidate token " + std::to_string(c) +
                        " is not among the server's top " + std::to_string(opt_.top_logprobs) +
                        " log-probs (raise --top-logprobs; the scores would not be exact)");
    r.logprob.push_back(it->second);
  }
  return r;
}

}  // namespace dsv4::evals
