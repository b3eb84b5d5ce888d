#include "evals/multi_rank.h"

#include <cstring>

#include "reference/errors.h"

namespace dsv4::evals {

namespace {

// A call sent from the leader to the followers as floats (Comm::broadcast moves floats):
// small integers (< 2^24: operations, lengths, token ids) one float each, 64-bit values
// (seeds, doubles' bits) as four 16-bit pieces, strings one byte a float.
constexpr int64_t kExactInt = int64_t(1) << 24;
constexpr int kPieceBits = 16;
constexpr int kPieces = 64 / kPieceBits;

enum class Op { finish = 0, generate, loglik, score_candidates, trace };

class Message {
 public:
  void small(int64_t v) {
    require(v >= 0 && v < kExactInt,
            "multi-rank eval: value " + std::to_string(v) + " does not fit the message");
    f_.push_back(float(v));
  }
  void u64(uint64_t v) {
    for (int i = 0; i < kPieces; ++i) f_.push_back(float((v >> (kPieceBits * i)) & 0xffff));
  }
  void real(double v) {
    uint64_t bits = 0;
    std::memcpy(&bits, &v, sizeof bits);
    u64(bits);
  }
  void ids(const std::vector<int32_t>& v) {
    small(int64_t(v.size()));
    for (int32_t t : v) small(t);
  }
  void text(const std::string& s) {
    small(int64_t(s.size()));
    for (unsigned char ch : s) f_.push_back(float(ch));
  }
  std::vector<float>& floats() { return f_; }

 private:
  std::vector<float> f_;
};

class Reader {
 public:
  explicit Reader(const std::vector<float>& f) : f_(f) {}
  int64_t small() { return int64_t(next()); }
  uint64_t u64() {
    uint64_t v = 0;
    for (int i = 0; i < kPieces; ++i) v |= uint64_t(next()) << (kPieceBits * i);
    return v;
  }
  double real() {
    const uint64_t bits = u64();
    double v = 0;
    std::memcpy(&v, &bits, sizeof v);
    return v;
  }
  std::vector<int32_t> ids() {
    std::vector<int32_t> v(static_cast<size_t>(small()));
    for (auto& t : v) t = int32_t(small());
    return v;
  }
  std::string text() {
    std::string s(static_cast<size_t>(small()), '\0');
    for (auto& ch : s) ch = char(int(next()));
    return s;
  }

 private:
  float next() {
    require(at_ < f_.size(), "multi-rank eval: a truncated message");
    return f_[at_++];
  }
  const std::vector<float>& f_;
  size_t at_ = 0;
};

// Rank 0 sends its message (length first); the others receive it.
std::vector<float> broadcast(comm::Comm& world, std::vector<float> m) {
  float n = float(m.size());
  require(int64_t(m.size()) < kExactInt,
          "multi-rank eval: a message of " + std::to_string(m.size()) + " values is too long");
  world.broadcast(&n, 1, 0);
  m.resize(size_t(n));
  world.broadcast(m.data(), int64_t(m.size()), 0);
  return m;
}

}  // namespace

LeaderModel::~LeaderModel() {
  if (!finished_) finish();
}

void LeaderModel::finish() {
  if (finished_) return;
  finished_ = true;
  Message m;
  m.small(int64_t(Op::finish));
  broadcast(world_, m.floats());
}

Completion LeaderModel::generate(const std::vector<int32_t>& prompt, const SamplingParams& p) {
  Message m;
  m.small(int64_t(Op::generate));
  m.ids(prompt);
  m.small(p.max_tokens);
  m.real(p.temperature);
  m.real(p.top_p);
  m.u64(p.seed);
  m.small(int64_t(p.stop.size()));
  for (const auto& s : p.stop) m.text(s);
  broadcast(world_, m.floats());
  return m_.generate(prompt, p);
}

Loglik LeaderModel::loglik(const std::vector<int32_t>& context,
                           const std::vector<int32_t>& continuation) {
  Message m;
  m.small(int64_t(Op::loglik));
  m.ids(context);
  m.ids(continuation);
  broadcast(world_, m.floats());
  return m_.loglik(context, continuation);
}

CandidateScores LeaderModel::score_candidates(const std::vector<int32_t>& prompt,
                                              const std::vector<int32_t>& candidates) {
  Message m;
  m.small(int64_t(Op::score_candidates));
  m.ids(prompt);
  m.ids(candidates);
  broadcast(world_, m.floats());
  return m_.score_candidates(prompt, candidates);
}

PromptTrace LeaderModel::trace(const std::vector<int32_t>& prompt, TracePath path) {
  Message m;
  m.small(int64_t(Op::trace));
  m.ids(prompt);
  m.small(int64_t(path));
  broadcast(world_, m.floats());
  return m_.trace(prompt, path);
}

void follow(EngineModel& model, comm::Comm& world) {
  require(world.rank() != 0, "follow: rank 0 leads");
  for (;;) {
    const std::vector<float> msg = broadcast(world, {});
    Reader r(msg);
    switch (Op(r.small())) {
      case Op::finish:
        return;
      case Op::generate: {
        const auto prompt = r.ids();
        SamplingParams p;
        p.max_tokens = r.small();
        p.temperature = r.real();
        p.top_p = r.real();
        p.seed = r.u64();
        p.stop.resize(size_t(r.small()));
        for (auto& s : p.stop) s = r.text();
        (void)model.generate(prompt, p);
        break;
      }
      case Op::loglik: {
        const auto context = r.ids();
        const auto continuation = r.ids();
        (void)model.loglik(context, continuation);
        break;
      }
      case Op::score_candidates: {
        const auto prompt = r.ids();
        const auto candidates = r.ids();
        (void)model.score_candidates(prompt, candidates);
        break;
      }
      case Op::trace: {
        const auto prompt = r.ids();
        (void)model.trace(prompt, TracePath(r.small()));
        break;
      }
      default:
        throw std::runtime_error("multi-rank eval: unknown operation from the leader");
    }
  }
}

}  // namespace dsv4::evals
