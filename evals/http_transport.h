// HTTP transport for the http eval backend (libcurl): JSON requests to one server with a
// concurrency limit, timeouts, bounded retries with exponential backoff, and errors that
// name the request, the status and the server's message (never the API key).
//
// Retry policy (one request = up to 1 + max_retries attempts):
//   retried      HTTP 429 and 5xx; connection refused/reset/dropped, empty reply, timeouts
//   not retried  every other status (4xx: the request is wrong; retrying cannot help)
//   delay        before retry r (r = 0, 1, ...): min(backoff_max_s, backoff_s * 2^r), or the
//                server's Retry-After (whole seconds) when it sends one, capped the same way
// Streaming: post_json with an SSE callback parses "data: ..." lines as they arrive; a
// stream that has delivered an event is never retried (its events were consumed).
#pragma once

#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace dsv4::evals {

struct HttpOptions {
  std::string base_url;                        // http://host:port (a trailing /v1 is dropped)
  std::string api_key_env = "OPENAI_API_KEY";  // read at construction; unset/empty: no auth header
  int concurrency = 4;                         // requests in flight at once (>= 1)
  double connect_timeout_s = 10;
  double timeout_s = 600;  // whole request, response included
  int max_retries = 4;
  double backoff_s = 0.5;
  double backoff_max_s = 30;
};

// A failed request: status is the HTTP status, 0 for a transport failure (no response).
class HttpError : public std::runtime_error {
 public:
  HttpError(const std::string& what, long status, bool retryable)
      : std::runtime_error(what), status(status), retryable(retryable) {}
  long status;
  bool retryable;  // the last attempt failed in a retryable way (retries were used up)
};

class HttpTransport {
 public:
  // Throws InputError for a malformed base URL or bad option values.
  explicit HttpTransport(const HttpOptions& o);
  ~HttpTransport();
  HttpTransport(const HttpTransport&) = delete;
  HttpTransport& operator=(const HttpTransport&) = delete;

  // The normalised base URL (scheme://host[:port][/prefix], no trailing / or /v1).
  const std::string& base_url() const;
  bool has_api_key() const;

  // POST body (JSON) to base_url + path; returns the 2xx response body. With on_event, the
  // response is read as server-sent events and each event's data is passed on as it arrives
  // ("[DONE]" included); the returned string is then empty. Throws HttpError.
  std::string post_json(const std::string& path, const std::string& body,
                        const std::function<void(std::string_view)>& on_event = nullptr);
  // GET base_url + path; returns the 2xx body. Throws HttpError.
  std::string get(const std::string& path);

  // The error message a server put in its body: OpenAI's {"error": {"message": ...}} or
  // {"error": "..."} or {"message": ...}/{"detail": ...}; otherwise the body, cut to 300 bytes.
  static std::string server_message(const std::string& body);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace dsv4::evals
