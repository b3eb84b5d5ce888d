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

// "engram_facts" (optional): every entry {"key": [a, b], "value": v} with a, b key ids, v a
// value id, and no key pair twice.
std::vector<ProbeFactIds> read_facts(const json::object& o, const ProbeTokens& p, const std::string& where) {
  const json::value* v = o.if_contains("engram_facts");
  if (!v) return {};
  if (!v->is_array()) throw InputError(where + ": \"engram_facts\" must be an array");
  const std::set<int32_t> keys(p.keys.begin(), p.keys.end()), values(p.values.begin(), p.values.end());
  auto id_in = [](const json::value& x, const std::set<int32_t>& set) {
    return x.is_int64() && x.as_int64() >= 0 && x.as_int64() <= INT32_MAX && set.count(int32_t(x.as_int64()));
  };
  std::vector<ProbeFactIds> facts;
  std::set<std::pair<int32_t, int32_t>> pairs;
  for (const json::value& e : v->as_array()) {
    const json::object* f = e.if_object();
    const json::value* key = f ? f->if_contains("key") : nullptr;
    const json::value* val = f ? f->if_contains("value") : nullptr;
    if (!key || !val || !key->is_array() || key->as_array().size() != 2 || !id_in(key->as_array()[0], keys) ||
        !id_in(key->as_array()[1], keys) || !id_in(*val, values))
      throw InputError(where + ": engram_facts holds an entry that is not {\"key\": [two key ids], \"value\": a "
                       "value id}: " + json::serialize(e));
    const ProbeFactIds fact{int32_t(key->as_array()[0].as_int64()), int32_t(key->as_array()[1].as_int64()),
                            int32_t(val->as_int64())};
    if (!pairs.insert({fact.key_a, fact.key_b}).second)
      throw InputError(where + ": engram_facts lists the key pair " + json::serialize(*key) + " twice");
    facts.push_back(fact);
  }
  return facts;
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
  p.engram_facts = read_facts(o, p, path);
  return p;
}

}  // namespace dsv4::evals
