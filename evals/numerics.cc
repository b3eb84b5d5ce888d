#include "evals/numerics.h"

#include <boost/json.hpp>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "reference/errors.h"

namespace dsv4::evals {

namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

constexpr const char* kOfficial = "official";
constexpr const char* kExact = "exact";

// knobs.quant of DIR/probe.json; nullopt without the file, without knobs or without quant.
std::optional<bool> probe_quant(const fs::path& path) {
  if (!fs::exists(path)) return std::nullopt;
  std::ifstream f(path);
  std::stringstream ss;
  ss << f.rdbuf();
  json::value v;
  try {
    v = json::parse(ss.str());
  } catch (const std::exception& e) {
    throw InputError("'" + path.string() + "' is not valid JSON: " + e.what());
  }
  const json::object* o = v.if_object();
  const json::value* knobs = o ? o->if_contains("knobs") : nullptr;
  if (!knobs || !knobs->is_object()) return std::nullopt;
  const json::value* q = knobs->as_object().if_contains("quant");
  if (!q) return std::nullopt;
  if (!q->is_bool())
    throw InputError("'" + path.string() + "': knobs.quant must be true or false, found " +
                     json::serialize(*q));
  return q->as_bool();
}

}  // namespace

NumericsChoice choose_numerics(const std::string& requested, const std::string& model_dir) {
  if (!requested.empty() && requested != kOfficial && requested != kExact)
    throw InputError("--numerics: expected official or exact, found '" + requested + "'");
  const fs::path path = fs::path(model_dir) / "probe.json";
  const std::optional<bool> quant = probe_quant(path);
  if (!quant)
    return requested.empty() ? NumericsChoice{kOfficial, "default"}
                             : NumericsChoice{requested, "--numerics"};
  const std::string wanted = *quant ? kOfficial : kExact;
  const std::string source = std::string("probe.json knobs.quant=") + (*quant ? "true" : "false");
  if (requested.empty()) return {wanted, source};
  if (requested != wanted)
    throw InputError("--numerics " + requested + " contradicts '" + path.string() +
                     "': knobs.quant=" + (*quant ? "true" : "false") + " (" +
                     (*quant ? "quantized release encodings" : "F32 weights") +
                     ") must run with --numerics " + wanted +
                     "; leave --numerics out to follow "
                     "the probe");
  return {requested, "--numerics (agrees with " + source + ")"};
}

}  // namespace dsv4::evals
