#include "comm/timing_comm.h"

#include <cstdlib>
#include <numeric>

namespace dsv4::comm {

int64_t CommStats::calls() const {
  int64_t n = 0;
  for (const auto& [name, op] : ops) n += op.calls;
  return n;
}
double CommStats::seconds() const {
  double s = 0;
  for (const auto& [name, op] : ops) s += op.seconds;
  return s;
}
int64_t CommStats::elements() const {
  int64_t n = 0;
  for (const auto& [name, op] : ops) n += op.elements;
  return n;
}

TimingComm::TimingComm(std::unique_ptr<Comm> inner, std::shared_ptr<CommStats> stats)
    : inner_(std::move(inner)), stats_(stats ? std::move(stats) : std::make_shared<CommStats>()) {}

template <class F>
void TimingComm::timed(const char* name, int64_t elements, F&& f) {
  const auto t0 = std::chrono::steady_clock::now();
  f();
  CommStats::Op& op = stats_->ops[name];
  op.calls += 1;
  op.elements += elements;
  op.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

void TimingComm::barrier() {
  timed("barrier", 0, [&] { inner_->barrier(); });
}
void TimingComm::all_reduce_sum(float* data, int64_t n) {
  timed("all_reduce_sum", n, [&] { inner_->all_reduce_sum(data, n); });
}
void TimingComm::all_gather(const float* in, int64_t n, float* out) {
  timed("all_gather", n, [&] { inner_->all_gather(in, n, out); });
}
std::vector<int64_t> TimingComm::exchange_counts(const std::vector<int64_t>& send_counts) {
  std::vector<int64_t> r;
  timed("exchange_counts", int64_t(send_counts.size()), [&] { r = inner_->exchange_counts(send_counts); });
  return r;
}
void TimingComm::all_to_all_v(const float* send, const std::vector<int64_t>& send_counts, float* recv,
                              const std::vector<int64_t>& recv_counts) {
  const int64_t sent = std::accumulate(send_counts.begin(), send_counts.end(), int64_t(0));
  timed("all_to_all_v", sent, [&] { inner_->all_to_all_v(send, send_counts, recv, recv_counts); });
}
void TimingComm::broadcast(float* data, int64_t n, int root) {
  timed("broadcast", rank() == root ? n : 0, [&] { inner_->broadcast(data, n, root); });
}
void TimingComm::abort(const std::string& message, int code) {
  inner_->abort(message, code);
  std::abort();  // inner_->abort never returns; this keeps the [[noreturn]] promise visibly
}
std::unique_ptr<Comm> TimingComm::split(int color, int key) {
  return std::make_unique<TimingComm>(inner_->split(color, key), stats_);
}

}  // namespace dsv4::comm
