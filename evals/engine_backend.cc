#include "evals/engine_backend.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>

#include "bench/flops.h"
#include "model/backend_factory.h"
#include "model/backend_sharded.h"
#include "model/checkpoint.h"
#include "model/kv_cache.h"
#include "model/model.h"
#include "model/sampler.h"
#include "model/tokenizer.h"
#include "reference/errors.h"

namespace dsv4::evals {

namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

// log-softmax of logits [V] at one id: x_id - (max + log sum exp(x - max)), in double.
struct LogSoftmax {
  double max = -INFINITY, log_z = 0;
  explicit LogSoftmax(const std::vector<float>& x) {
    for (float v : x) max = std::max(max, double(v));
    double z = 0;
    for (float v : x) z += std::exp(double(v) - max);
    log_z = max + std::log(z);
  }
  double at(const std::vector<float>& x, int32_t id) const { return double(x[size_t(id)]) - log_z; }
};

}  // namespace

std::string capability_names(uint32_t caps) {
  static const std::pair<uint32_t, const char*> kNames[] = {{kTokens, "tokens"},
                                                            {kChat, "chat"},
                                                            {kGenerate, "generate"},
                                                            {kLoglik, "loglik"},
                                                            {kCandidates, "candidates"},
                                                            {kTrace, "trace"}};
  std::string s;
  for (const auto& [bit, name] : kNames)
    if (caps & bit) s += (s.empty() ? "" : ",") + std::string(name);
  return s.empty() ? "none" : s;
}

EngineModel::EngineModel(const std::string& dir, const EngineOptions& o) : opt_(o), dir_(dir) {
  check_backend_name(o.backend);
  if (o.chunk <= 0) throw InputError("--chunk must be positive, found " + std::to_string(o.chunk));
  BackendOptions bo;
  if (o.numerics == "official")
    bo.numerics = Numerics::official;
  else if (o.numerics == "exact")
    bo.numerics = Numerics::exact;
  else
    throw InputError("--numerics: expected official or exact, found '" + o.numerics + "'");
  bo.kv_layout = kv_layout_from_name(o.kv_layout);
  if (!fs::is_directory(dir)) throw InputError("--model: '" + dir + "' is not a directory");
  model_ = std::make_unique<Model>(make_named_backend(
      o.backend, load_checkpoint(dir, engram_load_options(o.engram_tables)), bo, o.world, {o.tp, o.ep}));
  const fs::path tj = fs::path(dir) / "tokenizer.json";
  if (fs::exists(tj)) {
    tokenizer_ = std::make_unique<Tokenizer>(tj.string());
    if (tokenizer_->vocab_size() > model_->config().vocab_size)
      throw InputError("tokenizer '" + tj.string() + "' has " +
                       std::to_string(tokenizer_->vocab_size()) +
                       " tokens, more than the model's vocabulary of " +
                       std::to_string(model_->config().vocab_size));
  }
}

EngineModel::~EngineModel() = default;

std::string EngineModel::spec() const {
  return "engine:" + opt_.backend;
}

uint32_t EngineModel::capabilities() const {
  const uint32_t c = kGenerate | kLoglik | kCandidates | kTrace;
  return tokenizer_ ? (c | kTokens | kChat) : c;
}

int64_t EngineModel::vocab_size() const {
  return model_->config().vocab_size;
}

const Tokenizer& EngineModel::tok() const {
  if (!tokenizer_) throw Unsupported("model '" + dir_ + "' has no tokenizer.json");
  return *tokenizer_;
}

std::vector<int32_t> EngineModel::tokenize(std::string_view text) const {
  return tok().encode(text, false);
}

std::string EngineModel::detokenize(const std::vector<int32_t>& ids) const {
  return tok().decode(ids, true);
}

std::string EngineModel::render_chat(const std::vector<ChatMessage>& messages) const {
  std::vector<dsv4::ChatMessage> m;
  for (const auto& x : messages) m.push_back(dsv4::ChatMessage{x.role, x.content, "", false});
  return tok().apply_chat(m, /*add_generation_prompt=*/true, /*thinking=*/false);
}

void EngineModel::check_ids(const std::vector<int32_t>& ids, const char* what) const {
  const int64_t V = vocab_size();
  for (int32_t id : ids)
    if (id < 0 || id >= V)
      throw InputError(std::string(what) + ": token id " + std::to_string(id) +
                       " outside the vocabulary [0, " + std::to_string(V) + ")");
}

Completion EngineModel::generate(const std::vector<int32_t>& prompt, const SamplingParams& p) {
  check_ids(prompt, "generate prompt");
  if (prompt.empty()) throw InputError("generate: empty prompt");
  dsv4::SamplingParams sp;
  sp.temperature = p.temperature;
  sp.top_p = p.top_p;
  sp.seed = p.seed;
  sp.max_tokens = p.max_tokens;
  sp.prefill_chunk = opt_.chunk;
  if (model_->config().eos_token_id >= 0) sp.stop_ids = {int32_t(model_->config().eos_token_id)};
  Completion c;
  // Stop strings: decode the growing output after each token; stop once one appears.
  auto on_token = [&](int32_t t) {
    c.tokens.push_back(t);
    if (p.stop.empty() || !tokenizer_) return true;
    const std::string text = tokenizer_->decode(c.tokens, true);
    return std::none_of(p.stop.begin(), p.stop.end(),
                        [&](const std::string& s) { return text.find(s) != std::string::npos; });
  };
  const Generation g = dsv4::generate(*model_, prompt, sp, on_token);
  c.usage = {int64_t(prompt.size()), int64_t(c.tokens.size()), g.prefill_seconds, g.decode_seconds};
  if (tokenizer_) {
    c.text = tokenizer_->decode(c.tokens, true);
    for (const auto& s : p.stop)
      if (const size_t at = c.text.find(s); !s.empty() && at != std::string::npos)
        c.text.resize(at);
  }
  return c;
}

Loglik EngineModel::loglik(const std::vector<int32_t>& context,
                           const std::vector<int32_t>& continuation) {
  if (context.empty() || continuation.empty())
    throw InputError("loglik: context and continuation must be non-empty");
  check_ids(context, "loglik context");
  check_ids(continuation, "loglik continuation");
  Loglik r;
  Sequence s = model_->new_sequence();
  const auto t0 = Clock::now();
  std::vector<float> logits = model_->prefill(s, context, opt_.chunk);  // last position only
  r.usage.prefill_seconds = seconds_since(t0);
  const auto t1 = Clock::now();
  const int64_t V = vocab_size();
  // Row r of the continuation's forward predicts continuation[r + 1]; the prefill's last
  // row predicts continuation[0]. The last continuation token's logits are not needed.
  const int64_t n = int64_t(continuation.size());
  std::vector<float> rows;
  if (n > 1) {
    std::vector<int64_t> want(size_t(n - 1));
    for (int64_t i = 0; i + 1 < n; ++i) want[size_t(i)] = i;
    rows = model_->forward(s, continuation.data(), n - 1, want).logits;
  }
  r.greedy = true;
  for (int64_t i = 0; i < n; ++i) {
    std::vector<float> x =
        i == 0 ? logits : std::vector<float>(rows.begin() + (i - 1) * V, rows.begin() + i * V);
    const LogSoftmax ls(x);
    const int32_t t = continuation[size_t(i)];
    r.logprob += ls.at(x, t);
    const auto arg =
        std::max_element(x.begin(), x.end()) - x.begin();  // first max: ties to the lower id
    r.greedy = r.greedy && arg == t;
  }
  r.usage.decode_seconds = seconds_since(t1);
  r.usage.prompt_tokens = int64_t(context.size() + continuation.size());
  return r;
}

CandidateScores EngineModel::score_candidates(const std::vector<int32_t>& prompt,
                                              const std::vector<int32_t>& candidates) {
  if (prompt.empty() || candidates.empty())
    throw InputError("score_candidates: prompt and candidates must be non-empty");
  check_ids(prompt, "score_candidates prompt");
  check_ids(candidates, "score_candidates candidates");
  CandidateScores r;
  Sequence s = model_->new_sequence();
  const auto t0 = Clock::now();
  const std::vector<float> logits = model_->prefill(s, prompt, opt_.chunk);
  r.usage.prefill_seconds = seconds_since(t0);
  r.usage.prompt_tokens = int64_t(prompt.size());
  const LogSoftmax ls(logits);
  for (int32_t c : candidates) r.logprob.push_back(ls.at(logits, c));
  return r;
}

PromptTrace EngineModel::trace(const std::vector<int32_t>& prompt, TracePath path) {
  if (prompt.empty()) throw InputError("trace: empty prompt");
  check_ids(prompt, "trace prompt");
  if (path == TracePath::reference && !f64_) f64_ = std::make_unique<Model>(make_f64_backend(load_checkpoint(dir_)));
  Model& m = path == TracePath::reference ? *f64_ : *model_;
  Sequence s = m.new_sequence();
  const auto t0 = Clock::now();
  const int64_t T = int64_t(prompt.size());
  const int64_t last0 = (T - 1) / opt_.chunk * opt_.chunk;  // the last chunk's first token
  if (last0 > 0) m.prefill(s, std::vector<int32_t>(prompt.begin(), prompt.begin() + last0), opt_.chunk);
  ForwardOutput o = m.forward(s, prompt.data() + last0, T - last0, {T - last0 - 1}, false, /*trace=*/true);
  PromptTrace r;
  r.usage.prefill_seconds = seconds_since(t0);
  r.usage.prompt_tokens = T;
  r.logits = std::move(o.logits);
  r.kv_bytes = s.cache_bytes();
  r.decode_flops = decode_flops(m.config(), T).total();
  for (AttentionTrace& a : o.trace) {
    LayerTrace l;
    l.layer = a.layer;
    l.ratio = m.config().attention_shape(a.layer).ratio;
    l.heads = m.config().n_heads;
    l.output = std::move(a.output);
    l.selected = std::move(a.detail.selected);
    l.index_scores = std::move(a.detail.index_scores);
    l.window = std::move(a.detail.window);
    l.entries = std::move(a.detail.entries);
    l.weights = std::move(a.detail.weights);
    r.layers.push_back(std::move(l));
  }
  return r;
}

}  // namespace dsv4::evals
