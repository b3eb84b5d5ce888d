#include "evals/openai_server.h"

#include <httplib.h>

#include <algorithm>
#include <atomic>
#include <boost/json.hpp>
#include <cmath>
#include <ctime>
#include <numeric>
#include <set>
#include <thread>

#include "evals/results.h"
#include "reference/errors.h"

namespace dsv4::evals {

namespace {

namespace json = boost::json;

constexpr double kMaxTemperature = 2.0;  // OpenAI's range for temperature
constexpr int kExtraThreads = 2;         // beyond max_queue: room to answer 503 and /v1/models
constexpr time_t kKeepAliveSeconds = 2;

// A request error with its HTTP status; the handler turns it into the JSON error body.
struct ApiError {
  int status;
  std::string message;
};

[[noreturn]] void fail(int status, const std::string& message) {
  throw ApiError{status, message};
}

const char* error_type(int status) {
  switch (status) {
    case 404:
      return "not_found_error";
    case 413:
      return "request_too_large";
    case 503:
      return "server_busy";
    default:
      return status >= 500 ? "server_error" : "invalid_request_error";
  }
}

std::string error_body(int status, const std::string& message) {
  return json::serialize(json::object{
      {"error",
       json::object{{"message", message}, {"type", error_type(status)}, {"code", status}}}});
}

// ---- request validation ----

json::object parse_body(const std::string& body, const std::set<std::string>& allowed) {
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec) fail(400, "invalid JSON: " + ec.message());
  if (!v.is_object()) fail(400, "the request body must be a JSON object");
  for (const auto& kv : v.as_object())
    if (!allowed.count(std::string(kv.key()))) {
      std::string list;
      for (const auto& a : allowed) list += (list.empty() ? "" : ", ") + a;
      fail(400, "unknown field '" + std::string(kv.key()) + "' (accepted: " + list + ")");
    }
  return std::move(v.as_object());
}

int64_t get_int(const json::object& o, const char* k, int64_t dflt, int64_t lo, int64_t hi) {
  const json::value* v = o.if_contains(k);
  if (!v || v->is_null()) return dflt;
  int64_t x = 0;
  if (v->is_int64())
    x = v->as_int64();
  else if (v->is_uint64() && v->as_uint64() <= uint64_t(INT64_MAX))
    x = int64_t(v->as_uint64());
  else
    fail(400, std::string("'") + k + "' must be an integer");
  if (x < lo || x > hi)
    fail(400, std::string("'") + k + "' must be in [" + std::to_string(lo) + ", " +
                  std::to_string(hi) + "], found " + std::to_string(x));
  return x;
}

double get_number(const json::object& o, const char* k, double dflt, double lo, double hi) {
  const json::value* v = o.if_contains(k);
  if (!v || v->is_null()) return dflt;
  if (!v->is_number()) fail(400, std::string("'") + k + "' must be a number");
  const double x = v->to_number<double>();
  if (!(x >= lo && x <= hi))
    fail(400, std::string("'") + k + "' must be in [" + json::serialize(json::value(lo)) + ", " +
                  json::serialize(json::value(hi)) + "], found " + json::serialize(*v));
  return x;
}

bool get_bool(const json::object& o, const char* k, bool dflt) {
  const json::value* v = o.if_contains(k);
  if (!v || v->is_null()) return dflt;
  if (!v->is_bool()) fail(400, std::string("'") + k + "' must be true or false");
  return v->as_bool();
}

std::vector<std::string> get_stop(const json::object& o) {
  const json::value* v = o.if_contains("stop");
  std::vector<std::string> out;
  if (!v || v->is_null()) return out;
  if (v->is_string()) return {std::string(v->as_string())};
  if (!v->is_array()) fail(400, "'stop' must be a string or an array of strings");
  for (const auto& x : v->as_array()) {
    if (!x.is_string() || x.as_string().empty()) fail(400, "'stop' must hold non-empty strings");
    out.emplace_back(x.as_string());
  }
  return out;
}

std::vector<int32_t> get_ids(const json::value& v, const char* what, int64_t vocab) {
  if (!v.is_array())
    fail(400, std::string("'") + what + "' must be a string or an array of token ids");
  std::vector<int32_t> ids;
  ids.reserve(v.as_array().size());
  for (const auto& x : v.as_array()) {
    if (!x.is_int64() || x.as_int64() < 0 || x.as_int64() >= vocab)
      fail(400, std::string("'") + what + "': token " + json::serialize(x) +
                    " is not an id in [0, " + std::to_string(vocab) + ")");
    ids.push_back(int32_t(x.as_int64()));
  }
  return ids;
}

// ---- log-probs ----

// The top n of a log-softmax row, by log-prob descending, ties to the lower id.
std::vector<int32_t> top_ids(const std::vector<double>& lp, int64_t n) {
  std::vector<int32_t> ids(lp.size());
  std::iota(ids.begin(), ids.end(), 0);
  n = std::min<int64_t>(n, int64_t(ids.size()));
  std::partial_sort(ids.begin(), ids.begin() + n, ids.end(), [&](int32_t a, int32_t b) {
    return lp[size_t(a)] > lp[size_t(b)] || (lp[size_t(a)] == lp[size_t(b)] && a < b);
  });
  ids.resize(size_t(n));
  return ids;
}

// The OpenAI completions logprobs object under construction.
struct LogprobsJson {
  json::array tokens, token_logprobs, top_logprobs;
};

}  // namespace

bool AdmissionGate::try_enter() {
  std::lock_guard<std::mutex> lock(mu_);
  if (load_ >= capacity_) return false;
  ++load_;
  return true;
}

void AdmissionGate::leave() {
  std::lock_guard<std::mutex> lock(mu_);
  --load_;
}

int AdmissionGate::load() const {
  std::lock_guard<std::mutex> lock(mu_);
  return load_;
}

struct OpenAIServer::Impl {
  LanguageModel& model;
  ServeOptions opt;
  httplib::Server svr;
  AdmissionGate gate;
  std::mutex model_mu;  // one model call at a time
  std::atomic<int64_t> next_id{1};
  bool bound = false;
  std::atomic<bool> in_run{false};  // run() is inside listen_after_bind()
  std::vector<int32_t> all_ids;     // 0..V-1: score_candidates over the whole vocabulary

  Impl(LanguageModel& m, const ServeOptions& o) : model(m), opt(o), gate(o.max_queue) {
    all_ids.resize(size_t(o.vocab_size));
    std::iota(all_ids.begin(), all_ids.end(), 0);
  }

  bool has(uint32_t cap) const { return (model.capabilities() & cap) == cap; }
  // The largest logprobs accepted: --max-logprobs, or (0) any (top-N stops at the vocabulary).
  int64_t logprobs_limit() const { return opt.max_logprobs > 0 ? opt.max_logprobs : INT64_MAX; }

  void check_model(const json::object& o) {
    const json::value* m = o.if_contains("model");
    if (!m || !m->is_string()) fail(400, "'model' is required (a string)");
    if (m->as_string() != opt.model_name)
      fail(404, "model '" + std::string(m->as_string()) + "' does not exist (this server serves '" +
                    opt.model_name + "')");
  }

  // Runs fn under the admission gate and the model lock.
  template <class F>
  auto exclusive(F&& fn) {
    if (!gate.try_enter())
      fail(503,
           "server busy: " + std::to_string(opt.max_queue) + " requests already running or queued");
    struct Leave {
      AdmissionGate& g;
      ~Leave() { g.leave(); }
    } leave{gate};
    std::lock_guard<std::mutex> lock(model_mu);
    return fn();
  }

  std::string token_key(int32_t id, bool as_ids) {
    if (as_ids || !has(kTokens)) return "token_id:" + std::to_string(id);
    return valid_utf8(model.detokenize({id}));
  }

  // Log-softmax over the vocabulary after `prefix`.
  std::vector<double> distribution(const std::vector<int32_t>& prefix) {
    return model.score_candidates(prefix, all_ids).logprob;
  }

  void add_logprob_entry(LogprobsJson& L, const std::vector<double>& lp, int32_t id, int64_t n,
                         bool as_ids) {
    L.tokens.push_back(json::string(token_key(id, as_ids)));
    L.token_logprobs.push_back(lp[size_t(id)]);
    json::object top;
    for (int32_t t : top_ids(lp, n)) top[token_key(t, as_ids)] = lp[size_t(t)];
    L.top_logprobs.push_back(std::move(top));
  }

  std::vector<int32_t> prompt_ids(const json::object& o) {
    const json::value* p = o.if_contains("prompt");
    if (!p) fail(400, "'prompt' is required");
    std::vector<int32_t> ids;
    if (p->is_string()) {
      if (!has(kTokens)) fail(400, "this model has no tokenizer: send the prompt as token ids");
      ids = model.tokenize(std::string(p->as_string()));
    } else {
      ids = get_ids(*p, "prompt", opt.vocab_size);
    }
    if (ids.empty()) fail(400, "'prompt' is empty");
    if (int64_t(ids.size()) > opt.max_prompt_tokens)
      fail(400, "the prompt has " + std::to_string(ids.size()) +
                    " tokens, more than this server's limit of " +
                    std::to_string(opt.max_prompt_tokens) + " (--max-prompt-tokens)");
    return ids;
  }

  SamplingParams sampling(const json::object& o, int64_t min_tokens) {
    SamplingParams p;
    p.max_tokens = get_int(o, "max_tokens", 16, min_tokens, opt.max_new_tokens);
    p.temperature = get_number(o, "temperature", 1.0, 0.0, kMaxTemperature);
    p.top_p = get_number(o, "top_p", 1.0, 0.0, 1.0);
    if (p.top_p <= 0) fail(400, "'top_p' must be in (0, 1]");
    p.seed = uint64_t(get_int(o, "seed", 0, 0, INT64_MAX));
    p.stop = get_stop(o);
    if (get_int(o, "n", 1, 1, 1) != 1) fail(400, "'n' must be 1");
    return p;
  }

  // The generation of one request: tokens and text, with per-token log-probs when asked.
  struct Generated {
    Completion c;
    std::string finish_reason;
  };

  Generated run_generation(const std::vector<int32_t>& prompt, const SamplingParams& p,
                           int64_t logprobs, bool as_ids, LogprobsJson* L) {
    Generated g;
    if (p.max_tokens == 0) return g;
    if (L && p.max_tokens == 1 && p.temperature == 0) {
      // Greedy single token: the argmax of the distribution we need anyway.
      const std::vector<double> lp = distribution(prompt);
      const int32_t t = top_ids(lp, 1)[0];
      g.c.tokens = {t};
      if (has(kTokens)) g.c.text = valid_utf8(model.detokenize({t}));
      add_logprob_entry(*L, lp, t, logprobs, as_ids);
    } else {
      g.c = model.generate(prompt, p);
      g.c.text = valid_utf8(g.c.text);  // JSON strings are UTF-8: bad bytes become U+FFFD
      if (L) {
        std::vector<int32_t> prefix = prompt;
        for (int32_t t : g.c.tokens) {
          add_logprob_entry(*L, distribution(prefix), t, logprobs, as_ids);
          prefix.push_back(t);
        }
      }
    }
    g.finish_reason = int64_t(g.c.tokens.size()) >= p.max_tokens ? "length" : "stop";
    return g;
  }

  json::object usage_json(int64_t prompt_tokens, int64_t completion_tokens) {
    return {{"prompt_tokens", prompt_tokens},
            {"completion_tokens", completion_tokens},
            {"total_tokens", prompt_tokens + completion_tokens}};
  }

  // The text of each generated token as a stream chunk: differences of the decoded prefixes
  // (a token that ends inside a multi-byte character gives "" and the next one catches up);
  // the last chunk ends the text exactly at the (stop-cut) final text.
  std::vector<std::string> pieces(const Completion& c) {
    std::vector<std::string> out;
    if (!has(kTokens) || c.tokens.empty()) return {c.text};
    size_t emitted = 0;
    std::vector<int32_t> prefix;
    for (int32_t t : c.tokens) {
      prefix.push_back(t);
      const std::string d = valid_utf8(model.detokenize(prefix));
      const size_t upto = std::min(d.size(), c.text.size());
      if (upto > emitted && d.compare(0, upto, c.text, 0, upto) == 0) {
        out.push_back(c.text.substr(emitted, upto - emitted));
        emitted = upto;
      } else {
        out.emplace_back();
      }
    }
    if (emitted < c.text.size()) out.back() += c.text.substr(emitted);
    return out;
  }

  void send_events(httplib::Response& res, std::vector<std::string> events) {
    events.push_back("[DONE]");
    auto shared = std::make_shared<std::vector<std::string>>(std::move(events));
    res.set_chunked_content_provider("text/event-stream",
                                     [shared](size_t, httplib::DataSink& sink) {
                                       for (const auto& e : *shared) {
                                         const std::string frame = "data: " + e + "\n\n";
                                         if (!sink.write(frame.data(), frame.size())) return false;
                                       }
                                       sink.done();
                                       return true;
                                     });
  }

  void completions(const httplib::Request& req, httplib::Response& res) {
    static const std::set<std::string> kFields = {
        "model", "prompt", "max_tokens",     "temperature",
        "top_p", "seed",   "stop",           "logprobs",
        "echo",  "stream", "stream_options", "return_tokens_as_token_ids",
        "n",     "user"};
    const json::object o = parse_body(req.body, kFields);
    check_model(o);
    const bool echo = get_bool(o, "echo", false);
    const bool stream = get_bool(o, "stream", false);
    const bool as_ids = get_bool(o, "return_tokens_as_token_ids", false);
    const int64_t logprobs = get_int(o, "logprobs", -1, 0, logprobs_limit());
    const SamplingParams p = sampling(o, echo ? 0 : 1);
    if (echo && stream) fail(400, "'echo' with 'stream' is not supported");
    const std::string model_name = opt.model_name;
    const int64_t id = next_id++;
    json::object choice;
    int64_t prompt_n = 0, completion_n = 0;
    std::vector<std::string> chunks;
    exclusive([&] {
      const std::vector<int32_t> prompt = prompt_ids(o);
      prompt_n = int64_t(prompt.size());
      LogprobsJson L;
      const bool want_lp = logprobs >= 0;
      if (want_lp && echo) {
        if (prompt_n > opt.max_echo_tokens)
          fail(400, "echo with logprobs costs one prefill per prompt token: at most " +
                        std::to_string(opt.max_echo_tokens) + " tokens, found " +
                        std::to_string(prompt_n));
        // The first token has no context: null log-prob and top set (OpenAI's convention).
        L.tokens.push_back(json::string(token_key(prompt[0], as_ids)));
        L.token_logprobs.emplace_back(nullptr);
        L.top_logprobs.emplace_back(nullptr);
        std::vector<int32_t> prefix = {prompt[0]};
        for (size_t i = 1; i < prompt.size(); ++i) {
          add_logprob_entry(L, distribution(prefix), prompt[i], logprobs, as_ids);
          prefix.push_back(prompt[i]);
        }
      }
      Generated g = run_generation(prompt, p, logprobs, as_ids, want_lp ? &L : nullptr);
      completion_n = int64_t(g.c.tokens.size());
      std::string text = g.c.text;
      if (echo && has(kTokens)) text = valid_utf8(model.detokenize(prompt)) + text;
      if (stream) chunks = pieces(g.c);
      choice = {{"index", 0},
                {"text", text},
                {"finish_reason", g.finish_reason.empty() ? "length" : g.finish_reason}};
      choice["logprobs"] =
          want_lp ? json::value(json::object{{"tokens", std::move(L.tokens)},
                                             {"token_logprobs", std::move(L.token_logprobs)},
                                             {"top_logprobs", std::move(L.top_logprobs)}})
                  : json::value(nullptr);
    });
    json::object head{{"id", "cmpl-" + std::to_string(id)},
                      {"object", "text_completion"},
                      {"created", int64_t(std::time(nullptr))},
                      {"model", model_name}};
    if (!stream) {
      head["choices"] = json::array{choice};
      head["usage"] = usage_json(prompt_n, completion_n);
      res.set_content(json::serialize(head), "application/json");
      return;
    }
    std::vector<std::string> events;
    for (size_t i = 0; i < chunks.size(); ++i) {
      json::object e = head;
      const bool last = i + 1 == chunks.size();
      e["choices"] = json::array{json::object{
          {"index", 0},
          {"text", chunks[i]},
          {"logprobs", nullptr},
          {"finish_reason", last ? choice.at("finish_reason") : json::value(nullptr)}}};
      if (last) e["usage"] = usage_json(prompt_n, completion_n);
      events.push_back(json::serialize(e));
    }
    send_events(res, std::move(events));
  }

  void chat_completions(const httplib::Request& req, httplib::Response& res) {
    static const std::set<std::string> kFields = {
        "model", "messages", "max_tokens",     "temperature", "top_p", "seed",
        "stop",  "stream",   "stream_options", "n",           "user",  "logprobs"};
    const json::object o = parse_body(req.body, kFields);
    check_model(o);
    if (get_bool(o, "logprobs", false))
      fail(400, "'logprobs' is not supported on /v1/chat/completions here (use /v1/completions)");
    const bool stream = get_bool(o, "stream", false);
    const SamplingParams p = sampling(o, 1);
    if (!has(kChat | kTokens)) fail(400, "this model has no chat template (no tokenizer.json)");
    const json::value* mv = o.if_contains("messages");
    if (!mv || !mv->is_array() || mv->as_array().empty())
      fail(400, "'messages' must be a non-empty array");
    std::vector<ChatMessage> msgs;
    for (const auto& m : mv->as_array()) {
      if (!m.is_object()) fail(400, "each message must be an object {role, content}");
      for (const auto& kv : m.as_object())
        if (kv.key() != "role" && kv.key() != "content")
          fail(400,
               "unknown message field '" + std::string(kv.key()) + "' (accepted: role, content)");
      const json::value* r = m.as_object().if_contains("role");
      const json::value* c = m.as_object().if_contains("content");
      if (!r || !r->is_string() || !c || !c->is_string())
        fail(400, "each message needs string 'role' and 'content'");
      const std::string role(r->as_string());
      if (role != "system" && role != "user" && role != "assistant")
        fail(400, "message role must be system, user or assistant, found '" + role + "'");
      msgs.push_back({role, std::string(c->as_string())});
    }
    const int64_t id = next_id++;
    int64_t prompt_n = 0;
    Generated g;
    std::vector<std::string> chunks;
    exclusive([&] {
      const std::vector<int32_t> prompt = model.tokenize(model.render_chat(msgs));
      prompt_n = int64_t(prompt.size());
      if (prompt_n > opt.max_prompt_tokens)
        fail(400, "the prompt has " + std::to_string(prompt_n) +
                      " tokens, more than this server's limit of " +
                      std::to_string(opt.max_prompt_tokens) + " (--max-prompt-tokens)");
      g = run_generation(prompt, p, -1, false, nullptr);
      if (stream) chunks = pieces(g.c);
    });
    json::object head{{"id", "chatcmpl-" + std::to_string(id)},
                      {"created", int64_t(std::time(nullptr))},
                      {"model", opt.model_name}};
    const json::object usage = usage_json(prompt_n, int64_t(g.c.tokens.size()));
    if (!stream) {
      head["object"] = "chat.completion";
      head["choices"] = json::array{
          json::object{{"index", 0},
                       {"message", json::object{{"role", "assistant"}, {"content", g.c.text}}},
                       {"finish_reason", g.finish_reason}}};
      head["usage"] = usage;
      res.set_content(json::serialize(head), "application/json");
      return;
    }
    head["object"] = "chat.completion.chunk";
    std::vector<std::string> events;
    for (size_t i = 0; i < chunks.size(); ++i) {
      json::object e = head;
      const bool last = i + 1 == chunks.size();
      json::object delta{{"content", chunks[i]}};
      if (i == 0) delta["role"] = "assistant";
      e["choices"] = json::array{json::object{
          {"index", 0},
          {"delta", delta},
          {"finish_reason", last ? json::value(g.finish_reason) : json::value(nullptr)}}};
      if (last) e["usage"] = usage;
      events.push_back(json::serialize(e));
    }
    send_events(res, std::move(events));
  }

  void tokenize(const httplib::Request& req, httplib::Response& res) {
    const json::object o = parse_body(req.body, {"model", "prompt", "add_special_tokens"});
    check_model(o);
    if (!has(kTokens)) fail(400, "this model has no tokenizer (no tokenizer.json)");
    if (get_bool(o, "add_special_tokens", false))
      fail(400, "'add_special_tokens': only false is supported");
    const json::value* p = o.if_contains("prompt");
    if (!p || !p->is_string()) fail(400, "'prompt' must be a string");
    std::vector<int32_t> ids =
        exclusive([&] { return model.tokenize(std::string(p->as_string())); });
    json::array t;
    for (int32_t x : ids) t.push_back(x);
    res.set_content(json::serialize(json::object{{"tokens", t},
                                                 {"count", int64_t(ids.size())},
                                                 {"max_model_len", opt.max_prompt_tokens}}),
                    "application/json");
  }

  void detokenize(const httplib::Request& req, httplib::Response& res) {
    const json::object o = parse_body(req.body, {"model", "tokens"});
    check_model(o);
    if (!has(kTokens)) fail(400, "this model has no tokenizer (no tokenizer.json)");
    const json::value* t = o.if_contains("tokens");
    if (!t) fail(400, "'tokens' is required");
    const std::vector<int32_t> ids = get_ids(*t, "tokens", opt.vocab_size);
    const std::string text = exclusive([&] { return valid_utf8(model.detokenize(ids)); });
    res.set_content(json::serialize(json::object{{"prompt", text}}), "application/json");
  }

  void models(httplib::Response& res) {
    const json::object m{{"id", opt.model_name},
                         {"object", "model"},
                         {"created", int64_t(0)},
                         {"owned_by", "dsv4"},
                         {"max_model_len", opt.max_prompt_tokens}};
    res.set_content(json::serialize(json::object{{"object", "list"}, {"data", json::array{m}}}),
                    "application/json");
  }

  // Every handler: ApiError -> its status; a model's InputError/Unsupported -> 400; else 500.
  template <class F>
  httplib::Server::Handler guarded(F f) {
    return [this, f](const httplib::Request& req, httplib::Response& res) {
      auto error = [&](int status, const std::string& msg) {
        res.status = status;
        res.set_content(error_body(status, msg), "application/json");
      };
      try {
        (this->*f)(req, res);
      } catch (const ApiError& e) {
        error(e.status, e.message);
      } catch (const InputError& e) {
        error(400, e.what());
      } catch (const Unsupported& e) {
        error(400, e.what());
      } catch (const std::exception& e) {
        error(500, std::string("model failure: ") + e.what());
      }
    };
  }

  void routes() {
    svr.Get("/v1/models", [this](const httplib::Request&, httplib::Response& res) { models(res); });
    svr.Post("/v1/completions", guarded(&Impl::completions));
    svr.Post("/v1/chat/completions", guarded(&Impl::chat_completions));
    svr.Post("/tokenize", guarded(&Impl::tokenize));
    svr.Post("/detokenize", guarded(&Impl::detokenize));
    // Errors raised by the library itself (unknown path 404, body too large 413, ...) get
    // the same JSON body.
    svr.set_error_handler([this](const httplib::Request& req, httplib::Response& res) {
      if (!res.body.empty()) return;
      std::string msg = "HTTP " + std::to_string(res.status);
      if (res.status == 404) msg = "no such endpoint: " + req.method + " " + req.path;
      if (res.status == 413)
        msg = "request body larger than this server's limit of " +
              std::to_string(opt.max_body_bytes) + " bytes";
      res.set_content(error_body(res.status, msg), "application/json");
    });
    svr.set_payload_max_length(opt.max_body_bytes);
    svr.set_keep_alive_timeout(kKeepAliveSeconds);
    const int threads = opt.max_queue + kExtraThreads;
    svr.new_task_queue = [threads] { return new httplib::ThreadPool(size_t(threads)); };
  }
};

OpenAIServer::OpenAIServer(LanguageModel& model, const ServeOptions& o) {
  if (o.model_name.empty()) throw InputError("serve: the model name is empty");
  if (o.vocab_size <= 0) throw InputError("serve: the vocabulary size must be positive");
  if (o.port < 0 || o.port > 65535)
    throw InputError("--port must be in [0, 65535], found " + std::to_string(o.port));
  if (o.max_queue < 1)
    throw InputError("--max-queue must be >= 1, found " + std::to_string(o.max_queue));
  if (o.max_prompt_tokens < 1) throw InputError("--max-prompt-tokens must be >= 1");
  if (o.max_logprobs < 0) throw InputError("--max-logprobs must be >= 0 (0: the whole vocabulary)");
  if (o.max_body_bytes < 1) throw InputError("--max-body-mb must be positive");
  impl_ = std::make_unique<Impl>(model, o);
  impl_->routes();
}

OpenAIServer::~OpenAIServer() {
  stop();
}

int OpenAIServer::bind() {
  Impl& i = *impl_;
  int port = i.opt.port;
  if (port == 0) {
    port = i.svr.bind_to_any_port(i.opt.host);
    if (port < 0) throw InputError("serve: cannot bind " + i.opt.host + " to a free port");
  } else if (!i.svr.bind_to_port(i.opt.host, port)) {
    throw InputError("serve: cannot bind " + i.opt.host + ":" + std::to_string(port) +
                     " (in use, or not an address here)");
  }
  i.bound = true;
  return port;
}

void OpenAIServer::run() {
  if (!impl_->bound) throw InputError("serve: run() before bind()");
  impl_->in_run = true;
  impl_->svr.listen_after_bind();
  impl_->in_run = false;
}

// A stop() that lands between run()'s start and the accept loop's start would be lost (the
// library ignores stop() while not running): wait for the loop to run first.
void OpenAIServer::stop() {
  if (!impl_) return;
  while (impl_->in_run && !impl_->svr.is_running())
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  impl_->svr.stop();
}

}  // namespace dsv4::evals
