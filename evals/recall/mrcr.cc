#include "evals/recall/mrcr.h"

#include <fmt/core.h>

#include <array>
#include <random>
#include <set>
#include <string_view>

#include "evals/hash.h"
#include "evals/recall/filler.h"
#include "evals/rng.h"
#include "evals/sequence_ratio.h"
#include "reference/errors.h"

namespace dsv4::evals {

namespace {

constexpr int64_t kPrefixChars = 10;
constexpr std::string_view kPrefixAlphabet =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
constexpr int64_t kTurnTokens = 512;        // filler turns wanted: length / this
constexpr int64_t kMinFillerTokens = 8;     // each filler user turn gets at least this many
constexpr int kDistinctTries = 1000;        // redraws for K distinct lines
constexpr int64_t kAnswerSlackTokens = 16;  // generation budget beyond the expected answer
constexpr char kMark = '\x01';              // stands for a message's text in the rendering
constexpr std::array kTopics = {"the sea",     "a lighthouse", "winter",        "a train station",
                                "fresh bread", "an old map",   "the moon",      "a violin",
                                "rain",        "a chess game", "autumn leaves", "a bicycle"};
constexpr std::string_view kCellPrefix = "items=";

std::string trim(std::string_view s) {
  const auto ws = [](char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; };
  while (!s.empty() && ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && ws(s.back())) s.remove_suffix(1);
  return std::string(s);
}

int64_t items_of(const Cell& cell) {
  if (cell.geometry.rfind(kCellPrefix, 0) != 0)
    throw InputError("mrcr: cell '" + cell.label() + "' is not an items=K cell");
  return std::stoll(cell.geometry.substr(kCellPrefix.size()));
}

// A grammar sentence as (text without the leading space, ids of its pieces).
struct Line {
  std::string text;
  std::vector<int32_t> ids;
};
Line grammar_line(const LanguageModel& m, GrammarFiller& g) {
  Line l;
  for (const std::string& piece : g.sentence()) {
    l.text += piece;
    const auto ids = m.tokenize(piece);
    l.ids.insert(l.ids.end(), ids.begin(), ids.end());
  }
  l.text = trim(l.text);
  return l;
}

// One conversation: turn slots (item or filler), the texts drawn, and the token budget.
struct Layout {
  std::vector<uint8_t> is_item;                // [F + K] slots: 1 = item turn
  std::vector<Line> filler_replies;            // [F] assistant text of the filler turns
  std::vector<std::vector<int32_t>> segments;  // the rendered template around the markers
  int64_t fixed = 0;                           // every token but the filler user turns
};

// The chat with F filler turns: slots, replies, template pieces and the fixed token count.
Layout layout(const LanguageModel& m, uint64_t seed, int64_t K, int64_t F,
              const std::vector<int32_t>& request, const std::vector<Line>& lines,
              const std::vector<int32_t>& question) {
  std::mt19937_64 rng(seed);
  Layout lo;
  lo.is_item.assign(size_t(F + K), 0);
  for (int64_t i = 0; i < K; ++i) lo.is_item[size_t(i)] = 1;
  for (int64_t i = F + K - 1; i > 0; --i)  // Fisher-Yates: uniform item slots
    std::swap(lo.is_item[size_t(i)], lo.is_item[uniform_index(rng, uint64_t(i + 1))]);
  GrammarFiller replies(m, rng());
  std::vector<ChatMessage> msgs;
  const std::string mark(1, kMark);
  for (size_t s = 0; s < lo.is_item.size(); ++s) {
    msgs.push_back({"user", mark});
    msgs.push_back({"assistant", mark});
    if (!lo.is_item[s]) lo.filler_replies.push_back(grammar_line(m, replies));
  }
  msgs.push_back({"user", mark});
  const std::string chat = m.render_chat(msgs);
  size_t from = 0;
  for (size_t at; (at = chat.find(kMark, from)) != std::string::npos; from = at + 1)
    lo.segments.push_back(m.tokenize(chat.substr(from, at - from)));
  lo.segments.push_back(m.tokenize(chat.substr(from)));
  if (lo.segments.size() != msgs.size() + 1)
    throw InputError(fmt::format("mrcr: the chat rendering kept {} of {} message texts",
                                 lo.segments.size() - 1, msgs.size()));
  for (const auto& s : lo.segments) lo.fixed += int64_t(s.size());
  lo.fixed += K * int64_t(request.size()) + int64_t(question.size());
  for (const Line& l : lines) lo.fixed += int64_t(l.ids.size());
  for (const Line& l : lo.filler_replies) lo.fixed += int64_t(l.ids.size());
  return lo;
}

}  // namespace

const std::vector<int64_t>& mrcr_item_counts() {
  static const std::vector<int64_t> k = {2, 4, 8};
  return k;
}

std::string ordinal(int64_t n) {
  const int64_t tens = n % 100, ones = n % 10;
  const char* suffix = "th";
  if (tens < 11 || tens > 13)
    suffix = ones == 1 ? "st" : ones == 2 ? "nd" : ones == 3 ? "rd" : "th";
  return std::to_string(n) + suffix;
}

std::string MrcrTask::description() const {
  return "multi-round coreference: reproduce the i-th of K near-identical answers in a long "
         "chat behind a random prefix (natural only); length x items K";
}

std::vector<Cell> MrcrTask::cells(const GridSpec& g) const {
  std::vector<Cell> out;
  for (int64_t L : g.lengths)
    for (int64_t k : mrcr_item_counts())
      out.push_back(Cell{L, -1, std::string(kCellPrefix) + std::to_string(k)});
  return out;
}

Item MrcrTask::generate(const GenContext& ctx, const Cell& cell, uint64_t run_seed,
                        int64_t index) const {
  if (ctx.format != PromptFormat::natural) throw InputError("mrcr: no probe format");
  if (!ctx.model) throw InputError("format natural needs a model with a tokenizer");
  const LanguageModel& m = *ctx.model;
  Item it = new_item(ctx, cell, run_seed, index);
  std::mt19937_64 rng = item_rng(it);
  const int64_t K = items_of(cell), L = cell.length;
  const std::string topic = kTopics[uniform_index(rng, kTopics.size())];
  const int64_t target = int64_t(uniform_index(rng, uint64_t(K)));  // 0-based, document order
  std::string prefix;
  for (int64_t i = 0; i < kPrefixChars; ++i)
    prefix += kPrefixAlphabet[uniform_index(rng, kPrefixAlphabet.size())];
  // K distinct lines.
  GrammarFiller line_source(m, rng());
  std::vector<Line> lines;
  std::set<std::string> seen;
  for (int t = 0; int64_t(lines.size()) < K; ++t) {
    if (t == kDistinctTries) throw std::logic_error("mrcr: could not draw distinct lines");
    Line l = grammar_line(m, line_source);
    if (seen.insert(l.text).second) lines.push_back(std::move(l));
  }
  const std::vector<int32_t> request = m.tokenize("Write a short line about " + topic + ".");
  const std::vector<int32_t> question =
      m.tokenize("Prepend " + prefix + " to the " + ordinal(target + 1) + " short line about " +
                 topic + " that you wrote above, and reproduce that line exactly. Reply with " +
                 prefix + " immediately followed by the line, and nothing else.");
  // Filler turns: length / kTurnTokens, halved until each filler user turn gets at least
  // kMinFillerTokens of the tokens left over. Each try is seeded the same way.
  const uint64_t layout_seed = rng(), filler_seed = rng();
  int64_t F = std::max<int64_t>(1, L / kTurnTokens);
  Layout lo = layout(m, layout_seed, K, F, request, lines, question);
  while (L - lo.fixed < F * kMinFillerTokens) {
    if (F == 1)
      throw InputError(fmt::format(
          "mrcr: length {} is too short for {} items: the chat without filler takes {} tokens, "
          "and one filler turn needs {} more",
          L, K, lo.fixed, kMinFillerTokens));
    F = std::max<int64_t>(1, F / 2);
    lo = layout(m, layout_seed, K, F, request, lines, question);
  }
  const int64_t free = L - lo.fixed;
  // Assemble: segment 0, message 0, segment 1, message 1, ..., last message, last segment.
  GrammarFiller filler(m, filler_seed);
  it.prompt.reserve(size_t(L));
  size_t seg = 0;
  auto append = [&](const std::vector<int32_t>& ids) {
    it.prompt.insert(it.prompt.end(), ids.begin(), ids.end());
  };
  int64_t item_no = 0, filler_no = 0, target_pos = -1;
  for (bool is_item : lo.is_item) {
    append(lo.segments[seg++]);
    if (is_item) {
      append(request);
      append(lo.segments[seg++]);
      if (item_no == target) target_pos = int64_t(it.prompt.size());
      append(lines[size_t(item_no++)].ids);
    } else {
      const int64_t n = free / F + (filler_no < free % F ? 1 : 0);
      for (int64_t t = 0; t < n; ++t) it.prompt.push_back(filler.next());
      append(lo.segments[seg++]);
      append(lo.filler_replies[size_t(filler_no++)].ids);
    }
  }
  append(lo.segments[seg++]);
  append(question);
  append(lo.segments[seg++]);
  if (int64_t(it.prompt.size()) != L)
    throw std::logic_error(fmt::format("mrcr: built {} tokens for length {}", it.prompt.size(), L));
  const Line& want = lines[size_t(target)];
  it.answers = {prefix, want.text};
  it.expected = prefix + " " + want.text;
  for (int64_t j = 0; j < K; ++j)
    if (j != target) it.needle_answers.push_back(prefix + " " + lines[size_t(j)].text);
  it.chance = score(it, prefix);  // the empty answer behind the prefix
  it.geometry = geometry_of(target_pos, int64_t(want.ids.size()), target_pos, L);
  it.hash = Hasher().ids(it.prompt).ids(it.candidates).str(it.expected).digest();
  return it;
}

Outcome MrcrTask::evaluate(LanguageModel& m, const Item& item) const {
  Outcome o = greedy_line(m, item.prompt, int64_t(m.tokenize(item.expected).size()) + kAnswerSlackTokens);
  o.score = score(item, o.prediction);
  return o;
}

double MrcrTask::score(const Item& item, const std::string& prediction) const {
  if (item.answers.size() != 2) throw std::logic_error("mrcr: an item has {prefix, line}");
  const std::string& prefix = item.answers[0];
  const std::string answer = trim(prediction);
  if (answer.rfind(prefix, 0) != 0) return 0.0;  // the prefix gate
  return sequence_ratio(trim(std::string_view(answer).substr(prefix.size())), item.answers[1]);
}

}  // namespace dsv4::evals
