// Tokenizer: tokenizer.json loading, added-token matching, byte-level BPE, decode.
// Semantics follow Hugging Face tokenizers; see model/tokenizer.h.
#include "model/tokenizer.h"

#include <boost/json.hpp>

#include <algorithm>
#include <array>
#include <climits>
#include <fstream>
#include <queue>
#include <sstream>
#include <unordered_map>

#include "model/tokenizer_internal.h"
#include "reference/errors.h"

namespace dsv4 {

namespace json = boost::json;
using tok_detail::fail;

void tok_detail::fail(const std::string& path, const std::string& field, const std::string& what) {
  throw InputError("tokenizer '" + path + "': " + field + ": " + what);
}

namespace {

constexpr const char* kBos = "<｜begin▁of▁sentence｜>";
constexpr const char* kEos = "<｜end▁of▁sentence｜>";
constexpr size_t kCacheMaxWord = 64;  // bytes; longer pre-tokens are not cached
constexpr size_t kNaiveMaxSymbols = 48;

struct StrHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>{}(s); }
};
using StrMap = std::unordered_map<std::string, int32_t, StrHash, std::equal_to<>>;

// (left id, right id) -> (rank, merged id); open addressing.
class MergeMap {
 public:
  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < 2 * n) cap <<= 1;
    slots_.assign(cap, Slot{});
    mask_ = cap - 1;
  }
  // false when the pair is already present (the first, lowest rank, wins).
  bool insert(int32_t a, int32_t b, int32_t rank, int32_t merged) {
    const uint64_t k = key(a, b);
    for (size_t i = hash(k) & mask_;; i = (i + 1) & mask_) {
      if (slots_[i].rank < 0) {
        slots_[i] = {k, rank, merged};
        return true;
      }
      if (slots_[i].key == k) return false;
    }
  }
  // rank < 0 when absent.
  std::pair<int32_t, int32_t> find(int32_t a, int32_t b) const {
    const uint64_t k = key(a, b);
    for (size_t i = hash(k) & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.rank < 0) return {-1, -1};
      if (s.key == k) return {s.rank, s.merged};
    }
  }

 private:
  struct Slot {
    uint64_t key = 0;
    int32_t rank = -1;
    int32_t merged = -1;
  };
  static uint64_t key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  static size_t hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return size_t(k);
  }
  std::vector<Slot> slots_{16};
  size_t mask_ = 15;
};

// Added tokens: a byte trie, leftmost-longest matching.
class AddedTrie {
 public:
  bool empty() const { return nodes_.size() == 1; }
  void add(std::string_view s, int32_t id) {
    int32_t cur = 0;
    for (unsigned char c : s) {
      int32_t nx = child(cur, c);
      if (nx < 0) {
        nx = int32_t(nodes_.size());
        nodes_[cur].next.emplace_back(c, nx);
        nodes_.emplace_back();
      }
      cur = nx;
    }
    nodes_[cur].id = id;
    first_[static_cast<unsigned char>(s[0])] = true;
  }
  // Longest token starting at t[pos]: {length, id}, length 0 when none.
  std::pair<size_t, int32_t> match(std::string_view t, size_t pos) const {
    std::pair<size_t, int32_t> best{0, -1};
    if (!first_[static_cast<unsigned char>(t[pos])]) return best;
    int32_t cur = 0;
    for (size_t i = pos; i < t.size(); ++i) {
      cur = child(cur, static_cast<unsigned char>(t[i]));
      if (cur < 0) break;
      if (nodes_[cur].id >= 0) best = {i + 1 - pos, nodes_[cur].id};
    }
    return best;
  }

 private:
  struct Node {
    std::vector<std::pair<unsigned char, int32_t>> next;
    int32_t id = -1;
  };
  int32_t child(int32_t n, unsigned char c) const {
    for (const auto& [k, v] : nodes_[n].next)
      if (k == c) return v;
    return -1;
  }
  std::vector<Node> nodes_{1};
  std::array<bool, 256> first_{};
};

// One template of a TemplateProcessing: ids to emit, with -1 standing for the sequence.
using Template = std::vector<int32_t>;

struct EncodeState {
  tok_detail::Scratch scratch;
  std::vector<std::string_view> words;
  std::unordered_map<std::string_view, std::pair<uint32_t, uint32_t>> cache;
  std::vector<int32_t> cache_ids;
  std::vector<int32_t> syms, ranks, merged;
};

const json::value& member(const json::object& o, const char* key) {
  static const json::value null_value;
  const json::value* v = o.if_contains(key);
  return v ? *v : null_value;
}

}  // namespace

struct Tokenizer::Impl {
  std::string path;
  std::vector<std::string> id_token;  // "" = no token
  std::vector<std::string> id_bytes;
  std::vector<uint8_t> id_present, id_special;
  StrMap token_to_id;                 // added tokens win over the model vocabulary
  StrMap bytes_to_id;                 // model vocabulary by bytes (ignore_merges)
  std::array<int32_t, 256> byte_id{};
  MergeMap merges;
  bool ignore_merges = false, fuse_unk = false;
  int32_t unk = -1;
  AddedTrie added_raw, added_norm;  // normalized = false / true
  tok_detail::PreTokenizer pretok;
  std::vector<Template> post;
  int32_t bos = -1, eos = -1;

  void load(const json::object& root);
  void load_model(const json::object& m, StrMap& vocab);
  void load_added(const json::value& v);
  void load_post(const json::value& v, const std::string& field);
  void set_token(int32_t id, const std::string& s, const std::string& field);

  void bpe(std::string_view w, std::vector<int32_t>& out, EncodeState& st) const;
  void bpe_cached(std::string_view w, std::vector<int32_t>& out, EncodeState& st) const;
  void encode_text(std::string_view t, std::vector<int32_t>& out, EncodeState& st) const;
  void encode_valid(std::string_view t, std::vector<int32_t>& out, EncodeState& st) const;
};

namespace {

// tokenizers' ByteLevel decoder: a token whose every character is in the byte alphabet
// decodes to those bytes, any other token to its own UTF-8.
std::string token_to_bytes(const std::string& tok) {
  std::string out;
  const auto* p = reinterpret_cast<const unsigned char*>(tok.data());
  size_t i = 0;
  while (i < tok.size()) {
    const size_t len = tok_detail::utf8_char_len(p + i, tok.size() - i);
    if (len == 0) return tok;
    uint32_t cp = p[i];
    if (len == 2) cp = ((p[i] & 0x1F) << 6) | (p[i + 1] & 0x3F);
    else if (len == 3) cp = ((p[i] & 0x0F) << 12) | ((p[i + 1] & 0x3F) << 6) | (p[i + 2] & 0x3F);
    else if (len == 4) cp = ((p[i] & 0x07) << 18) | ((p[i + 1] & 0x3F) << 12) | ((p[i + 2] & 0x3F) << 6) | (p[i + 3] & 0x3F);
    const int b = tok_detail::byte_from_codepoint(cp);
    if (b < 0) return tok;
    out += char(b);
    i += len;
  }
  return out;
}

void check_normalizer(const json::value& v, const std::string& path, const std::string& field) {
  if (v.is_null()) return;
  if (!v.is_object()) fail(path, field, "expected an object or null");
  const json::object& o = v.get_object();
  const json::value& t = member(o, "type");
  if (t.is_string() && t.get_string() == "Sequence") {
    const json::value& list = member(o, "normalizers");
    if (!list.is_array()) fail(path, field + ".normalizers", "expected an array");
    for (size_t i = 0; i < list.get_array().size(); ++i)
      check_normalizer(list.get_array()[i], path, field + ".normalizers[" + std::to_string(i) + "]");
    return;
  }
  fail(path, field + ".type", "unsupported normalizer" +
                                  (t.is_string() ? " '" + std::string(t.get_string()) + "'" : std::string()) +
                                  " (only null or an empty Sequence)");
}

}  // namespace

void Tokenizer::Impl::set_token(int32_t id, const std::string& s, const std::string& field) {
  if (id < 0 || id >= (1 << 26)) fail(path, field, "id " + std::to_string(id) + " out of range");
  if (size_t(id) >= id_token.size()) {
    id_token.resize(size_t(id) + 1);
    id_present.resize(size_t(id) + 1, 0);
    id_special.resize(size_t(id) + 1, 0);
  }
  if (id_present[id] && id_token[id] != s)
    fail(path, field, "id " + std::to_string(id) + " given to both '" + id_token[id] + "' and '" + s + "'");
  id_token[id] = s;
  id_present[id] = 1;
}

void Tokenizer::Impl::load_model(const json::object& m, StrMap& vocab) {
  const json::value& type = member(m, "type");
  if (!type.is_null() && !(type.is_string() && type.get_string() == "BPE"))
    fail(path, "model.type", "unsupported model type '" +
                                 (type.is_string() ? std::string(type.get_string()) : json::serialize(type)) +
                                 "' (only BPE)");
  const json::value& dropout = member(m, "dropout");
  if (!dropout.is_null() && !(dropout.is_number() && dropout.to_number<double>() == 0.0))
    fail(path, "model.dropout", "BPE dropout is not supported");
  for (const char* k : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const json::value& v = member(m, k);
    if (!v.is_null() && !(v.is_string() && v.get_string().empty()))
      fail(path, std::string("model.") + k, "not supported (byte-level BPE has none)");
  }
  for (const char* k : {"ignore_merges", "fuse_unk", "byte_fallback"}) {
    const json::value& v = member(m, k);
    if (!v.is_null() && !v.is_bool()) fail(path, std::string("model.") + k, "expected true or false");
  }
  ignore_merges = member(m, "ignore_merges").is_bool() && member(m, "ignore_merges").get_bool();
  fuse_unk = member(m, "fuse_unk").is_bool() && member(m, "fuse_unk").get_bool();

  const json::value& v = member(m, "vocab");
  if (!v.is_object()) fail(path, "model.vocab", "expected an object {token: id}");
  vocab.reserve(v.get_object().size());
  for (const auto& kv : v.get_object()) {
    const std::string tok(kv.key());
    if (!kv.value().is_int64()) fail(path, "model.vocab['" + tok + "']", "expected an integer id");
    const int64_t id = kv.value().get_int64();
    if (id < 0 || id >= (1 << 26)) fail(path, "model.vocab['" + tok + "']", "id " + std::to_string(id) + " out of range");
    set_token(int32_t(id), tok, "model.vocab['" + tok + "']");
    vocab[tok] = int32_t(id);
  }

  const json::value& unk_v = member(m, "unk_token");
  if (unk_v.is_string()) {
    auto it = vocab.find(std::string_view(unk_v.get_string()));
    if (it == vocab.end()) fail(path, "model.unk_token", "'" + std::string(unk_v.get_string()) + "' is not in model.vocab");
    unk = it->second;
  } else if (!unk_v.is_null()) {
    fail(path, "model.unk_token", "expected a string or null");
  }

  const json::value& mv = member(m, "merges");
  if (!mv.is_array()) fail(path, "model.merges", "expected an array");
  const json::array& ma = mv.get_array();
  merges.reserve(ma.size());
  auto lookup = [&](const std::string& s, const std::string& field) {
    auto it = vocab.find(s);
    if (it == vocab.end()) fail(path, field, "token '" + s + "' is not in model.vocab");
    return it->second;
  };
  for (size_t r = 0; r < ma.size(); ++r) {
    const std::string field = "model.merges[" + std::to_string(r) + "]";
    std::string a, b;
    if (ma[r].is_string()) {
      const std::string_view s = ma[r].get_string();
      const size_t sp = s.find(' ');
      if (sp == std::string_view::npos || s.find(' ', sp + 1) != std::string_view::npos)
        fail(path, field, "expected \"left right\" (one space), found '" + std::string(s) + "'");
      a = std::string(s.substr(0, sp));
      b = std::string(s.substr(sp + 1));
    } else if (ma[r].is_array() && ma[r].get_array().size() == 2 && ma[r].get_array()[0].is_string() &&
               ma[r].get_array()[1].is_string()) {
      a = std::string(ma[r].get_array()[0].get_string());
      b = std::string(ma[r].get_array()[1].get_string());
    } else {
      fail(path, field, "expected \"left right\" or [\"left\", \"right\"]");
    }
    const int32_t ia = lookup(a, field), ib = lookup(b, field), im = lookup(a + b, field);
    merges.insert(ia, ib, int32_t(r), im);
  }
}

void Tokenizer::Impl::load_added(const json::value& v) {
  if (v.is_null()) return;
  if (!v.is_array()) fail(path, "added_tokens", "expected an array");
  const json::array& a = v.get_array();
  for (size_t i = 0; i < a.size(); ++i) {
    const std::string field = "added_tokens[" + std::to_string(i) + "]";
    if (!a[i].is_object()) fail(path, field, "expected an object");
    const json::object& o = a[i].get_object();
    const json::value& id = member(o, "id");
    const json::value& content = member(o, "content");
    if (!id.is_int64()) fail(path, field + ".id", "expected an integer");
    if (!content.is_string() || content.get_string().empty()) fail(path, field + ".content", "expected a non-empty string");
    for (const char* k : {"lstrip", "rstrip", "single_word"}) {
      const json::value& f = member(o, k);
      if (f.is_bool() && f.get_bool()) fail(path, field + "." + k, "true is not supported");
    }
    const std::string s(content.get_string());
    const int32_t tid = int32_t(id.get_int64());
    if (id.get_int64() < 0 || id.get_int64() >= (1 << 26)) fail(path, field + ".id", "out of range");
    // An added token may reuse its model-vocabulary id (DeepSeek's bos/eos do).
    if (size_t(tid) < id_present.size() && id_present[tid] && id_token[tid] != s)
      fail(path, field + ".id", "id " + std::to_string(tid) + " already belongs to '" + id_token[tid] + "'");
    set_token(tid, s, field);
    const json::value& sp = member(o, "special");
    id_special[tid] = sp.is_bool() && sp.get_bool();
    token_to_id[s] = tid;
    const json::value& norm = member(o, "normalized");
    const bool normalized = norm.is_bool() ? norm.get_bool() : !id_special[tid];
    (normalized ? added_norm : added_raw).add(s, tid);
  }
}

void Tokenizer::Impl::load_post(const json::value& v, const std::string& field) {
  if (v.is_null()) return;
  if (!v.is_object()) fail(path, field, "expected an object or null");
  const json::object& o = v.get_object();
  const json::value& t = member(o, "type");
  const std::string type = t.is_string() ? std::string(t.get_string()) : std::string();
  if (type == "ByteLevel") return;  // offsets only
  if (type == "Sequence") {
    const json::value& list = member(o, "processors");
    if (!list.is_array()) fail(path, field + ".processors", "expected an array");
    for (size_t i = 0; i < list.get_array().size(); ++i)
      load_post(list.get_array()[i], field + ".processors[" + std::to_string(i) + "]");
    return;
  }
  if (type != "TemplateProcessing")
    fail(path, field + ".type", "unsupported post-processor '" + type + "' (supported: TemplateProcessing, ByteLevel, Sequence)");
  const json::value& single = member(o, "single");
  const json::value& specials = member(o, "special_tokens");
  if (!single.is_array()) fail(path, field + ".single", "expected an array");
  Template tpl;
  for (size_t i = 0; i < single.get_array().size(); ++i) {
    const std::string f = field + ".single[" + std::to_string(i) + "]";
    const json::value& item = single.get_array()[i];
    const json::object* io = item.if_object();
    if (io && io->if_contains("Sequence")) {
      const json::value& seq = member(*io, "Sequence");
      const json::value& sid = seq.is_object() ? member(seq.get_object(), "id") : seq;
      if (!sid.is_string() || sid.get_string() != "A") fail(path, f, "only sequence A is allowed in a single template");
      tpl.push_back(-1);
    } else if (io && io->if_contains("SpecialToken") && io->at("SpecialToken").is_object()) {
      const json::value& name = member(io->at("SpecialToken").get_object(), "id");
      const json::value* entry = specials.is_object() && name.is_string()
                                     ? specials.get_object().if_contains(name.get_string())
                                     : nullptr;
      if (!entry || !entry->is_object() || !member(entry->get_object(), "ids").is_array())
        fail(path, f, "special token '" + (name.is_string() ? std::string(name.get_string()) : std::string()) +
                          "' is not in " + field + ".special_tokens");
      for (const json::value& x : member(entry->get_object(), "ids").get_array()) {
        if (!x.is_int64() || x.get_int64() < 0 || size_t(x.get_int64()) >= id_token.size() || !id_present[x.get_int64()])
          fail(path, field + ".special_tokens", "ids must name existing tokens");
        tpl.push_back(int32_t(x.get_int64()));
      }
    } else {
      fail(path, f, "expected {\"SpecialToken\": ...} or {\"Sequence\": ...}");
    }
  }
  post.push_back(std::move(tpl));
}

void Tokenizer::Impl::load(const json::object& root) {
  for (const char* k : {"truncation", "padding"})
    if (!member(root, k).is_null()) fail(path, k, "not supported (must be null)");
  const json::value& model = member(root, "model");
  if (!model.is_object()) fail(path, "model", "missing or not an object");
  StrMap vocab;
  load_model(model.get_object(), vocab);
  load_added(member(root, "added_tokens"));
  for (auto& [tok, id] : vocab) token_to_id.emplace(tok, id);  // added tokens keep priority
  check_normalizer(member(root, "normalizer"), path, "normalizer");
  pretok.parse(member(root, "pre_tokenizer"), path);
  load_post(member(root, "post_processor"), "post_processor");
  const json::value& dec = member(root, "decoder");
  if (!dec.is_null()) {
    const json::value& t = dec.is_object() ? member(dec.get_object(), "type") : dec;
    if (!t.is_string() || t.get_string() != "ByteLevel")
      fail(path, "decoder", "unsupported decoder " + json::serialize(t) + " (only ByteLevel)");
  }

  id_bytes.resize(id_token.size());
  for (size_t i = 0; i < id_token.size(); ++i)
    if (id_present[i]) id_bytes[i] = token_to_bytes(id_token[i]);
  for (int b = 0; b < 256; ++b) {
    std::string s;
    tok_detail::append_utf8(s, tok_detail::byte_to_codepoint(uint8_t(b)));
    auto it = vocab.find(s);
    byte_id[b] = it == vocab.end() ? -1 : it->second;
  }
  if (ignore_merges)
    for (auto& [tok, id] : vocab) bytes_to_id.emplace(id_bytes[id], id);
  auto find = [&](const char* s) {
    auto it = token_to_id.find(std::string_view(s));
    return it == token_to_id.end() ? -1 : it->second;
  };
  bos = find(kBos);
  eos = find(kEos);
}

// ---------------------------------------------------------------- BPE

void Tokenizer::Impl::bpe(std::string_view w, std::vector<int32_t>& out, EncodeState& st) const {
  if (ignore_merges) {
    auto it = bytes_to_id.find(w);
    if (it != bytes_to_id.end()) {
      out.push_back(it->second);
      return;
    }
  }
  std::vector<int32_t>& syms = st.syms;
  syms.clear();
  bool prev_unk = false;
  for (unsigned char c : w) {
    const int32_t id = byte_id[c];
    if (id >= 0) {
      syms.push_back(id);
      prev_unk = false;
    } else if (unk >= 0) {  // tokenizers: unknown characters become unk_token (fused if asked)
      if (!(fuse_unk && prev_unk)) syms.push_back(unk);
      prev_unk = true;
    }  // else dropped, as tokenizers drops them with no unk_token
  }
  const size_t n = syms.size();
  if (n <= kNaiveMaxSymbols) {
    // Lowest rank first, leftmost among equal ranks; ranks[i] is the pair (i, i+1).
    std::vector<int32_t>& ranks = st.ranks;
    std::vector<int32_t>& merged = st.merged;
    ranks.resize(n > 0 ? n - 1 : 0);
    merged.resize(ranks.size());
    auto look = [&](size_t i) {
      const auto [r, m] = merges.find(syms[i], syms[i + 1]);
      ranks[i] = r < 0 ? INT32_MAX : r;
      merged[i] = m;
    };
    for (size_t i = 0; i < ranks.size(); ++i) look(i);
    while (!ranks.empty()) {
      size_t best = 0;
      for (size_t i = 1; i < ranks.size(); ++i)
        if (ranks[i] < ranks[best]) best = i;
      if (ranks[best] == INT32_MAX) break;
      syms[best] = merged[best];
      syms.erase(syms.begin() + std::ptrdiff_t(best) + 1);
      ranks.erase(ranks.begin() + std::ptrdiff_t(best));
      merged.erase(merged.begin() + std::ptrdiff_t(best));
      if (best > 0) look(best - 1);
      if (best < ranks.size()) look(best);
    }
    out.insert(out.end(), syms.begin(), syms.end());
    return;
  }
  // Long pre-tokens: linked symbols and a heap of candidate merges ordered by (rank, position),
  // the same order as above; stale entries are skipped when popped.
  struct Cand {
    int32_t rank, pos, merged;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : pos > o.pos; }
  };
  std::vector<int32_t> prev(n), next(n);
  for (size_t i = 0; i < n; ++i) {
    prev[i] = int32_t(i) - 1;
    next[i] = i + 1 < n ? int32_t(i + 1) : -1;
  }
  std::priority_queue<Cand, std::vector<Cand>, std::greater<>> heap;
  auto push = [&](int32_t pos) {
    if (pos < 0 || next[pos] < 0) return;
    const auto [r, m] = merges.find(syms[pos], syms[next[pos]]);
    if (r >= 0) heap.push({r, pos, m});
  };
  for (size_t i = 0; i + 1 < n; ++i) push(int32_t(i));
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    if (syms[c.pos] < 0 || next[c.pos] < 0) continue;
    const int32_t nb = next[c.pos];
    const auto [r, m] = merges.find(syms[c.pos], syms[nb]);
    if (r != c.rank || m != c.merged) continue;
    syms[c.pos] = m;
    syms[nb] = -1;
    next[c.pos] = next[nb];
    if (next[nb] >= 0) prev[next[nb]] = c.pos;
    push(prev[c.pos]);
    push(c.pos);
  }
  for (int32_t i = 0; i >= 0 && size_t(i) < n; i = next[i]) out.push_back(syms[i]);
}

void Tokenizer::Impl::bpe_cached(std::string_view w, std::vector<int32_t>& out, EncodeState& st) const {
  const bool cacheable = w.size() <= kCacheMaxWord;
  if (cacheable) {
    auto it = st.cache.find(w);
    if (it != st.cache.end()) {
      out.insert(out.end(), st.cache_ids.begin() + it->second.first,
                 st.cache_ids.begin() + it->second.first + it->second.second);
      return;
    }
  }
  const size_t before = out.size();
  bpe(w, out, st);
  if (cacheable) {
    st.cache.emplace(w, std::make_pair(uint32_t(st.cache_ids.size()), uint32_t(out.size() - before)));
    st.cache_ids.insert(st.cache_ids.end(), out.begin() + std::ptrdiff_t(before), out.end());
  }
}

// ---------------------------------------------------------------- encode

namespace {
// Splits t on the trie's tokens (leftmost-longest); text pieces go to on_text, tokens to out.
template <class F>
void split_added(std::string_view t, const AddedTrie& trie, std::vector<int32_t>& out, F&& on_text) {
  if (trie.empty()) {
    if (!t.empty()) on_text(t);
    return;
  }
  size_t start = 0;
  for (size_t i = 0; i < t.size();) {
    const auto [len, id] = trie.match(t, i);
    if (len == 0) {
      ++i;
      continue;
    }
    if (i > start) on_text(t.substr(start, i - start));
    out.push_back(id);
    i += len;
    start = i;
  }
  if (start < t.size()) on_text(t.substr(start));
}
}  // namespace

void Tokenizer::Impl::encode_text(std::string_view t, std::vector<int32_t>& out, EncodeState& st) const {
  st.words.clear();
  pretok.run(t, st.words, st.scratch);
  for (std::string_view w : st.words) bpe_cached(w, out, st);
}

void Tokenizer::Impl::encode_valid(std::string_view t, std::vector<int32_t>& out, EncodeState& st) const {
  split_added(t, added_raw, out, [&](std::string_view a) {
    split_added(a, added_norm, out, [&](std::string_view b) { encode_text(b, out, st); });
  });
}

Tokenizer::Tokenizer(const std::string& path) : impl_(std::make_unique<Impl>()) {
  impl_->path = path;
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(path, "file", "cannot open");
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  boost::system::error_code ec;
  json::value root = json::parse(text, ec);
  if (ec) fail(path, "file", "invalid JSON: " + ec.message());
  if (!root.is_object()) fail(path, "file", "top level is not a JSON object");
  impl_->load(root.get_object());
}

Tokenizer::~Tokenizer() = default;
Tokenizer::Tokenizer(Tokenizer&&) noexcept = default;
Tokenizer& Tokenizer::operator=(Tokenizer&&) noexcept = default;

std::vector<int32_t> Tokenizer::encode(std::string_view text, bool add_special_tokens) const {
  const Impl& m = *impl_;
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 4);
  EncodeState st;
  const auto* p = reinterpret_cast<const unsigned char*>(text.data());
  const size_t n = text.size();
  size_t i = 0;
  while (i < n) {
    size_t j = i;  // valid run [i, j)
    while (j < n) {
      if (p[j] < 0x80) {
        ++j;
        continue;
      }
      const size_t len = tok_detail::utf8_char_len(p + j, n - j);
      if (len == 0) break;
      j += len;
    }
    if (j > i) m.encode_valid(text.substr(i, j - i), ids, st);
    size_t k = j;  // invalid run [j, k): one pre-token of raw bytes
    while (k < n && tok_detail::utf8_char_len(p + k, n - k) == 0) ++k;
    if (k > j) m.bpe(text.substr(j, k - j), ids, st);
    i = k;
  }
  if (add_special_tokens) {
    for (const Template& tpl : m.post) {
      std::vector<int32_t> out;
      out.reserve(ids.size() + tpl.size());
      for (int32_t x : tpl) {
        if (x >= 0) out.push_back(x);
        else out.insert(out.end(), ids.begin(), ids.end());
      }
      ids.swap(out);
    }
  }
  return ids;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  const Impl& m = *impl_;
  std::string out;
  for (int32_t id : ids) {
    if (id < 0 || size_t(id) >= m.id_token.size() || !m.id_present[id]) continue;
    if (skip_special && m.id_special[id]) continue;
    out += m.id_bytes[id];
  }
  return out;
}

int32_t Tokenizer::token_id(std::string_view token) const {
  auto it = impl_->token_to_id.find(token);
  return it == impl_->token_to_id.end() ? -1 : it->second;
}

std::string Tokenizer::token(int32_t id) const {
  if (id < 0 || size_t(id) >= impl_->id_token.size()) return {};
  return impl_->id_token[id];
}

std::string Tokenizer::token_bytes(int32_t id) const {
  if (id < 0 || size_t(id) >= impl_->id_bytes.size()) return {};
  return impl_->id_bytes[id];
}

bool Tokenizer::is_special(int32_t id) const {
  return id >= 0 && size_t(id) < impl_->id_special.size() && impl_->id_special[id];
}

int32_t Tokenizer::vocab_size() const { return int32_t(impl_->id_token.size()); }
int32_t Tokenizer::bos_id() const { return impl_->bos; }
int32_t Tokenizer::eos_id() const { return impl_->eos; }
const std::string& Tokenizer::path() const { return impl_->path; }

std::string Tokenizer::apply_chat(const std::vector<ChatMessage>& msgs, bool add_generation_prompt,
                                  bool thinking) const {
  ChatOptions o;
  o.add_generation_prompt = add_generation_prompt;
  o.thinking = thinking;
  return render_chat_dsv4(msgs, o);
}

std::string Tokenizer::apply_chat(const std::vector<ChatMessage>& msgs, const ChatOptions& opt) const {
  return render_chat_dsv4(msgs, opt);
}

}  // namespace dsv4
