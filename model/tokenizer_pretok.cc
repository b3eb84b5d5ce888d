// Pre-tokenizer of model/tokenizer.h: UTF-8 helpers, the GPT-2 byte alphabet, PCRE2 regexes
// with Oniguruma's Unicode classes, and tokenizers' Split / ByteLevel semantics.
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <boost/json.hpp>

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <stdexcept>

#include "model/tokenizer_internal.h"
#include "model/tokenizer_unicode_tables.h"

namespace dsv4::tok_detail {

namespace json = boost::json;

// ---------------------------------------------------------------- UTF-8 and byte alphabet

size_t utf8_char_len(const unsigned char* p, size_t n) {
  if (n == 0) return 0;
  const unsigned c = p[0];
  auto cont = [&](size_t k, unsigned lo = 0x80, unsigned hi = 0xBF) {
    return k < n && p[k] >= lo && p[k] <= hi;
  };
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    const unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
    return cont(1, lo, hi) && cont(2) ? 3 : 0;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    const unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
    return cont(1, lo, hi) && cont(2) && cont(3) ? 4 : 0;
  }
  return 0;
}

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

namespace {

// GPT-2's map: printable Latin-1 bytes ('!'..'~', 0xA1..0xAC, 0xAE..0xFF) stand for
// themselves; the other 68 bytes, in increasing order, take U+0100, U+0101, ...
struct ByteAlphabet {
  std::array<uint32_t, 256> to_cp{};
  std::array<int16_t, 0x144> from_cp{};
  ByteAlphabet() {
    from_cp.fill(-1);
    uint32_t next = 0x100;
    for (uint32_t b = 0; b < 256; ++b) {
      const bool keep = (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
      to_cp[b] = keep ? b : next++;
      from_cp[to_cp[b]] = int16_t(b);
    }
  }
};
const ByteAlphabet& alphabet() {
  static const ByteAlphabet a;
  return a;
}

}  // namespace

uint32_t byte_to_codepoint(uint8_t b) { return alphabet().to_cp[b]; }
int byte_from_codepoint(uint32_t cp) { return cp < 0x144 ? alphabet().from_cp[cp] : -1; }

// ---------------------------------------------------------------- pattern rewrite

namespace {

template <size_t N>
void append_ranges(std::string& out, const tokenizer_tables::CodeRange (&r)[N]) {
  char buf[48];
  for (const auto& x : r) {
    if (x.lo > 0x10FFFF) continue;
    if (x.lo == x.hi) std::snprintf(buf, sizeof buf, "\\x{%X}", unsigned(x.lo));
    else std::snprintf(buf, sizeof buf, "\\x{%X}-\\x{%X}", unsigned(x.lo), unsigned(x.hi));
    out += buf;
  }
}

// Class items (no brackets) for Oniguruma's \p{cat}.
std::string category_items(char cat) {
  std::string s = std::string("\\p{") + cat + "}";
  switch (cat) {
    case 'L': append_ranges(s, tokenizer_tables::kExtraL); break;
    case 'M': append_ranges(s, tokenizer_tables::kExtraM); break;
    case 'N': append_ranges(s, tokenizer_tables::kExtraN); break;
    case 'P': append_ranges(s, tokenizer_tables::kExtraP); break;
    case 'S': append_ranges(s, tokenizer_tables::kExtraS); break;
    default: break;
  }
  return s;
}

std::string space_items() {
  std::string s;
  append_ranges(s, tokenizer_tables::kSpace);
  return s;
}

}  // namespace

std::string translate_pattern(std::string_view p) {
  std::string out;
  out.reserve(p.size() * 2);
  bool in_class = false;
  const size_t n = p.size();
  size_t i = 0;
  while (i < n) {
    const char c = p[i];
    if (c == '\\' && i + 1 < n) {
      const char d = p[i + 1];
      if (d == 'p' || d == 'P') {
        size_t end = i + 2;
        std::string name;
        if (end < n && p[end] == '{') {
          const size_t k = p.find('}', end);
          if (k != std::string_view::npos) {
            name = std::string(p.substr(end + 1, k - end - 1));
            end = k + 1;
          }
        } else if (end < n) {
          name = std::string(1, p[end]);
          end += 1;
        }
        bool neg = d == 'P';
        if (!name.empty() && name[0] == '^') {
          neg = !neg;
          name.erase(0, 1);
        }
        const bool ours = name.size() == 1 && std::string_view("LMNPS").find(name[0]) != std::string_view::npos;
        if (ours && !in_class) {
          out += neg ? "[^" : "[";
          out += category_items(name[0]);
          out += ']';
        } else if (ours && !neg) {
          out += category_items(name[0]);
        } else {
          out.append(p.substr(i, end - i));  // PCRE2's own tables
        }
        i = end;
        continue;
      }
      if (d == 's') {
        out += in_class ? space_items() : "[" + space_items() + "]";
        i += 2;
        continue;
      }
      if (d == 'S' && !in_class) {
        out += "[^" + space_items() + "]";
        i += 2;
        continue;
      }
      size_t len = 1 + std::max<size_t>(1, utf8_char_len(reinterpret_cast<const unsigned char*>(p.data() + i + 1), n - i - 1));
      out.append(p.substr(i, std::min(len, n - i)));
      i += len;
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      ++i;
      if (i < n && p[i] == '^') out += p[i++];
      if (i < n && p[i] == ']') out += p[i++];  // a leading ']' is a literal
      continue;
    }
    if (in_class && c == '[' && i + 1 < n && p[i + 1] == ':') {  // [:alpha:]
      const size_t k = p.find(":]", i + 2);
      if (k != std::string_view::npos) {
        out.append(p.substr(i, k + 2 - i));
        i = k + 2;
        continue;
      }
    }
    if (in_class && c == ']') in_class = false;
    out += c;
    ++i;
  }
  return out;
}

// ---------------------------------------------------------------- PCRE2

namespace {
std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  pcre2_get_error_message(code, buf, sizeof buf);
  return reinterpret_cast<const char*>(buf);
}
}  // namespace

Scratch::Scratch() {
  md_ = pcre2_match_data_create(4, nullptr);
  mc_ = pcre2_match_context_create(nullptr);
  js_ = pcre2_jit_stack_create(64 * 1024, 16 * 1024 * 1024, nullptr);
  if (!md_ || !mc_) throw std::bad_alloc();
  auto* mc = static_cast<pcre2_match_context*>(mc_);
  if (js_) pcre2_jit_stack_assign(mc, nullptr, js_);
  // The default match limit (10^7) trips on one pre-token of ~10^7 spaces; the tokenizer
  // patterns are linear, so lift the limits instead of failing on long inputs.
  pcre2_set_match_limit(mc, UINT32_MAX);
  pcre2_set_depth_limit(mc, UINT32_MAX);
  pcre2_set_heap_limit(mc, UINT32_MAX);
}

Scratch::~Scratch() {
  pcre2_match_data_free(static_cast<pcre2_match_data*>(md_));
  pcre2_match_context_free(static_cast<pcre2_match_context*>(mc_));
  if (js_) pcre2_jit_stack_free(static_cast<pcre2_jit_stack*>(js_));
}

std::string_view Scratch::keep(std::string s) {
  arena_.push_back(std::move(s));
  return arena_.back();
}

Regex::Regex(std::string_view pattern) {
  const std::string t = translate_pattern(pattern);
  int err = 0;
  PCRE2_SIZE off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(t.data()), t.size(), PCRE2_UTF | PCRE2_UCP,
                                   &err, &off, nullptr);
  if (!code)
    throw std::invalid_argument("regex does not compile (" + pcre2_message(err) + " at offset " +
                                std::to_string(off) + " of the rewritten pattern)");
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);  // failure: the interpreter runs instead
  code_ = code;
}

Regex::~Regex() { pcre2_code_free(static_cast<pcre2_code*>(code_)); }

void Regex::find_all(std::string_view subject, std::vector<std::pair<size_t, size_t>>& out,
                     Scratch& s) const {
  auto* code = static_cast<pcre2_code*>(code_);
  auto* md = static_cast<pcre2_match_data*>(s.match_data());
  auto* mc = static_cast<pcre2_match_context*>(s.match_context());
  const auto* subj = reinterpret_cast<PCRE2_SPTR>(subject.data());
  const size_t n = subject.size();
  size_t start = 0;
  while (start <= n) {
    const int rc = pcre2_match(code, subj, n, start, PCRE2_NO_UTF_CHECK, md, mc);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) throw std::runtime_error("tokenizer regex match failed: " + pcre2_message(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t b = ov[0], e = std::max(ov[0], ov[1]);
    out.emplace_back(b, e);
    if (e > b) {
      start = e;
    } else {
      if (b >= n) break;
      start = b + std::max<size_t>(1, utf8_char_len(subj + b, n - b));
    }
  }
}

// ---------------------------------------------------------------- Split semantics

namespace {

struct Seg {
  size_t b, e;
  bool match;
};

// tokenizers' NormalizedString::split with a pattern and a behaviour; empty pieces dropped.
void split_piece(std::string_view piece, const PreTokStep& st, std::vector<std::string_view>& out, Scratch& s,
                 std::vector<std::pair<size_t, size_t>>& m, std::vector<Seg>& segs, std::vector<Seg>& acc) {
  m.clear();
  if (st.regex) {
    st.regex->find_all(piece, m, s);
  } else {
    for (size_t pos = piece.find(st.literal); pos != std::string_view::npos;
         pos = piece.find(st.literal, pos + st.literal.size()))
      m.emplace_back(pos, pos + st.literal.size());
  }
  segs.clear();
  size_t prev = 0;
  for (const auto& [b, e] : m) {
    if (prev != b) segs.push_back({prev, b, false});
    segs.push_back({b, e, true});
    prev = e;
  }
  if (prev != piece.size() || segs.empty()) segs.push_back({prev, piece.size(), false});
  if (st.invert)
    for (auto& g : segs) g.match = !g.match;

  acc.clear();
  bool prev_match = false;
  switch (st.behavior) {
    case SplitBehavior::Isolated:
      acc = segs;
      break;
    case SplitBehavior::Removed:
      for (const auto& g : segs)
        if (!g.match) acc.push_back(g);
      break;
    case SplitBehavior::MergedWithPrevious:
      for (const auto& g : segs) {
        if (g.match && !prev_match && !acc.empty()) acc.back().e = g.e;
        else acc.push_back(g);
        prev_match = g.match;
      }
      break;
    case SplitBehavior::MergedWithNext:
      for (auto it = segs.rbegin(); it != segs.rend(); ++it) {
        if (it->match && !prev_match && !acc.empty()) acc.back().b = it->b;
        else acc.push_back(*it);
        prev_match = it->match;
      }
      std::reverse(acc.begin(), acc.end());
      break;
    case SplitBehavior::Contiguous:
      for (const auto& g : segs) {
        if (g.match == prev_match && !acc.empty()) acc.back().e = g.e;
        else acc.push_back(g);
        prev_match = g.match;
      }
      break;
  }
  for (const auto& g : acc)
    if (g.e > g.b) out.push_back(piece.substr(g.b, g.e - g.b));
}

const json::object& as_obj(const json::value& v, const std::string& path, const std::string& field) {
  if (!v.is_object()) fail(path, field, "expected an object");
  return v.get_object();
}

std::string get_str(const json::object& o, const char* key, const std::string& path, const std::string& field) {
  const json::value* v = o.if_contains(key);
  if (!v || !v->is_string()) fail(path, field + "." + key, "expected a string");
  return std::string(v->get_string());
}

bool get_bool(const json::object& o, const char* key, bool dflt, const std::string& path, const std::string& field) {
  const json::value* v = o.if_contains(key);
  if (!v || v->is_null()) return dflt;
  if (!v->is_bool()) fail(path, field + "." + key, "expected true or false");
  return v->get_bool();
}

}  // namespace

void PreTokenizer::parse_step(const json::value& v, const std::string& path, const std::string& field) {
  const json::object& o = as_obj(v, path, field);
  const std::string type = get_str(o, "type", path, field);
  if (type == "Sequence") {
    const json::value* list = o.if_contains("pretokenizers");
    if (!list || !list->is_array()) fail(path, field + ".pretokenizers", "expected an array");
    const json::array& a = list->get_array();
    for (size_t i = 0; i < a.size(); ++i) parse_step(a[i], path, field + ".pretokenizers[" + std::to_string(i) + "]");
    return;
  }
  PreTokStep st;
  if (type == "Split") {
    const json::value* pat = o.if_contains("pattern");
    if (!pat || !pat->is_object()) fail(path, field + ".pattern", "expected {\"Regex\": ...} or {\"String\": ...}");
    const json::object& po = pat->get_object();
    if (const json::value* r = po.if_contains("Regex"); r && r->is_string()) {
      try {
        st.regex = std::make_unique<Regex>(std::string_view(r->get_string()));
      } catch (const std::invalid_argument& e) {
        fail(path, field + ".pattern.Regex", e.what());
      }
    } else if (const json::value* l = po.if_contains("String"); l && l->is_string()) {
      st.literal = std::string(l->get_string());
      if (st.literal.empty()) fail(path, field + ".pattern.String", "an empty String pattern is not supported");
    } else {
      fail(path, field + ".pattern", "expected {\"Regex\": string} or {\"String\": string}");
    }
    const std::string b = get_str(o, "behavior", path, field);
    if (b == "Isolated") st.behavior = SplitBehavior::Isolated;
    else if (b == "Removed") st.behavior = SplitBehavior::Removed;
    else if (b == "MergedWithPrevious") st.behavior = SplitBehavior::MergedWithPrevious;
    else if (b == "MergedWithNext") st.behavior = SplitBehavior::MergedWithNext;
    else if (b == "Contiguous") st.behavior = SplitBehavior::Contiguous;
    else fail(path, field + ".behavior", "unknown split behavior '" + b + "'");
    st.invert = get_bool(o, "invert", false, path, field);
  } else if (type == "ByteLevel") {
    st.byte_level = true;
    st.add_prefix_space = get_bool(o, "add_prefix_space", true, path, field);
    st.use_regex = get_bool(o, "use_regex", true, path, field);
  } else {
    fail(path, field + ".type", "unsupported pre-tokenizer type '" + type +
                                    "' (supported: Sequence, Split, ByteLevel)");
  }
  steps_.push_back(std::move(st));
}

void PreTokenizer::parse(const json::value& v, const std::string& path) {
  steps_.clear();
  if (v.is_null()) fail(path, "pre_tokenizer", "null; a byte-level BPE needs a ByteLevel pre-tokenizer");
  parse_step(v, path, "pre_tokenizer");
  for (size_t i = 0; i < steps_.size(); ++i) {
    const bool last = i + 1 == steps_.size();
    if (steps_[i].byte_level && !last)
      fail(path, "pre_tokenizer", "ByteLevel must be the last pre-tokenizer step");
    if (last && !steps_[i].byte_level)
      fail(path, "pre_tokenizer", "no ByteLevel step; only byte-level BPE is supported");
  }
  if (steps_.back().use_regex)
    gpt2_ = std::make_unique<Regex>(
        "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+");
}

void PreTokenizer::run(std::string_view piece, std::vector<std::string_view>& out, Scratch& s) const {
  std::vector<std::string_view> cur{piece}, next;
  std::vector<std::pair<size_t, size_t>> m;
  std::vector<Seg> segs, acc;
  for (size_t i = 0; i + 1 < steps_.size(); ++i) {
    next.clear();
    for (std::string_view p : cur) split_piece(p, steps_[i], next, s, m, segs, acc);
    cur.swap(next);
  }
  const PreTokStep& bl = steps_.back();
  for (std::string_view p : cur) {
    if (bl.add_prefix_space && (p.empty() || p.front() != ' ')) p = s.keep(" " + std::string(p));
    if (!bl.use_regex) {
      out.push_back(p);
      continue;
    }
    m.clear();
    gpt2_->find_all(p, m, s);
    size_t prev = 0;
    for (const auto& [b, e] : m) {
      if (prev != b) out.push_back(p.substr(prev, b - prev));
      if (e > b) out.push_back(p.substr(b, e - b));
      prev = e;
    }
    if (prev < p.size()) out.push_back(p.substr(prev));
  }
}

}  // namespace dsv4::tok_detail
