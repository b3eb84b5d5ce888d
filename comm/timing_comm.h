// A Comm that times another: every collective is passed on unchanged and counted (calls,
// elements moved by this rank, wall seconds spent inside the call). Communicators made by
// split() are timed too and add to the same counters, so wrapping the world communicator
// before the sharded backend splits it into TP and EP groups times every collective of a
// run. What `dsv4 bench --model DIR --tp T --ep E` reports as communication time.
//
// Seconds are wall time inside the call on this rank: they include waiting for slower ranks
// (load imbalance shows up here), which is what a rank loses to communication.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "comm/comm.h"

namespace dsv4::comm {

struct CommStats {
  struct Op {
    int64_t calls = 0;
    int64_t elements = 0;  // floats (or counts) this rank sent
    double seconds = 0.0;
  };
  std::map<std::string, Op> ops;  // by collective name: all_reduce_sum, all_to_all_v, ...
  int64_t calls() const;
  double seconds() const;
  int64_t elements() const;
};

class TimingComm final : public Comm {
 public:
  // `inner` is owned; `stats` is shared with every communicator split() makes.
  explicit TimingComm(std::unique_ptr<Comm> inner, std::shared_ptr<CommStats> stats = nullptr);
  const CommStats& stats() const { return *stats_; }
  std::shared_ptr<CommStats> shared_stats() const { return stats_; }  // for another TimingComm to add to
  Comm& inner() { return *inner_; }
  void reset() { *stats_ = CommStats{}; }

  int rank() const override { return inner_->rank(); }
  int size() const override { return inner_->size(); }
  std::string transport() const override { return inner_->transport(); }
  void barrier() override;
  void all_reduce_sum(float* data, int64_t n) override;
  void all_gather(const float* in, int64_t n, float* out) override;
  std::vector<int64_t> exchange_counts(const std::vector<int64_t>& send_counts) override;
  void all_to_all_v(const float* send, const std::vector<int64_t>& send_counts, float* recv,
                    const std::vector<int64_t>& recv_counts) override;
  void broadcast(float* data, int64_t n, int root) override;
  [[noreturn]] void abort(const std::string& message, int code) override;
  std::unique_ptr<Comm> split(int color, int key) override;

 private:
  template <class F>
  void timed(const char* name, int64_t elements, F&& f);
  std::unique_ptr<Comm> inner_;
  std::shared_ptr<CommStats> stats_;
};

}  // namespace dsv4::comm
