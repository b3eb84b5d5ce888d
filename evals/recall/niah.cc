#include "evals/recall/niah.h"

#include <fmt/core.h>

#include <algorithm>
#include <random>
#include <set>

#include "evals/hash.h"
#include "evals/recall/filler.h"
#include "evals/recall/probe_tokens.h"
#include "reference/errors.h"

namespace dsv4::evals {

namespace {

constexpr int64_t kWindow = 128;    // spec §2: sliding window of the last 128 tokens
constexpr int64_t kHcaBlock = 128;  // spec §2: HCA compresses 128 tokens into one entry
constexpr int64_t kCsaBlock = 4;    // spec §2: CSA compresses 4 tokens into one entry
constexpr int64_t kNeedleGap = 1;   // at least one filler token between two needles
constexpr int kPlacementTries = 1000;
// Natural format: keys are 6-digit numbers, values 7-digit numbers.
constexpr uint64_t kKeyLo = 100000, kKeySpan = 900000;
constexpr uint64_t kValueLo = 1000000, kValueSpan = 9000000;
constexpr char kHaystackMark = '\x01';  // stands for the haystack inside the rendered chat
// Variable tracking: the target chain and one distractor chain; 5-letter variable names,
// 5-digit values.
constexpr int64_t kVariableChains = 2;
constexpr int kNameLetters = 5;
constexpr uint64_t kNameSpan = 26ull * 26 * 26 * 26 * 26;
constexpr uint64_t kVarValueLo = 10000, kVarValueSpan = 90000;
// Long-context code: 4-digit module numbers (as filler.cc), call arguments in [0, 100).
constexpr uint64_t kModuleSpan = 9000;
constexpr uint64_t kArgSpan = 100;

// One needle: its tokens and where its answer starts inside them.
struct Needle {
  std::vector<int32_t> tokens;
  int64_t value_offset = 0;
  std::string answer;
  int64_t pos = -1;  // absolute prompt position of tokens[0]
  // Ordering (variable tracking): this needle must come after needle `after` (an index into
  // [target, distractors...]; -1: anywhere), and `rest` tokens (its chain's later
  // statements with their gaps) must still fit after it.
  int64_t after = -1;
  int64_t rest = 0;
};

// The fixed parts of a prompt and the needles to place: the target at the cell's position,
// the others (further answers, distractors) at seeded positions.
struct Frame {
  std::vector<int32_t> prefix, suffix;
  Needle target;
  std::vector<Needle> distractors;
  std::vector<std::string> answers;
};

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
}

std::vector<int32_t> concat_pieces(const LanguageModel& m, const std::vector<std::string>& pieces,
                                   int64_t* offset_of_last) {
  std::vector<int32_t> out;
  for (size_t i = 0; i < pieces.size(); ++i) {
    if (offset_of_last && i + 1 == pieces.size()) *offset_of_last = int64_t(out.size());
    const auto ids = m.tokenize(pieces[i]);
    out.insert(out.end(), ids.begin(), ids.end());
  }
  return out;
}

Needle natural_needle(const LanguageModel& m, const std::string& key, const std::string& value) {
  Needle n;
  n.answer = value;
  int64_t value_at = 0;
  n.tokens =
      concat_pieces(m, {" The secret value for key", " " + key, " is", " " + value}, &value_at);
  n.value_offset = value_at;
  const auto dot = m.tokenize(".");
  n.tokens.insert(n.tokens.end(), dot.begin(), dot.end());
  return n;
}

// Distinct draws from [lo, lo + span) (natural keys/values) or from a list (probe ids).
std::vector<uint64_t> distinct_draws(std::mt19937_64& rng, uint64_t span, int64_t n,
                                     const std::string& what) {
  if (uint64_t(n) > span)
    throw InputError(fmt::format("{}: {} distinct draws needed from only {}", what, n, span));
  std::set<uint64_t> seen;
  std::vector<uint64_t> out;
  while (int64_t(out.size()) < n) {
    const uint64_t x = uniform_index(rng, span);
    if (seen.insert(x).second) out.push_back(x);
  }
  return out;
}

std::string variable_name(uint64_t x) {
  std::string s(kNameLetters, 'A');
  for (int i = kNameLetters - 1; i >= 0; --i, x /= 26) s[size_t(i)] = char('A' + x % 26);
  return s;
}

// Variable tracking (natural only): chains " VAR A = 12345." " VAR B = VAR A." ... of
// `hops` statements; the question asks which variables hold the target chain's value. Each
// statement's answer is the variable it assigns; the target is the chain's first statement.
void variable_frame(const LanguageModel& m, std::mt19937_64& rng, int64_t hops, Frame& f) {
  if (hops < 1) throw InputError("--hops must be >= 1");
  const auto names = distinct_draws(rng, kNameSpan, kVariableChains * hops, "variable names");
  const auto values = distinct_draws(rng, kVarValueSpan, kVariableChains, "variable values");
  std::vector<Needle> all;
  for (int64_t c = 0; c < kVariableChains; ++c) {
    const int64_t first = int64_t(all.size());
    for (int64_t h = 0; h < hops; ++h) {
      const std::string name = variable_name(names[size_t(c * hops + h)]);
      std::vector<std::string> pieces = {" VAR", " " + name, " ="};
      if (h == 0)
        pieces.push_back(" " + std::to_string(kVarValueLo + values[size_t(c)]));
      else
        pieces.insert(pieces.end(), {" VAR", " " + all.back().answer});
      pieces.push_back(".");
      Needle n;
      n.tokens = concat_pieces(m, {pieces[0]}, nullptr);
      n.value_offset = int64_t(n.tokens.size());  // the assigned name
      const auto tail =
          concat_pieces(m, std::vector<std::string>(pieces.begin() + 1, pieces.end()), nullptr);
      n.tokens.insert(n.tokens.end(), tail.begin(), tail.end());
      n.answer = name;
      n.after = h == 0 ? -1 : first + h - 1;
      all.push_back(n);
    }
    for (int64_t h = hops - 1; h > 0; --h)
      all[size_t(first + h - 1)].rest =
          all[size_t(first + h)].rest + int64_t(all[size_t(first + h)].tokens.size()) + kNeedleGap;
    if (c == 0)
      for (int64_t h = 0; h < hops; ++h) f.answers.push_back(all[size_t(h)].answer);
  }
  const std::string intro =
      "Below is a long text. Somewhere in it are variable assignments. Track them.\n\n";
  const std::string chat = m.render_chat({{"user", intro + kHaystackMark}});
  const size_t at = chat.find(kHaystackMark);
  if (at == std::string::npos) throw InputError("the chat rendering lost the user text");
  f.prefix = m.tokenize(chat.substr(0, at));
  const std::string question = "Which variables are assigned the value " +
                               std::to_string(kVarValueLo + values[0]) +
                               ", directly or through other variables? Answer with the variable "
                               "names only, separated by commas.";
  f.suffix = m.tokenize("\n\n" + question + chat.substr(at + 1));
  f.target = all[0];
  f.distractors.assign(all.begin() + 1, all.end());
}

// Long-context code (natural): one function definition under its file header is the needle;
// the question asks about it. reserved: the target's id (the filler never defines it).
void code_frame(const LanguageModel& m, std::mt19937_64& rng, NiahKind kind, Frame& f,
                std::vector<uint64_t>& reserved) {
  const CodeFunction fn = code_function(rng);
  reserved.push_back(fn.id);
  const std::string file = code_file(uniform_index(rng, kModuleSpan));
  const int64_t x = int64_t(uniform_index(rng, kArgSpan)), y = int64_t(uniform_index(rng, kArgSpan));
  Needle n;
  int64_t def_at = 0;
  n.tokens = concat_pieces(m, {"# file: " + file + "\n", fn.text()}, &def_at);
  n.value_offset = def_at;
  std::string question;
  if (kind == NiahKind::repo_return) {
    n.answer = std::to_string(fn.call(x, y));
    question = "What does " + fn.name() + "(" + std::to_string(x) + ", " + std::to_string(y) +
               ") return? Answer with the number only.";
  } else if (kind == NiahKind::repo_file) {
    n.answer = file;
    question = "Which file defines the function " + fn.name() + "? Answer with the file path only.";
  } else {
    n.answer = fn.p + ", " + fn.q;
    question = "What are the parameter names of " + fn.name() +
               ", in order? Answer with the names only, separated by commas.";
  }
  const std::string intro = "Below is the source code of a Python repository. Read it.\n\n";
  const std::string chat = m.render_chat({{"user", intro + kHaystackMark}});
  const size_t at = chat.find(kHaystackMark);
  if (at == std::string::npos) throw InputError("the chat rendering lost the user text");
  f.prefix = m.tokenize(chat.substr(0, at));
  f.suffix = m.tokenize("\n\n" + question + chat.substr(at + 1));
  f.target = n;
  f.answers = {n.answer};
}

Frame make_frame(const GenContext& ctx, std::mt19937_64& rng, NiahKind kind, std::vector<uint64_t>& reserved) {
  const TaskOptions& o = ctx.options;
  if (is_code_kind(kind) && ctx.format == PromptFormat::natural) {
    Frame f;
    code_frame(*ctx.model, rng, kind, f, reserved);
    return f;
  }
  if (kind == NiahKind::variables) {
    Frame f;
    variable_frame(*ctx.model, rng, o.hops, f);
    return f;
  }
  // needles: how many; same_key: all share the target's key (multivalue); answers: how many
  // of them the question asks for (the first `answers`, the target first).
  int64_t needles = 1, answers = 1;
  bool same_key = false;
  if (kind == NiahKind::multikey) needles = 1 + o.distractors;
  if (kind == NiahKind::multivalue) needles = answers = o.values, same_key = true;
  if (kind == NiahKind::multiquery) needles = answers = o.queries;
  if (needles < 1) throw InputError("--values / --queries must be >= 1");
  Frame f;
  std::vector<Needle> all;
  if (ctx.format == PromptFormat::probe) {
    const ProbeTokens& p = *ctx.probe;
    const auto keys =
        same_key ? std::vector<uint64_t>(size_t(needles), uniform_index(rng, p.keys.size()))
                 : distinct_draws(rng, p.keys.size(), needles, "probe keys");
    // Values: distinct across the answers; a distractor's value differs from the target's
    // (so copying a distractor scores 0) but may repeat among distractors.
    std::vector<uint64_t> values = distinct_draws(rng, p.values.size(), answers, "probe values");
    for (int64_t i = answers; i < needles; ++i) {
      if (p.values.size() < 2) throw InputError("probe: distractors need at least 2 value tokens");
      uint64_t v = uniform_index(rng, p.values.size() - 1);
      if (v >= values[0]) ++v;
      values.push_back(v);
    }
    for (int64_t i = 0; i < needles; ++i) {
      Needle n;
      n.tokens = {p.keys[keys[size_t(i)]], p.values[values[size_t(i)]]};
      n.value_offset = 1;
      n.answer = std::to_string(p.values[values[size_t(i)]]);
      all.push_back(n);
    }
    f.suffix = {p.keys[keys[0]]};
  } else {
    const LanguageModel& m = *ctx.model;
    const auto keys = same_key
                          ? std::vector<uint64_t>(size_t(needles), uniform_index(rng, kKeySpan))
                          : distinct_draws(rng, kKeySpan, needles, "keys");
    const auto values = distinct_draws(rng, kValueSpan, needles, "values");
    std::vector<std::string> asked;
    for (int64_t i = 0; i < needles; ++i) {
      const std::string key = std::to_string(kKeyLo + keys[size_t(i)]);
      all.push_back(natural_needle(m, key, std::to_string(kValueLo + values[size_t(i)])));
      if (i < answers && (i == 0 || !same_key)) asked.push_back(key);
    }
    const std::string intro =
        "Below is a long text. Somewhere in it are secret values, each for a numbered key. "
        "Remember them.\n\n";
    const std::string chat = m.render_chat({{"user", intro + kHaystackMark}});
    const size_t at = chat.find(kHaystackMark);
    if (at == std::string::npos) throw InputError("the chat rendering lost the user text");
    f.prefix = m.tokenize(chat.substr(0, at));
    std::string question;
    if (kind == NiahKind::multivalue)
      question = "What are all the secret values for key " + asked[0] +
                 "? Answer with the numbers only, separated by commas.";
    else if (kind == NiahKind::multiquery)
      question = "What are the secret values for keys " + join(asked, ", ") +
                 "? Answer with the numbers only, separated by commas.";
    else
      question = "What is the secret value for key " + asked[0] + "? Answer with the number only.";
    f.suffix = m.tokenize("\n\n" + question + chat.substr(at + 1));
  }
  f.target = all[0];
  f.distractors.assign(all.begin() + 1, all.end());
  for (int64_t i = 0; i < answers; ++i) f.answers.push_back(all[size_t(i)].answer);
  return f;
}

// A uniformly random p in [lo, hi] with p = r (mod m); -1 when none.
int64_t pick_congruent(std::mt19937_64& rng, int64_t lo, int64_t hi, int64_t r, int64_t m) {
  if (hi < lo) return -1;
  const int64_t first = lo + (((r - lo) % m) + m) % m;
  if (first > hi) return -1;
  return first + m * int64_t(uniform_index(rng, uint64_t((hi - first) / m + 1)));
}

// The target's absolute position for a cell. Body = [body_lo, body_hi) of a prompt of L.
int64_t target_position(const Cell& cell, std::mt19937_64& rng, int64_t body_lo, int64_t body_hi,
                        int64_t len, int64_t L) {
  const int64_t last_start = body_hi - len;  // the needle must end inside the body
  if (cell.depth >= 0)
    return body_lo + int64_t(std::llround(cell.depth * double(last_start - body_lo)));
  const std::string& g = cell.geometry;
  const int64_t window_start = L - kWindow;
  int64_t p = -1;
  // Classes other than window_* keep the needle entirely before the window.
  const int64_t before_window_hi = std::min(last_start, window_start - len);
  if (g.rfind("mod4=", 0) == 0)
    p = pick_congruent(rng, body_lo, before_window_hi, std::stoll(g.substr(5)), kCsaBlock);
  else if (g == "mod128=0")
    p = pick_congruent(rng, body_lo, before_window_hi, 0, kHcaBlock);
  else if (g == "mod128=127")
    p = pick_congruent(rng, body_lo, before_window_hi, kHcaBlock - 1, kHcaBlock);
  else if (g == "window_in")
    p = pick_congruent(rng, std::max(body_lo, window_start), last_start, 0, 1);
  else if (g == "window_out")  // just outside: the needle's last token in [L - 256, L - 129]
    p = pick_congruent(rng, std::max(body_lo, L - 2 * kWindow - len + 1), before_window_hi, 0, 1);
  else
    throw InputError("unknown geometry class '" + g + "'");
  if (p < 0)
    throw InputError(
        fmt::format("length {}: no room for geometry class '{}' (body [{}, {}), needle {} tokens)",
                    L, g, body_lo, body_hi, len));
  return p;
}

bool overlaps(int64_t a, int64_t alen, int64_t b, int64_t blen) {
  return a < b + blen + kNeedleGap && b < a + alen + kNeedleGap;
}

// Places f.distractors (f.target is placed already) and returns every needle sorted by
// position. One run at a time: a run is a needle with no predecessor (after < 0, or
// the target's chain continuing) and the needles that follow it in order. Each needle of
// a run gets a uniform position in its range (after the needle it follows, leaving room
// for its chain's rest); a position touching an earlier needle rejects the whole run's
// attempt, and the run is drawn again (so chains never get stuck behind a blocked tail).
std::vector<const Needle*> place_others(Frame& f, std::mt19937_64& rng, int64_t body_lo,
                                        int64_t body_hi, const std::string& task, int64_t L) {
  std::vector<const Needle*> placed = {&f.target};
  auto free_at = [&](int64_t p, int64_t len) {
    return std::none_of(placed.begin(), placed.end(), [&](const Needle* o) {
      return overlaps(p, len, o->pos, int64_t(o->tokens.size()));
    });
  };
  for (size_t i = 0; i < f.distractors.size();) {
    size_t end = i + 1;  // the run [i, end): each next needle follows the previous one
    while (end < f.distractors.size() && f.distractors[end].after == int64_t(end)) ++end;
    const size_t before_run = placed.size();
    for (int t = 0;; ++t) {
      if (t == kPlacementTries)
        throw InputError(fmt::format("{}: could not place {} further needles in length {}", task,
                                     f.distractors.size(), L));
      placed.resize(before_run);
      bool ok = true;
      for (size_t j = i; ok && j < end; ++j) {
        Needle& d = f.distractors[j];
        const int64_t len = int64_t(d.tokens.size());
        const Needle* prev = d.after < 0    ? nullptr
                             : d.after == 0 ? &f.target
                                            : &f.distractors[size_t(d.after - 1)];
        const int64_t lo = prev ? prev->pos + int64_t(prev->tokens.size()) + kNeedleGap : body_lo;
        const int64_t hi = body_hi - d.rest - len;
        if (hi < lo) {
          ok = false;
          break;
        }
        d.pos = lo + int64_t(uniform_index(rng, uint64_t(hi - lo + 1)));
        ok = free_at(d.pos, len);
        placed.push_back(&d);
      }
      if (ok) break;
    }
    i = end;
  }
  std::sort(placed.begin(), placed.end(),
            [](const Needle* a, const Needle* b) { return a->pos < b->pos; });
  return placed;
}

}  // namespace

const std::vector<std::string>& geometry_classes() {
  static const std::vector<std::string> k = {"mod4=0",   "mod4=1",     "mod4=2",    "mod4=3",
                                             "mod128=0", "mod128=127", "window_in", "window_out"};
  return k;
}

std::string NiahTask::name() const {
  switch (kind_) {
    case NiahKind::single:
      return "niah_single";
    case NiahKind::multikey:
      return "niah_multikey";
    case NiahKind::multivalue:
      return "niah_multivalue";
    case NiahKind::multiquery:
      return "niah_multiquery";
    case NiahKind::variables:
      return "variable_tracking";
    case NiahKind::geometry:
      return "niah_geometry";
    case NiahKind::repo_return:
      return "repo_return";
    case NiahKind::repo_file:
      return "repo_file";
    case NiahKind::repo_params:
      return "repo_params";
  }
  return "";
}

bool is_code_kind(NiahKind k) {
  return k == NiahKind::repo_return || k == NiahKind::repo_file || k == NiahKind::repo_params;
}

std::string NiahTask::version() const {
  return "1";
}

std::string NiahTask::description() const {
  switch (kind_) {
    case NiahKind::single:
      return "one needle; length x depth";
    case NiahKind::multikey:
      return "target + D distractor needles with other keys; length x depth";
    case NiahKind::multivalue:
      return "V needles under one key (probe: any; natural: all); length x depth";
    case NiahKind::multiquery:
      return "Q keys asked at once (natural only); length x depth";
    case NiahKind::variables:
      return "chains of H assignments; name every variable holding a value (natural only); "
             "length x depth";
    case NiahKind::geometry:
      return "one needle by offset mod 4 / mod 128, block straddles, inside/outside the 128-token "
             "window";
    case NiahKind::repo_return:
      return "synthetic Python repository: what does f_N(x, y) return (exact); length x depth";
    case NiahKind::repo_file:
      return "synthetic Python repository: which file defines f_N (exact); length x depth";
    case NiahKind::repo_params:
      return "synthetic Python repository: f_N's parameter names in order (exact); length x depth";
  }
  return "";
}

bool NiahTask::supports(PromptFormat f) const {
  return f == PromptFormat::natural ||
         (kind_ != NiahKind::multiquery && kind_ != NiahKind::variables);
}

uint32_t NiahTask::needs(PromptFormat f) const {
  return f == PromptFormat::probe ? uint32_t(kCandidates) : uint32_t(kTokens | kChat | kGenerate);
}

std::vector<Cell> NiahTask::cells(const GridSpec& g) const {
  std::vector<Cell> out;
  for (int64_t L : g.lengths) {
    if (kind_ == NiahKind::geometry) {
      for (const auto& c : geometry_classes()) out.push_back(Cell{L, -1, c});
    } else {
      for (double d : g.depths) out.push_back(Cell{L, d, ""});
    }
  }
  return out;
}

Item NiahTask::generate(const GenContext& ctx, const Cell& cell, uint64_t run_seed,
                        int64_t index) const {
  if (ctx.format == PromptFormat::probe && !ctx.probe)
    throw InputError("format probe needs the model's probe.json");
  if (ctx.format == PromptFormat::natural && !ctx.model)
    throw InputError("format natural needs a model with a tokenizer");
  Item it = new_item(ctx, cell, run_seed, index);
  std::mt19937_64 rng = item_rng(it);
  if (!supports(ctx.format))
    throw InputError(it.task + ": no " + format_name(ctx.format) + " format");
  if (ctx.options.distractors < 0) throw InputError("--distractors must be >= 0");
  std::vector<uint64_t> reserved;  // code tasks: function ids the filler must not define
  Frame f = make_frame(ctx, rng, kind_, reserved);
  const int64_t L = cell.length;
  const int64_t body_lo = int64_t(f.prefix.size()), body_hi = L - int64_t(f.suffix.size());
  int64_t needed = int64_t(f.target.tokens.size()) + kNeedleGap;
  for (const auto& d : f.distractors) needed += int64_t(d.tokens.size()) + kNeedleGap;
  if (body_hi - body_lo < 2 * needed)
    throw InputError(
        fmt::format("{}: length {} is too short: the haystack has {} tokens after the prompt "
                    "frame, needles need {} (x2 room)",
                    it.task, L, body_hi - body_lo, needed));
  const int64_t tlen = int64_t(f.target.tokens.size());
  f.target.pos = target_position(cell, rng, body_lo, body_hi - f.target.rest, tlen, L);
  const std::vector<const Needle*> placed = place_others(f, rng, body_lo, body_hi, it.task, L);
  // Assemble: prefix, body (filler stream cut by the needles), suffix.
  std::unique_ptr<FillerStream> filler;
  const uint64_t filler_seed = rng();
  if (ctx.format == PromptFormat::probe)
    filler = std::make_unique<ProbeFiller>(ctx.probe->filler, filler_seed);
  else if (is_code_kind(kind_))
    filler = std::make_unique<CodeFiller>(*ctx.model, filler_seed, reserved);
  else
    filler = std::make_unique<GrammarFiller>(*ctx.model, filler_seed);
  it.prompt.reserve(size_t(L));
  it.prompt = f.prefix;
  for (const Needle* n : placed) {
    while (int64_t(it.prompt.size()) < n->pos) it.prompt.push_back(filler->next());
    it.prompt.insert(it.prompt.end(), n->tokens.begin(), n->tokens.end());
    it.needle_answers.push_back(n->answer);
  }
  while (int64_t(it.prompt.size()) < body_hi) it.prompt.push_back(filler->next());
  it.prompt.insert(it.prompt.end(), f.suffix.begin(), f.suffix.end());
  if (int64_t(it.prompt.size()) != L)
    throw std::logic_error(
        fmt::format("{}: built {} tokens for length {}", it.task, it.prompt.size(), L));
  it.answers = f.answers;
  it.expected = join(f.answers, ",");
  if (ctx.format == PromptFormat::probe) {  // (variable tracking has no probe format)
    it.candidates = ctx.probe->values;
    it.chance = double(f.answers.size()) / double(ctx.probe->values.size());
  } else {
    // A uniform guess of one answer: a 7-digit value, a 5-letter variable name, a file of the
    // repository, an ordered pair of parameter names, or a return value (x a + y - b spans
    // about 100 x 20 + 100 values).
    const double params = double(code_parameter_names().size());
    it.chance = kind_ == NiahKind::variables     ? 1.0 / double(kNameSpan)
                : kind_ == NiahKind::repo_file   ? 1.0 / double(kModuleSpan)
                : kind_ == NiahKind::repo_params ? 1.0 / (params * (params - 1))
                : kind_ == NiahKind::repo_return ? 1.0 / double(kArgSpan * 21)
                                                 : 1.0 / double(kValueSpan);
  }
  it.geometry = geometry_of(f.target.pos, tlen, f.target.pos + f.target.value_offset, L);
  it.hash = Hasher().ids(it.prompt).ids(it.candidates).str(it.expected).digest();
  return it;
}

Outcome NiahTask::evaluate(LanguageModel& m, const Item& item) const {
  Outcome o;
  if (item.format == PromptFormat::probe) {
    const CandidateScores s = m.score_candidates(item.prompt, item.candidates);
    // Argmax, ties to the first candidate.
    const size_t best =
        size_t(std::max_element(s.logprob.begin(), s.logprob.end()) - s.logprob.begin());
    o.prediction = std::to_string(item.candidates[best]);
    o.prompt_tokens = s.usage.prompt_tokens;
    o.cached_prompt_tokens = s.usage.cached_prompt_tokens;
    o.prefill_seconds = s.usage.prefill_seconds;
    o.seconds = s.usage.prefill_seconds + s.usage.decode_seconds;
  } else {
    o = greedy_line(m, item.prompt, kNaturalAnswerTokens * int64_t(item.answers.size()));
  }
  o.score = score(item, o.prediction);
  return o;
}

namespace {
// The first non-empty line, trimmed (spaces, tabs, backticks; a final period); with `list`,
// its comma-separated items trimmed and joined with ",".
std::string first_line(const std::string& s, bool list) {
  size_t b = 0;
  std::string line;
  while (b < s.size() && line.empty()) {
    const size_t e = std::min(s.find('\n', b), s.size());
    line = s.substr(b, e - b);
    const size_t l = line.find_first_not_of(" \t\r`"), r = line.find_last_not_of(" \t\r`.");
    line = l == std::string::npos ? "" : line.substr(l, r - l + 1);
    b = e + 1;
  }
  if (!list) return line;
  std::string out, part;  // each comma-separated item trimmed, joined with ","
  auto flush = [&] {
    const size_t l = part.find_first_not_of(' '), r = part.find_last_not_of(' ');
    out += (out.empty() ? "" : ",") + (l == std::string::npos ? "" : part.substr(l, r - l + 1));
    part.clear();
  };
  for (char ch : line) {
    if (ch == ',')
      flush();
    else
      part += ch;
  }
  flush();
  return out;
}
}  // namespace

double NiahTask::score(const Item& item, const std::string& prediction) const {
  // Code tasks (natural): exact match of the first line.
  if (is_code_kind(kind_) && item.format == PromptFormat::natural) {
    const bool list = kind_ == NiahKind::repo_params;
    return !item.answers.empty() && first_line(prediction, list) == first_line(item.answers[0], list) ? 1.0 : 0.0;
  }
  // Probe: the argmax is one of the answers. Natural: the fraction of the answers that
  // appear in the generated text (substring match each).
  if (item.format == PromptFormat::probe)
    return std::find(item.answers.begin(), item.answers.end(), prediction) != item.answers.end()
               ? 1.0
               : 0.0;
  if (item.answers.empty()) return 0.0;
  int64_t found = 0;
  for (const std::string& a : item.answers) found += prediction.find(a) != std::string::npos;
  return double(found) / double(item.answers.size());
}

}  // namespace dsv4::evals
