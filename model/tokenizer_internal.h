// Internals of model/tokenizer.cc shared with model/tokenizer_pretok.cc (pre-tokenizer,
// regexes, UTF-8) and model/tokenizer_chat.cc. Not part of the public API.
#pragma once

#include <boost/json/fwd.hpp>

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace dsv4::tok_detail {

// "tokenizer '<path>': <field>: <what>" as an InputError.
[[noreturn]] void fail(const std::string& path, const std::string& field, const std::string& what);

// Length of the well-formed UTF-8 character at p (Unicode Table 3-7), 0 when p[0] starts none.
size_t utf8_char_len(const unsigned char* p, size_t n);

// GPT-2 byte-level alphabet: byte -> code point, and its inverse (-1: not in the alphabet).
uint32_t byte_to_codepoint(uint8_t b);
int byte_from_codepoint(uint32_t cp);
// Appends the UTF-8 encoding of cp.
void append_utf8(std::string& out, uint32_t cp);

// Per-call matching state (PCRE2 match data, JIT stack); one per encode() call.
class Scratch {
 public:
  Scratch();
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  void* match_data() const { return md_; }
  void* match_context() const { return mc_; }
  // Owned storage for pieces that are not slices of the input (ByteLevel's prefix space).
  std::string_view keep(std::string s);

 private:
  void* md_ = nullptr;
  void* mc_ = nullptr;
  void* js_ = nullptr;
  std::deque<std::string> arena_;
};

// A compiled PCRE2 pattern (UTF, UCP, JIT when available). The pattern is first rewritten so
// that \p{L,M,N,P,S} and \s/\S mean what they mean in Oniguruma (tokenizers' engine).
class Regex {
 public:
  // Throws std::invalid_argument with PCRE2's message.
  explicit Regex(std::string_view pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;
  // All non-overlapping matches in subject (valid UTF-8), left to right, as [begin, end)
  // byte offsets. An empty match is reported and the search resumes one character later.
  void find_all(std::string_view subject, std::vector<std::pair<size_t, size_t>>& out,
                Scratch& s) const;

 private:
  void* code_ = nullptr;
};

// The rewrite Regex applies (exposed for tests of the translation).
std::string translate_pattern(std::string_view pattern);

enum class SplitBehavior { Removed, Isolated, MergedWithPrevious, MergedWithNext, Contiguous };

struct PreTokStep {
  bool byte_level = false;
  // Split
  std::unique_ptr<Regex> regex;  // null: literal
  std::string literal;
  SplitBehavior behavior = SplitBehavior::Isolated;
  bool invert = false;
  // ByteLevel
  bool add_prefix_space = false;
  bool use_regex = false;
};

class PreTokenizer {
 public:
  // Parses tokenizer.json's "pre_tokenizer" value; errors name path and field.
  void parse(const boost::json::value& v, const std::string& path);
  // Cuts a valid UTF-8 piece into pre-tokens (byte strings; slices of piece or of s's arena).
  void run(std::string_view piece, std::vector<std::string_view>& out, Scratch& s) const;

 private:
  void parse_step(const boost::json::value& v, const std::string& path, const std::string& field);
  std::vector<PreTokStep> steps_;
  std::unique_ptr<Regex> gpt2_;  // ByteLevel use_regex
};

}  // namespace dsv4::tok_detail
