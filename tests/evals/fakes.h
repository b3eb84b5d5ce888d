// Fake LanguageModels for the eval tests: no weights, answers known.
//   TokenizerModel  the tiny V4 tokenizer (model/assets/tokenizer-tiny.json) for tokenize /
//                   render_chat; generate / score are left to subclasses
//   OracleModel     reads the needle from the prompt and answers right:
//                     probe:   the token after the earlier occurrence of the final key
//                     natural: the value of the sentence "... key K is V." for the K asked
//                     mrcr:    the i-th line after "Write a short line about T." behind the
//                              prefix asked for (mrcr_mode: or a wrong index, or no prefix,
//                              or the prefix alone)
//   RandomModel     seeded random log-probs / a random 7-digit answer (near chance)
// Their usage timings are 0, so results of two runs compare exactly.
#pragma once

#include <random>
#include <regex>
#include <set>

#include "evals/hash.h"
#include "evals/model_api.h"
#include "evals/recall/probe_tokens.h"
#include "model/checkpoint.h"
#include "model/tokenizer.h"

namespace dsv4::evals::test {

class TokenizerModel : public LanguageModel {
 public:
  TokenizerModel() : tok_(default_tokenizer_asset()) {}
  std::string spec() const override { return "fake"; }
  uint32_t capabilities() const override { return kTokens | kChat | kGenerate | kCandidates; }
  std::vector<int32_t> tokenize(std::string_view text) const override {
    return tok_.encode(text, false);
  }
  std::string detokenize(const std::vector<int32_t>& ids) const override {
    return tok_.decode(ids, true);
  }
  std::string render_chat(const std::vector<ChatMessage>& m) const override {
    std::vector<dsv4::ChatMessage> v;
    for (const auto& x : m) v.push_back({x.role, x.content, "", false});
    return tok_.apply_chat(v, true, false);
  }
  Loglik loglik(const std::vector<int32_t>&, const std::vector<int32_t>&) override {
    throw Unsupported("fake: no loglik");
  }
  int64_t calls = 0;

 protected:
  Tokenizer tok_;
};

class OracleModel : public TokenizerModel {
 public:
  enum class MrcrMode { right, wrong_index, no_prefix, prefix_only } mrcr_mode = MrcrMode::right;

  // MRCR: "Prepend P to the N-th short line about T ..."; each request "Write a short line
  // about T." is followed (after the chat template) by its line, a capitalised sentence.
  bool answer_mrcr(const std::string& text, Completion& c) const {
    std::smatch q;
    if (!std::regex_search(text, q,
                           std::regex("Prepend (\\S+) to the ([0-9]+)[a-z]{2} short line about "
                                      "(.+?) that you wrote")))
      return false;
    const std::string prefix = q[1].str(), topic = q[3].str();
    std::vector<std::string> lines;
    const std::regex request("Write a short line about " + topic + "\\.");
    const std::regex line("\\s([A-Z][a-z]*(?: [a-z]+)*\\.)");
    for (std::sregex_iterator r(text.begin(), text.end(), request), end; r != end; ++r) {
      std::smatch l;
      const auto from = text.begin() + (r->position() + r->length());
      if (std::regex_search(from, text.end(), l, line)) lines.push_back(l[1].str());
    }
    size_t i = size_t(std::stoll(q[2].str()) - 1);
    if (mrcr_mode == MrcrMode::wrong_index) i = (i + 1) % lines.size();
    const std::string body = i < lines.size() ? lines[i] : "";
    c.text = mrcr_mode == MrcrMode::no_prefix     ? " " + body
             : mrcr_mode == MrcrMode::prefix_only ? prefix
                                                  : prefix + " " + body;
    return true;
  }

  Completion generate(const std::vector<int32_t>& prompt, const SamplingParams&) override {
    ++calls;
    {
      Completion c;
      c.usage.prompt_tokens = int64_t(prompt.size());
      if (answer_mrcr(tok_.decode(prompt, false), c)) return c;
    }
    // Variable tracking: follow "VAR X = V." then every "VAR Y = VAR X." transitively.
    std::smatch vt;
    {
      const std::string text = tok_.decode(prompt, false);
      if (std::regex_search(text, vt, std::regex("assigned the value ([0-9]+),"))) {
        Completion c;
        std::vector<std::string> names;
        std::smatch a;
        if (std::regex_search(text, a, std::regex("VAR ([A-Z]+) = " + vt[1].str() + "\\.")))
          names.push_back(a[1].str());
        for (size_t i = 0; i < names.size(); ++i) {
          const std::regex hop("VAR ([A-Z]+) = VAR " + names[i] + "\\.");
          for (std::sregex_iterator n(text.begin(), text.end(), hop); n != std::sregex_iterator();
               ++n)
            names.push_back((*n)[1].str());
        }
        for (const auto& n : names) c.text += " " + n;
        return c;
      }
    }
    // The question: "... for key K?" or "... for keys K1, K2, K3?"; answer every value
    // stored under every key asked.
    const std::string text = tok_.decode(prompt, false);
    std::smatch q;
    Completion c;
    c.usage.prompt_tokens = int64_t(prompt.size());
    if (!std::regex_search(text, q, std::regex("for keys? ([0-9, ]+)\\? Answer"))) return c;
    const std::string asked = q[1].str();
    const std::regex number("[0-9]+");
    for (std::sregex_iterator k(asked.begin(), asked.end(), number), end; k != end; ++k) {
      const std::regex needle("secret value for key " + k->str() + " is ([0-9]+)\\.");
      for (std::sregex_iterator n(text.begin(), text.end(), needle); n != std::sregex_iterator();
           ++n)
        c.text += " " + (*n)[1].str();
    }
    c.usage.completion_tokens = 3;
    return c;
  }
  CandidateScores score_candidates(const std::vector<int32_t>& prompt,
                                   const std::vector<int32_t>& cand) override {
    ++calls;
    const int32_t key = prompt.back();
    int32_t answer = -1;
    for (size_t i = 0; i + 2 < prompt.size(); ++i)
      if (prompt[i] == key) answer = prompt[i + 1];
    CandidateScores s;
    s.usage.prompt_tokens = int64_t(prompt.size());
    for (int32_t c : cand) s.logprob.push_back(c == answer ? 0.0 : -10.0);
    return s;
  }
};

class RandomModel : public TokenizerModel {
 public:
  Completion generate(const std::vector<int32_t>& prompt, const SamplingParams&) override {
    ++calls;
    std::mt19937_64 rng(Hasher().ids(prompt).digest());
    Completion c;
    c.text = " " + std::to_string(1000000 + rng() % 9000000);
    c.usage.prompt_tokens = int64_t(prompt.size());
    return c;
  }
  CandidateScores score_candidates(const std::vector<int32_t>& prompt,
                                   const std::vector<int32_t>& cand) override {
    ++calls;
    std::mt19937_64 rng(Hasher().ids(prompt).digest());
    CandidateScores s;
    for (size_t i = 0; i < cand.size(); ++i) s.logprob.push_back(-double(rng() % 1000000) / 1000.0);
    return s;
  }
};

// A synthetic probe vocabulary: `fillers` filler ids from 10, `keys` key ids from 1000,
// `values` value ids from 2000.
inline ProbeTokens synthetic_probe(int32_t fillers = 200, int32_t keys = 64, int32_t values = 64) {
  ProbeTokens p;
  p.path = "(synthetic)";
  p.retrieval = "csa";
  for (int32_t i = 0; i < fillers; ++i) p.filler.push_back(10 + i);
  for (int32_t i = 0; i < keys; ++i) p.keys.push_back(1000 + i);
  for (int32_t i = 0; i < values; ++i) p.values.push_back(2000 + i);
  return p;
}

}  // namespace dsv4::evals::test
