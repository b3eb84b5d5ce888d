#include "evals/recall/probe_tokens.h"

#include <boost/json.hpp>
#include <fstream>
#include <set>
#include <sstream>

#include "reference/errors.h"

namespace dsv4::evals {

namespace json = boost::json;

namespace {

std::vector<int32_t> read_ids(const json::object& tokens, const char* field,
                              const std::string& where, int64_t vocab_size) {
  const json::value* v = tokens.if_contains(field);
  if (!v || !v->is_array() || v->as_array().empty())
    throw InputError(where + ": tokens." + field + " must be a non-empty array");
  std::vector<int32_t> ids;
  for (const json::value& e : v->as_array()) {
    const json::value* id = e.is_object() ? e.as_object().if_contains("id") : &e;
    if (!id || !id->is_int64() || id->as_int64() < 0 || id->as_int64() > INT32_MAX ||
        (vocab_size > 0 && id->as_int64() >= vocab_size))
      throw InputError(where + ": tokens." + field + " holds an entry that is not a token id" +
                       (vocab_size > 0 ? " in [0, " + std::to_string(vocab_size) + ")" : "") +
                       ": " + json::serialize(e));
    ids.push_back(int32_t(id->as_int64()));
  }
  return ids;
}

}  // namespace

ProbeTokens read_probe_tokens(const std::string& path, int64_t vocab_size) {
  std::ifstream f(path);
  if (!f) throw InputError("cannot read '" + path + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  json::value root;
  try {
    root = json::parse(ss.str());
  } catch (const std::exception& e) {
    throw InputError(path + ": not valid JSON (" + e.what() + ")");
  }
  if (!root.is_object()) throw InputError(path + ": expected a JSON object");
  const json::object& o = root.as_object();
  auto str_field = [&](const char* k) -> std::string {
    const json::value* v = o.if_contains(k);
    return v && v->is_string() ? std::string(v->as_string()) : std::string();
  };
  if (str_field("kind") != "dsv4.probe")
    throw InputError(path + ": \"kind\" must be \"dsv4.probe\"");
  const json::value* ver = o.if_contains("version");
  if (!ver || !ver->is_int64() || ver->as_int64() != 1)
    throw InputError(path + ": \"version\" must be 1 (this reader knows version 1)");
  if (str_field("task") != "recall")
    throw InputError(path + ": \"task\" must be \"recall\", found '" + str_field("task") + "'");
  const json::value* tokens = o.if_contains("tokens");
  if (!tokens || !tokens->is_object()) throw InputError(path + ": \"tokens\" must be an object");
  ProbeTokens p;
  p.path = path;
  p.retrieval = str_field("retrieval");
  const json::value* knobs = o.if_contains("knobs");
  p.knobs_json = knobs ? json::serialize(*knobs) : "{}";
  p.filler = read_ids(tokens->as_object(), "filler", path, vocab_size);
  p.keys = read_ids(tokens->as_object(), "key", path, vocab_size);
  p.values = read_ids(tokens->as_object(), "value", path, vocab_size);
  std::set<int32_t> seen;
  for (const auto* set : {&p.filler, &p.keys, &p.values})
    for (int32_t id : *set)
      if (!seen.insert(id).second)
        throw InputError(path + ": token id " + std::to_string(id) +
                         " appears twice (filler, key and value sets must be disjoint)");
  return p;
}

}  // namespace dsv4::evals
