// A scripted HTTP server on a loopback port for the http backend's fault tests: raw sockets,
// one connection at a time, each request answered by the next step of a script (the last
// step repeats):
//   respond(status, body, extra headers)  a complete response, then the connection closes
//   drop()                                read the request, close without a byte of response
//   stall(ms)                             read the request, say nothing for ms, then close
// It records every request's raw text (request line, headers, body).
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace dsv4::evals::test {

struct Step {
  enum Kind { respond, drop, stall } kind = respond;
  int status = 200;
  std::string body;
  std::string headers;  // extra header lines, each ending in \r\n
  int stall_ms = 0;
};

inline Step respond(int status, std::string body, std::string headers = "") {
  return {Step::respond, status, std::move(body), std::move(headers), 0};
}
inline Step drop() {
  return {Step::drop, 0, "", "", 0};
}
inline Step stall(int ms) {
  return {Step::stall, 0, "", "", ms};
}

class FakeHttpServer {
 public:
  explicit FakeHttpServer(std::vector<Step> script) : script_(std::move(script)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) throw std::runtime_error("fake server: socket failed");
    const int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd_, 16) != 0)
      throw std::runtime_error("fake server: bind/listen failed");
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { loop(); });
  }
  ~FakeHttpServer() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  int requests() const { return count_; }
  std::vector<std::string> raw_requests() const {
    std::lock_guard<std::mutex> lock(mu_);
    return raw_;
  }

 private:
  void loop() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, kPollMs) <= 0) continue;
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) continue;
      const std::string req = read_request(c);
      const Step& s = script_[std::min<size_t>(size_t(count_), script_.size() - 1)];
      {
        std::lock_guard<std::mutex> lock(mu_);
        raw_.push_back(req);
      }
      ++count_;
      if (s.kind == Step::respond) {
        const std::string r =
            "HTTP/1.1 " + std::to_string(s.status) + " X\r\nContent-Type: " +
            (s.body.rfind("data:", 0) == 0 ? "text/event-stream" : "application/json") +
            "\r\nContent-Length: " + std::to_string(s.body.size()) + "\r\nConnection: close\r\n" +
            s.headers + "\r\n" + s.body;
        write_all(c, r);
      } else if (s.kind == Step::stall) {
        const auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(s.stall_ms);
        while (!stop_ && std::chrono::steady_clock::now() < until)
          std::this_thread::sleep_for(std::chrono::milliseconds(kPollMs));
      }
      ::close(c);
    }
  }
  // The request line and headers, then Content-Length bytes of body.
  static std::string read_request(int c) {
    std::string r;
    char buf[4096];
    size_t need = std::string::npos;
    while (true) {
      const size_t head = r.find("\r\n\r\n");
      if (head != std::string::npos && need == std::string::npos) {
        need = head + 4;
        const size_t cl = lower(r.substr(0, head)).find("content-length:");
        if (cl != std::string::npos) need += size_t(std::atol(r.c_str() + cl + 15));
      }
      if (need != std::string::npos && r.size() >= need) return r;
      const ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n <= 0) return r;
      r.append(buf, size_t(n));
    }
  }
  static std::string lower(std::string s) {
    for (char& ch : s) ch = char(std::tolower(static_cast<unsigned char>(ch)));
    return s;
  }
  static void write_all(int c, const std::string& s) {
    size_t off = 0;
    while (off < s.size()) {
      const ssize_t n = ::send(c, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return;
      off += size_t(n);
    }
  }

  static constexpr int kPollMs = 20;
  std::vector<Step> script_;
  int fd_ = -1, port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> count_{0};
  mutable std::mutex mu_;
  std::vector<std::string> raw_;
  std::thread thread_;
};

}  // namespace dsv4::evals::test
