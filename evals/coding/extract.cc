#include "evals/coding/extract.h"

#include <algorithm>
#include <cctype>
#include <vector>

namespace dsv4::evals {

namespace {

constexpr std::string_view kFence = "```";

struct Block {
  std::string tag;  // lower case, "" when untagged
  std::string code;
  size_t open_pos = 0;  // offset of the opening fence line in the text
  bool closed = false;
};

std::string_view trim(std::string_view s) {
  const size_t b = s.find_first_not_of(" \t\r");
  if (b == std::string_view::npos) return {};
  const size_t e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

// Every fenced block of `text`, in order (an unclosed last block runs to the end).
std::vector<Block> fenced_blocks(std::string_view text) {
  std::vector<Block> out;
  bool open = false;
  Block cur;
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    const std::string_view line = text.substr(pos, eol - pos);
    const std::string_view t = trim(line);
    if (t.substr(0, kFence.size()) == kFence) {
      if (open) {
        cur.closed = true;
        out.push_back(std::move(cur));
        cur = Block{};
        open = false;
      } else {
        open = true;
        cur.open_pos = pos;
        std::string tag(trim(t.substr(kFence.size())));
        // "```python title=x" -> "python"
        tag = tag.substr(0, tag.find_first_of(" \t{"));
        std::transform(tag.begin(), tag.end(), tag.begin(),
                       [](unsigned char c) { return char(std::tolower(c)); });
        cur.tag = tag;
      }
    } else if (open) {
      cur.code.append(line);
      cur.code += '\n';
    }
    pos = eol + 1;
  }
  if (open) out.push_back(std::move(cur));
  return out;
}

// `text` cut at the first stop sequence of the language.
std::string cut_at_stop(std::string_view text, Language lang) {
  size_t end = text.size();
  for (const std::string& s : stop_sequences(lang)) end = std::min(end, text.find(s));
  return std::string(text.substr(0, end));
}

}  // namespace

ExtractedCode extract_code(std::string_view completion, Language lang,
                           std::string_view entry_point) {
  std::vector<const Block*> candidates;
  const std::vector<Block> blocks = fenced_blocks(completion);
  // The last block left open and the first one untagged after some text: that first fence
  // closes the block the prompt opened (an odd number of fence lines), and the text before
  // it continues the prompt.
  if (!blocks.empty() && !blocks.back().closed && blocks.front().tag.empty()) {
    const std::string_view before = completion.substr(0, blocks.front().open_pos);
    if (before.find_first_not_of(" \t\r\n") != std::string_view::npos)
      return {cut_at_stop(before, lang), false, "continuation"};
  }
  for (const Block& b : blocks)
    if (b.tag.empty() || is_fence_tag(lang, b.tag)) candidates.push_back(&b);
  if (!candidates.empty()) {
    const Block* pick = candidates.front();
    for (const Block* b : candidates)
      if (find_definition(lang, b->code, entry_point) != std::string::npos) {
        pick = b;
        break;
      }
    return {pick->code, find_definition(lang, pick->code, entry_point) != std::string::npos,
            "fence:" + pick->tag};
  }
  // A continuation. One that starts with the definition itself (a chat answer without a
  // fence) is a whole function; the stop sequences then apply after that definition's line.
  const size_t lead = completion.find_first_not_of(" \t\r\n");
  const std::string_view body = lead == std::string_view::npos ? "" : completion.substr(lead);
  if (find_definition(lang, body, entry_point) == 0) {
    const size_t first_eol = std::min(body.find('\n'), body.size());
    std::string code(body.substr(0, first_eol));
    code += cut_at_stop(body.substr(first_eol), lang);
    return {code, true, "continuation"};
  }
  return {cut_at_stop(completion, lang), false, "continuation"};
}

}  // namespace dsv4::evals
