#include "evals/http_transport.h"

#include <curl/curl.h>
#include <fmt/core.h>

#include <algorithm>
#include <boost/json.hpp>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "reference/errors.h"

namespace dsv4::evals {

namespace {

namespace json = boost::json;

constexpr size_t kMaxMessageBytes = 300;  // server bodies quoted in errors are cut here

void global_init_once() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

bool retryable_status(long s) {
  return s == 429 || (s >= 500 && s <= 599);
}

bool retryable_curl(CURLcode c) {
  switch (c) {
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
      return true;
    default:
      return false;
  }
}

// Replaces every occurrence of `secret` in s (a server that echoes the key must not leak it).
std::string redact(std::string s, const std::string& secret) {
  if (secret.empty()) return s;
  for (size_t at = s.find(secret); at != std::string::npos; at = s.find(secret, at))
    s.replace(at, secret.size(), "[api key]");
  return s;
}

// What one attempt produced.
struct Attempt {
  CURLcode code = CURLE_OK;
  long status = 0;
  std::string body;
  double retry_after_s = -1;  // from a Retry-After header; < 0: none
  bool delivered = false;     // an SSE event reached the caller
  std::string curl_error;
};

// Receives the response: the body, or (2xx with an SSE callback) server-sent events.
struct Receiver {
  CURL* curl = nullptr;
  Attempt* a = nullptr;
  const std::function<void(std::string_view)>* on_event = nullptr;
  std::string line_buf, event_data;

  bool streaming() {
    if (!on_event || !*on_event) return false;
    if (a->status == 0) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &a->status);
    return a->status >= 200 && a->status < 300;
  }
  // SSE framing: "data: x" lines accumulate into one event, a blank line ends it; other
  // fields (event:, id:, comments) are ignored.
  void feed(std::string_view chunk) {
    line_buf.append(chunk);
    size_t start = 0;
    for (size_t nl; (nl = line_buf.find('\n', start)) != std::string::npos; start = nl + 1) {
      std::string_view line(line_buf.data() + start, nl - start);
      if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
      if (line.empty()) {
        if (!event_data.empty()) {
          a->delivered = true;
          (*on_event)(event_data);
          event_data.clear();
        }
      } else if (line.substr(0, 5) == "data:") {
        std::string_view d = line.substr(5);
        if (!d.empty() && d.front() == ' ') d.remove_prefix(1);
        if (!event_data.empty()) event_data += '\n';
        event_data.append(d);
      }
    }
    line_buf.erase(0, start);
  }
  void finish() {
    if (streaming() && !event_data.empty()) {
      a->delivered = true;
      (*on_event)(event_data);
    }
  }
};

size_t on_write(char* p, size_t size, size_t n, void* user) {
  auto* r = static_cast<Receiver*>(user);
  const size_t bytes = size * n;
  try {
    if (r->streaming())
      r->feed(std::string_view(p, bytes));
    else
      r->a->body.append(p, bytes);
  } catch (...) {
    return 0;  // the callback threw: abort the transfer (CURLE_WRITE_ERROR)
  }
  return bytes;
}

size_t on_header(char* p, size_t size, size_t n, void* user) {
  auto* a = static_cast<Attempt*>(user);
  const size_t bytes = size * n;
  std::string h(p, bytes);
  std::string lower = h;
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return char(std::tolower(c)); });
  if (lower.rfind("retry-after:", 0) == 0) {
    char* end = nullptr;
    const double v = std::strtod(h.c_str() + 12, &end);
    if (end != h.c_str() + 12 && v >= 0) a->retry_after_s = v;
  }
  return bytes;
}

}  // namespace

struct HttpTransport::Impl {
  HttpOptions opt;
  std::string base;  // normalised
  std::string key;   // never logged
  std::mutex mu;
  std::condition_variable cv;
  int in_flight = 0;

  // One attempt of one request. The easy handle is per attempt (no shared state).
  Attempt perform(const char* method, const std::string& url, const std::string* body,
                  const std::function<void(std::string_view)>* on_event) {
    Attempt a;
    CURL* c = curl_easy_init();
    if (!c) throw HttpError(std::string(method) + " " + url + ": curl_easy_init failed", 0, false);
    char err[CURL_ERROR_SIZE] = {0};
    struct curl_slist* headers = nullptr;
    headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Accept: application/json, text/event-stream");
    std::string auth;
    if (!key.empty()) {
      auth = "Authorization: Bearer " + key;
      headers = curl_slist_append(headers, auth.c_str());
    }
    Receiver r;
    r.curl = c;
    r.a = &a;
    r.on_event = on_event;
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, long(opt.connect_timeout_s * 1000));
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, long(opt.timeout_s * 1000));
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &r);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &a);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, err);
    if (body) {
      curl_easy_setopt(c, CURLOPT_POST, 1L);
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, body->data());
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body->size()));
    }
    a.code = curl_easy_perform(c);
    if (a.code == CURLE_OK) r.finish();
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &a.status);
    a.curl_error = err[0] ? err : curl_easy_strerror(a.code);
    curl_slist_free_all(headers);
    curl_easy_cleanup(c);
    return a;
  }

  std::string request(const char* method, const std::string& path, const std::string* body,
                      const std::function<void(std::string_view)>& on_event) {
    const std::string url = base + path;
    {  // the concurrency limit
      std::unique_lock<std::mutex> lock(mu);
      cv.wait(lock, [&] { return in_flight < opt.concurrency; });
      ++in_flight;
    }
    struct Release {
      Impl* i;
      ~Release() {
        {
          std::lock_guard<std::mutex> lock(i->mu);
          --i->in_flight;
        }
        i->cv.notify_one();
      }
    } release{this};
    const int attempts = 1 + opt.max_retries;
    for (int k = 0;; ++k) {
      Attempt a = perform(method, url, body, on_event ? &on_event : nullptr);
      const bool ok = a.code == CURLE_OK && a.status >= 200 && a.status < 300;
      if (ok) return std::move(a.body);
      const bool transport = a.code != CURLE_OK;
      const bool retryable =
          !a.delivered && (transport ? retryable_curl(a.code) : retryable_status(a.status));
      if (!retryable || k + 1 >= attempts) {
        const std::string tries =
            fmt::format(" (after {} attempt{})", k + 1, k + 1 == 1 ? "" : "s");
        std::string what;
        if (transport)
          what = fmt::format(
              "{} {}: {}{}{}", method, url,
              a.code == CURLE_OPERATION_TIMEDOUT ? "timed out: " : "connection failed: ",
              a.curl_error, tries);
        else
          what = fmt::format("{} {}: HTTP {}: {}{}", method, url, a.status, server_message(a.body),
                             tries);
        throw HttpError(redact(what, key), transport ? 0 : a.status, retryable);
      }
      double delay = std::min(opt.backoff_max_s, opt.backoff_s * std::ldexp(1.0, k));
      if (a.retry_after_s >= 0) delay = std::min(opt.backoff_max_s, a.retry_after_s);
      std::this_thread::sleep_for(std::chrono::duration<double>(delay));
    }
  }
};

HttpTransport::HttpTransport(const HttpOptions& o) : impl_(std::make_unique<Impl>()) {
  global_init_once();
  Impl& i = *impl_;
  i.opt = o;
  std::string b = o.base_url;
  if (b.rfind("http://", 0) != 0 && b.rfind("https://", 0) != 0)
    throw InputError("--endpoint: expected an http:// or https:// URL, found '" + b + "'");
  while (!b.empty() && b.back() == '/') b.pop_back();
  if (b.size() >= 3 && b.compare(b.size() - 3, 3, "/v1") == 0) b.resize(b.size() - 3);
  i.base = b;
  if (o.concurrency < 1)
    throw InputError("--concurrency must be >= 1, found " + std::to_string(o.concurrency));
  if (o.max_retries < 0)
    throw InputError("--retries must be >= 0, found " + std::to_string(o.max_retries));
  if (!(o.timeout_s > 0) || !(o.connect_timeout_s > 0))
    throw InputError("--timeout must be positive");
  if (!(o.backoff_s >= 0) || !(o.backoff_max_s >= 0)) throw InputError("backoff must be >= 0");
  if (!o.api_key_env.empty())
    if (const char* k = std::getenv(o.api_key_env.c_str())) i.key = k;
}

HttpTransport::~HttpTransport() = default;

const std::string& HttpTransport::base_url() const {
  return impl_->base;
}

bool HttpTransport::has_api_key() const {
  return !impl_->key.empty();
}

std::string HttpTransport::post_json(const std::string& path, const std::string& body,
                                     const std::function<void(std::string_view)>& on_event) {
  return impl_->request("POST", path, &body, on_event);
}

std::string HttpTransport::get(const std::string& path) {
  return impl_->request("GET", path, nullptr, nullptr);
}

std::string HttpTransport::server_message(const std::string& body) {
  boost::system::error_code ec;
  const json::value v = json::parse(body, ec);
  if (!ec && v.is_object()) {
    const json::object& o = v.as_object();
    if (const json::value* e = o.if_contains("error")) {
      if (e->is_string()) return std::string(e->as_string());
      if (e->is_object())
        if (const json::value* m = e->as_object().if_contains("message"); m && m->is_string())
          return std::string(m->as_string());
    }
    for (const char* k : {"message", "detail"})
      if (const json::value* m = o.if_contains(k); m && m->is_string())
        return std::string(m->as_string());
  }
  if (body.empty()) return "(empty body)";
  return body.size() > kMaxMessageBytes ? body.substr(0, kMaxMessageBytes) + "..." : body;
}

}  // namespace dsv4::evals
