#include "model/engram_map.h"

#include <numeric>
#include <unordered_map>

namespace dsv4 {

namespace {

bool valid_utf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    const size_t len = b < 0x80 ? 1 : (b >> 5) == 0x6 ? 2 : (b >> 4) == 0xE ? 3 : (b >> 3) == 0x1E ? 4 : 0;
    if (len == 0 || i + len > s.size()) return false;
    for (size_t k = 1; k < len; ++k)
      if ((static_cast<unsigned char>(s[i + k]) >> 6) != 0x2) return false;
    i += len;
  }
  return true;
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

}  // namespace

std::string engram_token_key(const std::string& bytes) {
  if (bytes.empty() || !valid_utf8(bytes)) return "";
  std::string out;
  bool in_space = false;
  for (char c : bytes) {
    if (is_space(c)) {
      in_space = true;
      continue;
    }
    if (in_space && !out.empty()) out += ' ';
    in_space = false;
    out += (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c;
  }
  return out.empty() ? " " : out;  // whitespace only -> " "
}

std::vector<int64_t> engram_token_map(const Tokenizer& tok, int64_t vocab) {
  std::vector<int64_t> map(static_cast<size_t>(vocab));
  std::unordered_map<std::string, int64_t> ids;
  int64_t next = 0;
  for (int64_t id = 0; id < vocab; ++id) {
    const std::string key = id < tok.vocab_size() ? engram_token_key(tok.token_bytes(int32_t(id))) : "";
    if (key.empty()) {
      map[size_t(id)] = next++;
      continue;
    }
    auto [it, fresh] = ids.emplace(key, next);
    if (fresh) ++next;
    map[size_t(id)] = it->second;
  }
  return map;
}

std::vector<int64_t> engram_identity_map(int64_t vocab) {
  std::vector<int64_t> map(static_cast<size_t>(vocab));
  std::iota(map.begin(), map.end(), int64_t(0));
  return map;
}

}  // namespace dsv4
