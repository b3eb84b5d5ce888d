// The DeepSeek-V4 tokenizer: a Hugging Face tokenizer.json (PreTrainedTokenizerFast) with a
// byte-level BPE model, and the V4 chat format.
//
// What is read from tokenizer.json (anything else there is an InputError naming the file and
// the field, never a silent approximation):
//   model            type "BPE": vocab {token: id}, merges as "a b" strings or ["a", "b"]
//                    pairs (rank = position), ignore_merges, unk_token (optional), fuse_unk;
//                    dropout must be null/0; continuing_subword_prefix / end_of_word_suffix
//                    must be empty; byte_fallback is irrelevant for byte-level BPE.
//   added_tokens     {id, content, special, normalized, lstrip, rstrip, single_word}:
//                    matched in the raw text before pre-tokenization, leftmost first and at
//                    one position longest first, never split; tokens with normalized=false
//                    are matched first, then those with normalized=true in the remaining text
//                    (the order of tokenizers' AddedVocabulary). lstrip / rstrip /
//                    single_word = true are not supported (no DeepSeek file uses them).
//   normalizer       null, or a Sequence with no (non-Sequence) member.
//   pre_tokenizer    Sequence of Split {pattern {Regex|String}, behavior Isolated | Removed |
//                    MergedWithPrevious | MergedWithNext | Contiguous, invert} ending with
//                    ByteLevel {add_prefix_space, use_regex}; or a lone ByteLevel. Each Split
//                    regex runs on each piece alone (lookarounds never see past a piece), as
//                    tokenizers does. Regexes run in PCRE2 (UTF + Unicode properties, JIT);
//                    tokenizers runs them in Oniguruma, so \p{L} \p{M} \p{N} \p{P} \p{S}
//                    (also negated, outside classes) and \s \S get Oniguruma's Unicode 16
//                    sets (model/tokenizer_unicode_tables.h); other classes use PCRE2's tables.
//   post_processor   null, ByteLevel (no effect on ids), TemplateProcessing ("single"
//                    template), or a Sequence of these; applied when add_special_tokens.
//   decoder          ByteLevel (null is taken as ByteLevel).
//
// Bytes, not text. encode() takes any bytes. Valid UTF-8 is encoded exactly as
// tokenizers encodes the same str (checked against tests/data/tokenizer_goldens.json).
// Invalid UTF-8 (which tokenizers refuses: it only takes str) is defined here: the input is cut
// into maximal runs of well-formed UTF-8 (Unicode Table 3-7) and maximal runs of bytes that
// start no well-formed character; each valid run is encoded on its own, each invalid run is
// one pre-token that goes through BPE as its raw bytes. decode() concatenates token bytes and
// returns them as they are: a sequence that ends mid-character, or holds invalid bytes, gives
// those bytes back (tokenizers would put U+FFFD there). So decode(encode(b)) == b for every b.
// Pieces made of bytes with no vocabulary entry are dropped, or become unk_token when the
// model names one (tokenizers' BPE does the same); they never crash.
//
// bos/eos: tokenizer.json does not say which tokens they are (tokenizer_config.json does);
// they are looked up by DeepSeek's names <｜begin▁of▁sentence｜> / <｜end▁of▁sentence｜>
// (-1 when absent).
//
// Thread safety: a loaded Tokenizer is immutable; every method may run concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace dsv4 {

// One message of a conversation (DeepSeek-V4 encoding/encoding_dsv4.py field names).
//   role: "system" | "user" | "assistant" | "developer" | "tool" | "latest_reminder"
//   reasoning: the assistant's thinking text (encoding_dsv4's reasoning / reasoning_content)
//   wo_eos: assistant only, leave the turn open (no eos): an assistant prefill
struct ChatMessage {
  std::string role;
  std::string content;
  std::string reasoning;
  bool wo_eos = false;
};

struct ChatOptions {
  bool add_generation_prompt = true;  // false: no <｜Assistant｜> after a final user turn
  bool thinking = false;              // encoding_dsv4 thinking_mode "thinking" (else "chat")
  bool drop_thinking = true;          // drop reasoning of turns before the last user turn
  bool add_bos = true;                // add_default_bos_token
};

// The V4 chat prompt as a string (encode it with add_special_tokens = false).
//
// Conventions (DeepSeek-V4 encoding/encoding_dsv4.py, read from two mirrors of the HF repo
// file -- sfxnz/DeepSeek-V4-Flash-Vision-Exp-vLLM-2x-DGX-Spark and supermy/ds4rs, path
// encoding/encoding_dsv4.py -- and from vLLM's copy vllm/tokenizers/deepseek_v4_encoding.py
// in vllm-project/vllm; the three agree on everything implemented here):
//   bos, then messages concatenated with no separators:
//   system           content
//   user             <｜User｜>content; consecutive user/tool messages merge into one user
//                    turn whose parts are joined by "\n\n"; a tool message is the part
//                    <tool_result>content</tool_result>
//   developer        <｜User｜>content (must be non-empty); dropped before the last user turn
//                    when thinking with drop_thinking
//   latest_reminder  <｜latest_reminder｜>content
//   assistant        [reasoning</think>]content<｜end▁of▁sentence｜> (no eos with wo_eos);
//                    the reasoning part only in thinking mode and, with drop_thinking, only
//                    after the last user turn
//   after a user/developer turn that is last or followed by an assistant / latest_reminder:
//                    <｜Assistant｜> then <think> (thinking mode, and with drop_thinking only
//                    for the last user turn) or </think>
// Not implemented (the caller renders them into content if needed): tools / tool_calls (DSML
// blocks with ｜DSML｜), response_format, the internal "task" tokens, reasoning_effort
// prefixes, images, and the "context" (already-encoded prefix) argument.
// add_generation_prompt is ours: encoding_dsv4 always ends a final user turn with
// <｜Assistant｜><think> or </think>; false leaves that out.
// Unknown roles are an InputError.
std::string render_chat_dsv4(const std::vector<ChatMessage>& msgs, const ChatOptions& opt);

class Tokenizer {
 public:
  // Loads and validates a tokenizer.json; throws InputError naming the file and the field.
  explicit Tokenizer(const std::string& path);
  ~Tokenizer();
  Tokenizer(Tokenizer&&) noexcept;
  Tokenizer& operator=(Tokenizer&&) noexcept;
  Tokenizer(const Tokenizer&) = delete;
  Tokenizer& operator=(const Tokenizer&) = delete;

  // add_special_tokens applies the post_processor (DeepSeek: prepends bos).
  std::vector<int32_t> encode(std::string_view text, bool add_special_tokens = false) const;
  // Ids with no token are skipped (as tokenizers does); skip_special drops added tokens
  // marked special (DeepSeek-V4: bos/eos; the chat markers are not special).
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const;

  // The token's string as written in tokenizer.json (byte-level form, e.g. "Ġthe"), or the
  // added token's content. token_id: -1 when absent; token: "" for an id with no token.
  int32_t token_id(std::string_view token) const;
  std::string token(int32_t id) const;
  // The bytes decode() gives for one id ("" for an id with no token).
  std::string token_bytes(int32_t id) const;
  bool is_special(int32_t id) const;

  // 1 + the largest id of the model vocabulary and the added tokens.
  int32_t vocab_size() const;
  int32_t bos_id() const;
  int32_t eos_id() const;
  const std::string& path() const;

  std::string apply_chat(const std::vector<ChatMessage>& msgs, bool add_generation_prompt,
                         bool thinking) const;
  std::string apply_chat(const std::vector<ChatMessage>& msgs, const ChatOptions& opt) const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsv4
