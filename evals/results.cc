#include "evals/results.h"

#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "evals/hash.h"
#include "reference/errors.h"

#ifndef DSV4_CONFIGURE_GIT_REV
#define DSV4_CONFIGURE_GIT_REV "unknown"
#endif
#ifndef DSV4_SOURCE_DIR
#define DSV4_SOURCE_DIR ""
#endif

namespace dsv4::evals {

namespace json = boost::json;
namespace fs = std::filesystem;

namespace {

constexpr int64_t kFingerprintSpan = 1 << 20;  // bytes hashed at each end of a file

json::object geometry_json(const Geometry& g) {
  return {{"needle_pos", g.needle_pos},
          {"needle_len", g.needle_len},
          {"value_pos", g.value_pos},
          {"mod4", g.mod4},
          {"mod128", g.mod128},
          {"straddle4", g.straddle4},
          {"straddle128", g.straddle128},
          {"in_window", g.in_window},
          {"distance_from_end", g.distance_from_end}};
}

// Field readers that throw InputError naming the field.
const json::value& field(const json::object& o, const char* k) {
  const json::value* v = o.if_contains(k);
  if (!v) throw InputError(std::string("missing field \"") + k + "\"");
  return *v;
}
int64_t int_field(const json::object& o, const char* k) {
  const json::value& v = field(o, k);
  if (!v.is_int64()) throw InputError(std::string("field \"") + k + "\" is not an integer");
  return v.as_int64();
}
double num_field(const json::object& o, const char* k) {
  const json::value& v = field(o, k);
  if (v.is_double()) return v.as_double();
  if (v.is_int64()) return double(v.as_int64());
  throw InputError(std::string("field \"") + k + "\" is not a number");
}
std::string str_field(const json::object& o, const char* k) {
  const json::value& v = field(o, k);
  if (!v.is_string()) throw InputError(std::string("field \"") + k + "\" is not a string");
  return std::string(v.as_string());
}
bool bool_field(const json::object& o, const char* k) {
  const json::value& v = field(o, k);
  if (!v.is_bool()) throw InputError(std::string("field \"") + k + "\" is not a boolean");
  return v.as_bool();
}
uint64_t hex_field(const json::object& o, const char* k) {
  const std::string s = str_field(o, k);
  size_t used = 0;
  uint64_t v = 0;
  try {
    v = std::stoull(s, &used, 16);
  } catch (const std::exception&) {
    used = 0;
  }
  if (s.size() != 16 || used != 16)
    throw InputError(std::string("field \"") + k + "\" is not 16 hex digits");
  return v;
}

std::string run_capture(const std::string& cmd) {
  std::FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return "";
  std::string out;
  char buf[256];
  while (size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  if (::pclose(p) != 0) return "";
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

// JSON text with readable numbers: doubles in their shortest round-trip form ("0.9", not
// Boost's "9E-1"; non-finite ones as null). indent < 0: one line; else pretty-printed with
// arrays of scalars kept on one line.
void write_json(std::ostream& os, const json::value& v, int indent) {
  const bool compact = indent < 0;
  const std::string pad(size_t(compact ? 0 : indent + 2), ' '),
      end(size_t(compact ? 0 : indent), ' ');
  const char* nl = compact ? "" : "\n";
  const int inner = compact ? -1 : indent + 2;
  if (v.is_double()) {
    const double d = v.as_double();
    os << (std::isfinite(d) ? fmt::format("{}", d) : "null");
  } else if (v.is_object() && !v.as_object().empty()) {
    os << "{" << nl;
    bool first = true;
    for (const auto& kv : v.as_object()) {
      os << (first     ? ""
             : compact ? ","
                       : ",\n")
         << pad << json::serialize(json::string(kv.key())) << (compact ? ":" : ": ");
      write_json(os, kv.value(), inner);
      first = false;
    }
    os << nl << end << "}";
  } else if (v.is_array() && !v.as_array().empty()) {
    const auto& a = v.as_array();
    const bool flat = compact || std::none_of(a.begin(), a.end(), [](const json::value& e) {
                        return e.is_object() || e.is_array();
                      });
    os << "[" << (flat ? "" : "\n");
    for (size_t i = 0; i < a.size(); ++i) {
      os << (i ? (flat ? "," : ",\n") : "") << (flat ? "" : pad);
      write_json(os, a[i], flat ? -1 : inner);
    }
    os << (flat ? "" : "\n" + end) << "]";
  } else {
    os << json::serialize(v);
  }
}

}  // namespace

std::string sample_key(const std::string& task, const std::string& version, int64_t length,
                       const std::string& cell, int64_t index) {
  return fmt::format("{}|{}|{}|{}|{}", task, version, length, cell, index);
}

std::string SampleRecord::key() const {
  return sample_key(task, version, length, cell, index);
}

json::object to_json(const SampleRecord& r) {
  json::object o;
  o["task"] = r.task;
  o["version"] = r.version;
  o["length"] = r.length;
  o["cell"] = r.cell;
  if (r.depth >= 0)
    o["depth"] = r.depth;
  else
    o["depth"] = nullptr;
  o["geometry_class"] = r.geometry_class;
  o["geometry"] = geometry_json(r.geometry);
  o["seed"] = r.seed;
  o["index"] = r.index;
  o["item_hash"] = hex64(r.item_hash);
  o["prediction"] = r.prediction;
  o["expected"] = r.expected;
  o["score"] = r.score;
  o["floors"] = json::object{
      {"chance", r.chance}, {"copy_random", r.copy_random}, {"copy_first", r.copy_first}};
  o["prompt_tokens"] = r.prompt_tokens;
  o["completion_tokens"] = r.completion_tokens;
  o["seconds"] = r.seconds;
  o["prefill_seconds"] = r.prefill_seconds;
  if (r.cached_prompt_tokens) o["cached_prompt_tokens"] = r.cached_prompt_tokens;
  if (r.reasoning_tokens) o["reasoning_tokens"] = r.reasoning_tokens;
  if (!r.metrics.empty()) {
    json::object m;
    for (const auto& [k, v] : r.metrics) m[k] = std::isfinite(v) ? json::value(v) : json::value(nullptr);
    o["metrics"] = std::move(m);
  }
  return o;
}

SampleRecord sample_from_json(const json::value& v) {
  if (!v.is_object()) throw InputError("a sample record must be a JSON object");
  const json::object& o = v.as_object();
  SampleRecord r;
  r.task = str_field(o, "task");
  r.version = str_field(o, "version");
  r.length = int_field(o, "length");
  r.cell = str_field(o, "cell");
  r.depth = field(o, "depth").is_null() ? -1 : num_field(o, "depth");
  r.geometry_class = str_field(o, "geometry_class");
  const json::value& g = field(o, "geometry");
  if (!g.is_object()) throw InputError("field \"geometry\" is not an object");
  const json::object& go = g.as_object();
  r.geometry = {int_field(go, "needle_pos"),       int_field(go, "needle_len"),
                int_field(go, "value_pos"),        int_field(go, "mod4"),
                int_field(go, "mod128"),           bool_field(go, "straddle4"),
                bool_field(go, "straddle128"),     bool_field(go, "in_window"),
                int_field(go, "distance_from_end")};
  const json::value& seed = field(o, "seed");
  if (seed.is_uint64())
    r.seed = seed.as_uint64();
  else if (seed.is_int64() && seed.as_int64() >= 0)
    r.seed = uint64_t(seed.as_int64());
  else
    throw InputError("field \"seed\" is not a non-negative integer");
  r.index = int_field(o, "index");
  r.item_hash = hex_field(o, "item_hash");
  r.prediction = str_field(o, "prediction");
  r.expected = str_field(o, "expected");
  r.score = num_field(o, "score");
  const json::value& fl = field(o, "floors");
  if (!fl.is_object()) throw InputError("field \"floors\" is not an object");
  r.chance = num_field(fl.as_object(), "chance");
  r.copy_random = num_field(fl.as_object(), "copy_random");
  r.copy_first = num_field(fl.as_object(), "copy_first");
  r.prompt_tokens = int_field(o, "prompt_tokens");
  r.completion_tokens = int_field(o, "completion_tokens");
  r.seconds = num_field(o, "seconds");
  r.prefill_seconds = num_field(o, "prefill_seconds");
  if (o.contains("cached_prompt_tokens")) r.cached_prompt_tokens = int_field(o, "cached_prompt_tokens");
  if (o.contains("reasoning_tokens")) r.reasoning_tokens = int_field(o, "reasoning_tokens");
  if (const json::value* m = o.if_contains("metrics")) {
    if (!m->is_object()) throw InputError("field \"metrics\" is not an object");
    for (const auto& [k, v] : m->as_object()) {
      if (!v.is_null() && !v.is_number())
        throw InputError("metric \"" + std::string(k) + "\" is neither a number nor null");
      r.metrics[std::string(k)] = v.is_null() ? std::nan("") : v.to_number<double>();
    }
  }
  return r;
}

std::vector<SampleRecord> read_samples_for_resume(const std::string& path) {
  std::vector<SampleRecord> out;
  if (!fs::exists(path)) return out;
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError("cannot read '" + path + "'");
  std::stringstream ss;
  ss << f.rdbuf();
  const std::string text = ss.str();
  size_t at = 0, good_end = 0;
  int64_t line_no = 0;
  while (at < text.size()) {
    ++line_no;
    const size_t nl = text.find('\n', at);
    const bool complete = nl != std::string::npos;
    const std::string line = text.substr(at, complete ? nl - at : std::string::npos);
    const size_t next = complete ? nl + 1 : text.size();
    const bool last = next >= text.size();
    try {
      if (!complete) throw InputError("no newline");
      out.push_back(sample_from_json(json::parse(line)));
      good_end = next;
    } catch (const std::exception& e) {
      if (!last)
        throw InputError(
            fmt::format("{}: line {} is not a sample record ({}); remove the run or use --force",
                        path, line_no, e.what()));
      break;  // a cut-short last write: drop it below
    }
    at = next;
  }
  if (good_end < text.size()) fs::resize_file(path, good_end);
  return out;
}

SampleWriter::SampleWriter(const std::string& path) : path_(path) {
  f_ = std::fopen(path.c_str(), "ab");
  if (!f_) throw InputError("cannot open '" + path + "' for appending");
}

SampleWriter::~SampleWriter() {
  if (f_) std::fclose(f_);
}

void SampleWriter::append(const SampleRecord& r) {
  const std::string line = compact_json(to_json(r)) + "\n";
  if (std::fwrite(line.data(), 1, line.size(), f_) != line.size() || std::fflush(f_) != 0)
    throw std::runtime_error("cannot append to '" + path_ + "'");
}

void write_file_atomic(const std::string& path, const std::string& text) {
  const std::string tmp = fmt::format("{}.tmp-{}", path, ::getpid());
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) throw InputError("cannot write '" + tmp + "'");
    f << text;
    f.flush();
    if (!f) {
      std::error_code ec;
      fs::remove(tmp, ec);
      throw InputError("cannot write '" + tmp + "'");
    }
  }
  fs::rename(tmp, path);
}

std::string pretty_json(const json::value& v) {
  std::ostringstream os;
  write_json(os, v, 0);
  os << "\n";
  return os.str();
}

std::string compact_json(const json::value& v) {
  std::ostringstream os;
  write_json(os, v, -1);
  return os.str();
}

json::object git_info() {
  const std::string src = DSV4_SOURCE_DIR;
  if (!src.empty() && fs::is_directory(src)) {
    const std::string rev = run_capture("git -C '" + src + "' rev-parse HEAD 2>/dev/null");
    if (rev.size() == 40) {
      const std::string status =
          run_capture("git -C '" + src + "' status --porcelain --untracked-files=no 2>/dev/null");
      return {{"revision", rev}, {"dirty", !status.empty()}, {"source", "runtime"}};
    }
  }
  const std::string conf = DSV4_CONFIGURE_GIT_REV;
  if (conf != "unknown") return {{"revision", conf}, {"dirty", nullptr}, {"source", "configure"}};
  return {{"revision", "unknown"}, {"dirty", nullptr}, {"source", "unknown"}};
}

json::object machine_info() {
  std::string cpu = "unknown";
  std::ifstream ci("/proc/cpuinfo");
  for (std::string line; std::getline(ci, line);)
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
      cpu = line.substr(line.find(':') + 2);
      break;
    }
  int64_t mem = 0;
  std::ifstream mi("/proc/meminfo");
  for (std::string line; std::getline(mi, line);)
    if (line.rfind("MemTotal:", 0) == 0) {
      mem = std::stoll(line.substr(9)) * 1024;  // the file says kB (KiB)
      break;
    }
  return {{"cpu", cpu},
          {"logical_cores", int64_t(std::thread::hardware_concurrency())},
          {"memory_bytes", mem}};
}

Fingerprint checkpoint_fingerprint(const std::string& dir) {
  std::vector<fs::path> files;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    const bool wanted = name.ends_with(".safetensors") || name.ends_with(".json");
    if (e.is_regular_file() && wanted) files.push_back(e.path());
  }
  std::sort(files.begin(), files.end());
  Hasher h;
  std::vector<char> buf(static_cast<size_t>(kFingerprintSpan));
  for (const auto& p : files) {
    const int64_t size = int64_t(fs::file_size(p));
    h.str(p.filename().string()).i64(size);
    std::ifstream f(p, std::ios::binary);
    if (!f) throw InputError("cannot read '" + p.string() + "'");
    const int64_t head = std::min(size, kFingerprintSpan);
    f.read(buf.data(), head);
    h.bytes(buf.data(), size_t(head));
    if (size > kFingerprintSpan) {
      const int64_t tail = std::min(size - kFingerprintSpan, kFingerprintSpan);
      f.seekg(size - tail);
      f.read(buf.data(), tail);
      h.bytes(buf.data(), size_t(tail));
    }
  }
  return {hex64(h.digest()),
          "hash64(name, size, first 1 MiB, last 1 MiB) of every *.safetensors and *.json file, "
          "sorted by name"};
}

}  // namespace dsv4::evals

namespace dsv4::evals {

std::string valid_utf8(std::string_view s) {
  static const char kReplacement[] = "\xEF\xBF\xBD";  // U+FFFD
  std::string out;
  size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    // Length and the allowed range of the second byte (Unicode Table 3-7).
    size_t n = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b < 0x80)
      n = 1;
    else if (b >= 0xC2 && b <= 0xDF)
      n = 2;
    else if (b == 0xE0)
      n = 3, lo = 0xA0;
    else if (b >= 0xE1 && b <= 0xEC)
      n = 3;
    else if (b == 0xED)
      n = 3, hi = 0x9F;
    else if (b >= 0xEE && b <= 0xEF)
      n = 3;
    else if (b == 0xF0)
      n = 4, lo = 0x90;
    else if (b >= 0xF1 && b <= 0xF3)
      n = 4;
    else if (b == 0xF4)
      n = 4, hi = 0x8F;
    bool ok = n > 0 && i + n <= s.size();
    for (size_t k = 1; ok && k < n; ++k) {
      const auto c = static_cast<unsigned char>(s[i + k]);
      ok = k == 1 ? (c >= lo && c <= hi) : (c >= 0x80 && c <= 0xBF);
    }
    if (ok) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out += kReplacement;
      ++i;
    }
  }
  return out;
}

}  // namespace dsv4::evals
