// The DeepSeek-V4 chat format (render_chat_dsv4 in model/tokenizer.h, which lists the sources
// and what is and is not implemented). Written from the conventions of encoding_dsv4.py:
// merge user/tool turns, optionally drop earlier reasoning, render each message, then the
// transition tokens after user/developer turns.
#include <string>
#include <vector>

#include "model/tokenizer.h"
#include "reference/errors.h"

namespace dsv4 {

namespace {

constexpr const char* kBos = "<｜begin▁of▁sentence｜>";
constexpr const char* kEos = "<｜end▁of▁sentence｜>";
constexpr const char* kUser = "<｜User｜>";
constexpr const char* kAssistant = "<｜Assistant｜>";
constexpr const char* kReminder = "<｜latest_reminder｜>";
constexpr const char* kThinkStart = "<think>";
constexpr const char* kThinkEnd = "</think>";

struct Msg {
  std::string role, content, reasoning;
  bool wo_eos = false;
};

bool is_user_like(const std::string& role) { return role == "user" || role == "developer"; }

int last_user_index(const std::vector<Msg>& m) {
  for (int i = int(m.size()) - 1; i >= 0; --i)
    if (is_user_like(m[size_t(i)].role)) return i;
  return -1;
}

}  // namespace

std::string render_chat_dsv4(const std::vector<ChatMessage>& msgs, const ChatOptions& opt) {
  // 1. V4 has no tool role: a tool result is a <tool_result> part of a user turn, and a run of
  //    user/tool messages is one user turn whose parts are joined by a blank line.
  std::vector<Msg> merged;
  bool last_is_merged_user = false;
  for (size_t i = 0; i < msgs.size(); ++i) {
    const ChatMessage& c = msgs[i];
    static const char* const kRoles[] = {"system", "user", "assistant", "developer", "tool", "latest_reminder"};
    bool known = false;
    for (const char* r : kRoles) known = known || c.role == r;
    if (!known) throw InputError("chat message " + std::to_string(i) + ": unknown role '" + c.role + "'");
    if (c.role == "developer" && c.content.empty())
      throw InputError("chat message " + std::to_string(i) + ": a developer message needs content");
    if (c.role == "user" || c.role == "tool") {
      const std::string part = c.role == "tool" ? "<tool_result>" + c.content + "</tool_result>" : c.content;
      if (last_is_merged_user) {
        merged.back().content += "\n\n" + part;
      } else {
        merged.push_back({"user", part, "", false});
        last_is_merged_user = true;
      }
      continue;
    }
    merged.push_back({c.role, c.content, c.reasoning, c.wo_eos});
    last_is_merged_user = false;
  }

  // 2. Thinking with drop_thinking: before the last user turn, assistant turns lose their
  //    reasoning and developer turns are dropped.
  std::vector<Msg> list;
  if (opt.thinking && opt.drop_thinking) {
    const int lu = last_user_index(merged);
    for (int i = 0; i < int(merged.size()); ++i) {
      Msg m = merged[size_t(i)];
      const bool keep = m.role == "user" || m.role == "system" || m.role == "latest_reminder" || i >= lu;
      if (keep) {
        list.push_back(std::move(m));
      } else if (m.role == "assistant") {
        m.reasoning.clear();
        list.push_back(std::move(m));
      }
    }
  } else {
    list = std::move(merged);
  }

  // 3. Render.
  const int lu = last_user_index(list);
  std::string out = opt.add_bos ? kBos : "";
  for (int i = 0; i < int(list.size()); ++i) {
    const Msg& m = list[size_t(i)];
    if (m.role == "system") {
      out += m.content;
    } else if (m.role == "user" || m.role == "developer") {
      out += kUser;
      out += m.content;
    } else if (m.role == "latest_reminder") {
      out += kReminder;
      out += m.content;
    } else {  // assistant
      if (opt.thinking && (!opt.drop_thinking || i > lu)) out += m.reasoning + kThinkEnd;
      out += m.content;
      if (!m.wo_eos) out += kEos;
    }
    // Transition after a user/developer turn that ends the list or precedes an assistant or
    // reminder turn.
    const bool last = i + 1 == int(list.size());
    if (!last && list[size_t(i) + 1].role != "assistant" && list[size_t(i) + 1].role != "latest_reminder") continue;
    if (!is_user_like(m.role)) continue;
    if (last && !opt.add_generation_prompt) continue;
    out += kAssistant;
    out += opt.thinking && (!opt.drop_thinking || i >= lu) ? kThinkStart : kThinkEnd;
  }
  return out;
}

}  // namespace dsv4
