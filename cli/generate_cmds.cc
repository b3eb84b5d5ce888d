#include "cli/generate_cmds.h"

#include <fmt/core.h>

#include <chrono>
#include <filesystem>
#include <fstream>

#include "comm/comm.h"
#include "model/backend_factory.h"
#include "model/backend_sharded.h"
#include "model/checkpoint.h"
#include "model/model.h"
#include "model/safetensors.h"
#include "model/sampler.h"
#include "model/tokenizer.h"
#include "reference/errors.h"

namespace dsv4::cli {

namespace {

namespace fs = std::filesystem;

std::vector<int32_t> read_tokens(const std::string& path, int64_t vocab) {
  std::ifstream f(path);
  if (!f) throw InputError("--tokens: cannot read '" + path + "'");
  std::vector<int32_t> ids;
  std::string line;
  int64_t n = 0;
  while (std::getline(f, line)) {
    ++n;
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    size_t used = 0;
    long long v = -1;
    try {
      v = std::stoll(line, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used == 0 || line.find_first_not_of(" \t\r", used) != std::string::npos || v < 0 || v >= vocab)
      throw InputError("--tokens: line " + std::to_string(n) + " of '" + path + "' is not a token id in [0, " +
                       std::to_string(vocab) + "): '" + line + "'");
    ids.push_back(int32_t(v));
  }
  if (ids.empty()) throw InputError("--tokens: '" + path + "' holds no token ids");
  return ids;
}

Numerics numerics_of(const std::string& s) {
  if (s == "official") return Numerics::official;
  if (s == "exact") return Numerics::exact;
  throw InputError("--numerics: expected official or exact, found '" + s + "'");
}

struct Loaded {
  std::unique_ptr<Model> model;
  std::unique_ptr<Tokenizer> tokenizer;  // when DIR/tokenizer.json exists
  std::vector<int32_t> prompt;
};

// The named backend (--backend ref | cuda), or with more than one rank or a --tp/--ep above 1
// this rank's shard of it (model/backend_factory.h; the layout is checked against the ranks).
std::unique_ptr<Backend> make_backend(ModelWeights w, BackendOptions o, const ModelRunArgs& a, comm::Comm& world) {
  return make_named_backend(a.backend, std::move(w), o, &world, {a.tp, a.ep});
}

// The end of a failed command: one rank alone prints and returns `code`; with more ranks the
// failing rank ends them all (comm abort), so none waits in a collective for it.
int fail(comm::Comm* world, const std::string& line, int code) {
  if (world && world->size() > 1) world->abort(line, code);
  fmt::print(stderr, "{}\n", line);
  return code;
}

Loaded load(const ModelRunArgs& a, comm::Comm& world) {
  check_backend_name(a.backend);
  if (a.precision != "f32")
    throw InputError("--precision: the model runs in f32 (f64 exists per op: dsv4 op --precision f64)");
  if (a.model.empty()) throw InputError("--model is required");
  const int given = int(!a.prompt.empty()) + int(!a.chat.empty()) + int(!a.tokens_file.empty());
  if (given != 1) throw InputError("give exactly one of --prompt, --chat and --tokens");
  if (a.chunk <= 0) throw InputError("--chunk must be positive");
  BackendOptions o;
  o.numerics = numerics_of(a.numerics);
  o.kv_layout = kv_layout_from_name(a.kv_layout);
  Loaded l;
  ModelWeights w = load_checkpoint(a.model, engram_load_options(a.engram_tables));
  const int64_t vocab = w.config.vocab_size;
  l.model = std::make_unique<Model>(make_backend(std::move(w), o, a, world));
  const fs::path tok = fs::path(a.model) / "tokenizer.json";
  if (fs::exists(tok)) l.tokenizer = std::make_unique<Tokenizer>(tok.string());
  if (!a.tokens_file.empty()) {
    l.prompt = read_tokens(a.tokens_file, vocab);
  } else {
    if (!l.tokenizer) throw InputError("--prompt/--chat need a tokenizer: '" + tok.string() + "' does not exist (use --tokens)");
    if (l.tokenizer->vocab_size() > vocab)
      throw InputError("tokenizer '" + tok.string() + "' has " + std::to_string(l.tokenizer->vocab_size()) +
                       " tokens, more than the model's vocabulary of " + std::to_string(vocab));
    const std::string text =
        a.chat.empty() ? a.prompt : l.tokenizer->apply_chat({ChatMessage{"user", a.chat, "", false}}, true, a.thinking);
    l.prompt = l.tokenizer->encode(text, !a.chat.empty());
    if (l.prompt.empty()) throw InputError("the prompt encodes to no tokens");
  }
  return l;
}

}  // namespace

int forward_command(const ModelRunArgs& a) {
  std::unique_ptr<comm::Comm> world;  // outlives the model (its TP/EP groups are split from it)
  try {
    world = comm::init_world();
    if (a.out.empty()) throw InputError("--out is required");
    const fs::path parent = fs::path(a.out).has_parent_path() ? fs::path(a.out).parent_path() : ".";
    if (!fs::is_directory(parent)) throw InputError("--out: directory '" + parent.string() + "' does not exist");
    Loaded l = load(a, *world);
    Model& m = *l.model;
    const auto& c = m.config();
    const int64_t T = int64_t(l.prompt.size()), V = c.vocab_size, H = c.hc_mult * c.dim;
    std::vector<float> logits(size_t(T * V));
    std::vector<std::vector<float>> hidden(a.hidden ? size_t(c.n_layers) : 0, std::vector<float>(size_t(T * H)));
    Sequence s = m.new_sequence();
    const auto t0 = std::chrono::steady_clock::now();
    for (int64_t i = 0; i < T; i += a.chunk) {
      const int64_t n = std::min(a.chunk, T - i);
      std::vector<int64_t> rows(static_cast<size_t>(n));
      for (int64_t r = 0; r < n; ++r) rows[size_t(r)] = r;
      auto o = m.forward(s, l.prompt.data() + i, n, rows, a.hidden);
      std::copy(o.logits.begin(), o.logits.end(), logits.begin() + i * V);
      for (size_t L = 0; L < o.hidden.size(); ++L) std::copy(o.hidden[L].begin(), o.hidden[L].end(), hidden[L].begin() + i * H);
    }
    const double sec = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (world->rank() != 0) return 0;  // every rank holds the same logits; rank 0 writes them
    SafetensorsWriter w;
    w.set_metadata("dsv4", "forward");
    w.set_metadata("model", a.model);
    w.set_metadata("backend", a.backend);
    w.set_metadata("precision", a.precision);
    w.set_metadata("numerics", a.numerics);
    w.set_metadata("kv_layout", a.kv_layout);
    w.set_metadata("chunk", std::to_string(a.chunk));
    if (world->size() > 1 || a.tp > 1 || a.ep > 1)
      w.set_metadata("layout", fmt::format("ranks={} tp={} ep={}", world->size(), a.tp, a.ep));
    w.set_metadata("config", config_to_json(c));
    w.add("tokens", DType::I32, {T}, l.prompt.data(), l.prompt.size() * sizeof(int32_t));
    w.add("logits", DType::F32, {T, V}, logits.data(), logits.size() * sizeof(float));
    for (size_t L = 0; L < hidden.size(); ++L)
      w.add("hidden." + std::to_string(L), DType::F32, {T, c.hc_mult, c.dim}, hidden[L].data(), hidden[L].size() * sizeof(float));
    w.write(a.out);
    fmt::print(stderr, "dsv4 forward: {} tokens in {:.2f} s ({:.1f} tokens/s), logits [{}, {}] -> {}\n", T, sec,
               double(T) / sec, T, V, a.out);
    return 0;
  } catch (const InputError& e) {
    return fail(world.get(), fmt::format("dsv4 forward: {}", e.what()), 2);
  } catch (const std::exception& e) {
    return fail(world.get(), fmt::format("dsv4 forward: error: {}", e.what()), 1);
  }
}

int generate_command(const ModelRunArgs& a) {
  std::unique_ptr<comm::Comm> world;  // outlives the model (its TP/EP groups are split from it)
  try {
    world = comm::init_world();
    const bool printer = world->rank() == 0;  // every rank generates the same tokens
    Loaded l = load(a, *world);
    Model& m = *l.model;
    SamplingParams p;
    p.temperature = a.temperature;
    p.top_p = a.top_p;
    p.seed = a.seed;
    p.max_tokens = a.max_tokens;
    p.prefill_chunk = a.chunk;
    p.stop_ids = a.stop.empty() ? std::vector<int32_t>{int32_t(m.config().eos_token_id)} : a.stop;
    if (a.max_tokens < 0) throw InputError("--max-tokens must be >= 0");
    if (!(a.top_p > 0 && a.top_p <= 1)) throw InputError("--top-p must be in (0, 1]");
    if (a.temperature < 0) throw InputError("--temperature must be >= 0");
    std::vector<int32_t> out;
    std::string printed;
    const Generation g = generate(m, l.prompt, p, [&](int32_t tok) {
      out.push_back(tok);
      if (!printer) return true;
      if (l.tokenizer) {  // print the text as it grows (whole characters only)
        const std::string text = l.tokenizer->decode(out, true);
        if (text.size() > printed.size() && text.compare(0, printed.size(), printed) == 0) {
          fmt::print("{}", text.substr(printed.size()));
          std::fflush(stdout);
          printed = text;
        }
      } else {
        fmt::print("{} ", tok);
        std::fflush(stdout);
      }
      return true;
    });
    if (!printer) return 0;
    fmt::print("\n");
    fmt::print(stderr, "dsv4 generate: prompt {} tokens, prefill {:.2f} s ({:.1f} tokens/s); {} tokens in {:.2f} s ({:.1f} tokens/s){}\n",
               l.prompt.size(), g.prefill_seconds, double(l.prompt.size()) / std::max(g.prefill_seconds, 1e-9), g.tokens.size(),
               g.decode_seconds, double(g.tokens.size()) / std::max(g.decode_seconds, 1e-9), g.stopped ? ", stopped at a stop token" : "");
    return 0;
  } catch (const InputError& e) {
    return fail(world.get(), fmt::format("dsv4 generate: {}", e.what()), 2);
  } catch (const std::exception& e) {
    return fail(world.get(), fmt::format("dsv4 generate: error: {}", e.what()), 1);
  }
}

}  // namespace dsv4::cli
