#include "evals/coding/sandbox.h"

#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "reference/errors.h"

namespace dsv4::evals {

namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

// When we are root the program runs as uid = gid = kSandboxUidBase + (harness pid mod
// kSandboxUidRange): an id no account uses, and one per harness process, because RLIMIT_NPROC
// counts every process of a uid machine-wide (a fork bomb under a shared uid such as 65534
// would starve concurrent runs and any daemon running as nobody).
constexpr uid_t kSandboxUidBase = 1900000000;
constexpr uid_t kSandboxUidRange = 1000000;
constexpr int kPollMillis = 20;                       // how often the harness checks on the run
constexpr int kStatusFd = 3, kOutFd = 4, kErrFd = 5;  // init's descriptors (fixed numbers)
constexpr int kFirstScratchFd = 10;       // init moves its pipes above this before renumbering
constexpr int kExecFailed = 127;          // the child's exit status when setup or exec fails
constexpr int kCgroupCleanupTries = 200;  // x 5 ms: how long to wait for a cgroup to empty
constexpr int kCgroupCleanupMicros = 5000;
constexpr int64_t kMaxScannedFiles = 10000;  // files checked for the file-size classification
constexpr int64_t kMaxStatusBytes = 4096;    // status records read back (a handful of 12 B)

// The world-writable directories of a Debian machine; each is replaced by the sandbox's
// temporary directory inside the run's mount namespace (sandbox.h).
constexpr const char* kSharedWritableDirs[] = {"/tmp", "/var/tmp", "/run/lock", "/dev/shm"};
constexpr int kMaxSharedDirs = int(std::size(kSharedWritableDirs));

// Text in stderr that means an allocation failed (RunClass::memory).
constexpr const char* kMemoryMarkers[] = {"MemoryError", "heap out of memory",
                                          "Cannot allocate memory", "std::bad_alloc",
                                          "Fatal process out of memory"};

// What init and the program report to the harness through the status pipe (one record per
// write(2): smaller than PIPE_BUF, so never interleaved).
enum RecordKind : int32_t { kFlags = 1, kError = 2, kWait = 3 };
enum FlagBits : int32_t {
  kNet = 1 << 0,
  kPidNs = 1 << 1,
  kPrivateTmp = 1 << 2,
  kUnprivileged = 1 << 3,
  kCgroup = 1 << 4,
};
// Setup steps that can fail, for the sandbox_error message.
enum Stage : int32_t { kFork, kStdin, kChdir, kRlimit, kGroups, kSetgid, kSetuid, kPrctl, kExec };
const char* stage_name(int32_t s) {
  switch (s) {
    case kFork:
      return "fork of the program";
    case kStdin:
      return "open /dev/null";
    case kChdir:
      return "chdir to the temporary directory";
    case kRlimit:
      return "setrlimit";
    case kGroups:
      return "setgroups";
    case kSetgid:
      return "setresgid";
    case kSetuid:
      return "setresuid";
    case kPrctl:
      return "prctl";
    case kExec:
      return "exec of the interpreter";
    default:
      return "setup";
  }
}
struct Record {
  int32_t kind = 0, a = 0, b = 0;
};

// Everything the child side needs, prepared before the clone: after it only async-signal-
// safe calls are allowed (the harness may be multithreaded), so no allocation happens there.
struct ChildPlan {
  char* const* argv = nullptr;
  char* const* envp_private = nullptr;  // HOME=/tmp (the temporary directory, bind-mounted)
  char* const* envp_plain = nullptr;    // HOME=<the temporary directory's path>
  const char* dir = nullptr;
  const char* cgroup_procs = nullptr;  // nullptr: no cgroup
  const char* shared_dirs[kMaxSharedDirs] = {};
  int n_shared = 0;
  int status_fd = -1, out_fd = -1, err_fd = -1;
  bool namespaces = false;       // the clone created new PID, network and mount namespaces
  bool drop_privileges = false;  // run as `uid` (we are root)
  uid_t uid = 0;
  rlimit cpu{}, as{}, fsize{}, nofile{}, nproc{};
};

void report(int fd, int32_t kind, int32_t a, int32_t b) {
  const Record r{kind, a, b};
  ssize_t n;
  do n = ::write(fd, &r, sizeof r);
  while (n < 0 && errno == EINTR);
}

// fork without glibc's fork handlers (their locks may be held by other harness threads at
// the moment of the clone); `flags` adds namespaces. Returns as fork does.
pid_t raw_clone(unsigned long flags) {
  return pid_t(::syscall(SYS_clone, flags | SIGCHLD, nullptr, nullptr, nullptr, nullptr));
}

// Reports a failed setup step (with errno) to the harness and ends the program's process.
[[noreturn]] void die(int32_t stage) {
  const int err = errno;
  report(kStatusFd, kError, stage, err);
  ::_exit(kExecFailed);
}

// The program (child of init): descriptors, directory, limits, uid, then exec. Never returns.
[[noreturn]] void exec_program(const ChildPlan& p, int32_t flags) {
  const int nul = ::open("/dev/null", O_RDONLY);
  if (nul < 0 || ::dup2(nul, 0) < 0) die(kStdin);
  if (::dup2(kOutFd, 1) < 0 || ::dup2(kErrFd, 2) < 0) die(kStdin);
  ::syscall(SYS_close_range, kStatusFd + 1, ~0U, 0);  // kStatusFd stays, close-on-exec
  // With a private /tmp the directory is reachable as /tmp only (its own path lies under
  // the covered /tmp): make that the working directory's name, for getcwd().
  if ((flags & kPrivateTmp) && ::chdir("/tmp") != 0) die(kChdir);
  const rlimit core{0, 0};
  if (::setrlimit(RLIMIT_CPU, &p.cpu) != 0 || ::setrlimit(RLIMIT_AS, &p.as) != 0 ||
      ::setrlimit(RLIMIT_FSIZE, &p.fsize) != 0 || ::setrlimit(RLIMIT_NOFILE, &p.nofile) != 0 ||
      ::setrlimit(RLIMIT_NPROC, &p.nproc) != 0 || ::setrlimit(RLIMIT_CORE, &core) != 0)
    die(kRlimit);
  if (p.drop_privileges) {
    // Raw system calls: glibc's setgroups/setres[ug]id apply the change to every thread the
    // harness had at the clone ("setxid" broadcast) and wait for threads that do not exist in
    // this child -- a hang when the harness runs sandboxes from several threads.
    if (::syscall(SYS_setgroups, 0, nullptr) != 0) die(kGroups);
    if (::syscall(SYS_setresgid, p.uid, p.uid, p.uid) != 0) die(kSetgid);
    if (::syscall(SYS_setresuid, p.uid, p.uid, p.uid) != 0) die(kSetuid);
    flags |= kUnprivileged;
  }
  // After the uid change: a credential change clears the parent-death signal.
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 || ::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
    die(kPrctl);
  report(kStatusFd, kFlags, flags, 0);
  ::execve(p.argv[0], p.argv, (flags & kPrivateTmp) ? p.envp_private : p.envp_plain);
  die(kExec);
}

// init: joins the cgroup, sets up the mount namespace, starts the program, reaps every
// process handed to it until the program ends, reports the program's wait status and exits
// (which, as PID 1 of its namespace, kills whatever is left). Never returns.
[[noreturn]] void run_init(const ChildPlan& p) {
  // Renumber the three pipes to 3, 4, 5 (through scratch numbers, so no move overwrites
  // another) and close everything else the harness had open.
  const int s = ::fcntl(p.status_fd, F_DUPFD, kFirstScratchFd);
  const int o = ::fcntl(p.out_fd, F_DUPFD, kFirstScratchFd);
  const int e = ::fcntl(p.err_fd, F_DUPFD, kFirstScratchFd);
  if (s < 0 || o < 0 || e < 0 || ::dup2(s, kStatusFd) < 0 || ::dup2(o, kOutFd) < 0 ||
      ::dup2(e, kErrFd) < 0)
    ::_exit(kExecFailed);  // no status pipe to report on: the harness sees a silent init
  ::fcntl(kStatusFd, F_SETFD, FD_CLOEXEC);
  ::syscall(SYS_close_range, kErrFd + 1, ~0U, 0);
  ::setpgid(0, 0);
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // the harness dies: so does the run
  int32_t flags = 0;
  if (p.cgroup_procs) {
    const int fd = ::open(p.cgroup_procs, O_WRONLY | O_CLOEXEC);
    if (fd >= 0 && ::write(fd, "0", 1) == 1) flags |= kCgroup;  // "0": the writing process
    if (fd >= 0) ::close(fd);
  }
  // The working directory of init and the program. The binds below name it "." (the
  // directory itself), since its path may lie under /tmp, which the first bind covers.
  if (::chdir(p.dir) != 0) die(kChdir);
  if (p.namespaces) {
    flags |= kNet | kPidNs;
    // Private propagation first, so that nothing below leaks into the harness's mounts.
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) == 0) {
      bool all = p.n_shared > 0;
      for (int i = 0; i < p.n_shared; ++i)
        all = ::mount(".", p.shared_dirs[i], nullptr, MS_BIND, nullptr) == 0 && all;
      if (all) flags |= kPrivateTmp;
      // Our own /proc: the harness's processes are not in this PID namespace.
      ::mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr);
    }
  }
  report(kStatusFd, kFlags, flags, 0);
  const pid_t prog = raw_clone(0);
  if (prog == 0) exec_program(p, flags);
  if (prog < 0) die(kFork);
  ::close(kOutFd);
  ::close(kErrFd);
  int st = 0;
  for (;;) {
    int w_st = 0;
    const pid_t w = ::waitpid(-1, &w_st, 0);
    if (w == prog) {
      st = w_st;
      break;
    }
    if (w < 0 && errno != EINTR) break;
  }
  report(kStatusFd, kWait, st, 0);
  ::_exit(0);
}

// A pids cgroup for one run (cgroup v1 "pids" hierarchy, or v2 under our own cgroup), with
// pids.max set; "" when /sys/fs/cgroup is not writable or has no pids controller.
std::string make_pids_cgroup(int64_t max_pids) {
  static std::atomic<int64_t> counter{0};
  std::string base;
  std::error_code ec;
  if (fs::is_directory("/sys/fs/cgroup/pids", ec)) {
    base = "/sys/fs/cgroup/pids";
  } else if (fs::exists("/sys/fs/cgroup/cgroup.controllers", ec)) {
    std::ifstream f("/proc/self/cgroup");
    for (std::string line; std::getline(f, line);)
      if (line.rfind("0::", 0) == 0) base = "/sys/fs/cgroup" + line.substr(3);
  }
  if (base.empty()) return "";
  const std::string dir =
      base + "/dsv4-sandbox-" + std::to_string(::getpid()) + "-" + std::to_string(counter++);
  if (::mkdir(dir.c_str(), 0700) != 0) return "";
  std::ofstream m(dir + "/pids.max");
  m << max_pids;
  m.close();
  if (!m) {
    ::rmdir(dir.c_str());
    return "";
  }
  return dir;
}

// Kills whatever is still in the cgroup and removes it.
void remove_cgroup(const std::string& dir) {
  for (int i = 0; i < kCgroupCleanupTries; ++i) {
    std::ifstream f(dir + "/cgroup.procs");
    for (long pid; f >> pid;) ::kill(pid_t(pid), SIGKILL);
    if (::rmdir(dir.c_str()) == 0 || errno == ENOENT) return;
    ::usleep(kCgroupCleanupMicros);
  }
}

// A NULL-terminated char* array over `v` (which must outlive it).
std::vector<char*> c_array(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (std::string& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// Reads what is available on a non-blocking fd into `buf`; false at end of file.
bool read_some(int fd, std::string& buf, int64_t& budget, bool& over) {
  char chunk[1 << 14];
  for (;;) {
    const ssize_t n = ::read(fd, chunk, sizeof chunk);
    if (n > 0) {
      const int64_t keep = std::min<int64_t>(n, std::max<int64_t>(budget, 0));
      buf.append(chunk, size_t(keep));
      budget -= n;
      if (budget < 0) over = true;
      continue;
    }
    if (n == 0) return false;
    return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
  }
}

void write_program(const std::string& path, const std::string& text) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0) throw std::runtime_error("create " + path + ": " + std::strerror(errno));
  size_t done = 0;
  while (done < text.size()) {
    const ssize_t n = ::write(fd, text.data() + done, text.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fd);
      throw std::runtime_error("write " + path + ": " + std::strerror(errno));
    }
    done += size_t(n);
  }
  ::close(fd);
}

// Some regular file under `dir` is at least `limit` bytes (the file-size limit was hit).
bool file_at_limit(const std::string& dir, int64_t limit) {
  std::error_code ec;
  int64_t seen = 0;
  for (fs::recursive_directory_iterator it(dir, fs::directory_options::skip_permission_denied, ec),
       end;
       !ec && it != end && seen < kMaxScannedFiles; it.increment(ec), ++seen) {
    if (it->is_regular_file(ec) && int64_t(it->file_size(ec)) >= limit && !ec) return true;
  }
  return false;
}

bool names_memory_failure(const std::string& err) {
  for (const char* m : kMemoryMarkers)
    if (err.find(m) != std::string::npos) return true;
  return false;
}

std::string notes_for(const Isolation& iso) {
  std::string n;
  auto add = [&](bool ok, const char* what) {
    if (!ok) n += (n.empty() ? "" : "; ") + std::string(what);
  };
  add(iso.network, "network: not isolated");
  add(iso.pid_namespace, "pid namespace: none (leftover processes killed by process group only)");
  add(iso.private_tmp, "/tmp: shared with the harness (writes outside the temp dir not contained)");
  add(iso.unprivileged, "uid: the harness's own");
  add(iso.pids_cgroup, "pids cgroup: none");
  return n;
}

void validate(const SandboxProgram& p, const SandboxLimits& l) {
  require(!p.argv.empty(), "sandbox: empty argv");
  require(!p.argv[0].empty() && p.argv[0][0] == '/',
          "sandbox: argv[0] '" + p.argv[0] + "' is not an absolute path");
  require(!p.file_name.empty() && p.file_name.find('/') == std::string::npos &&
              p.file_name != "." && p.file_name != "..",
          "sandbox: file name '" + p.file_name + "' must be a plain name");
  require(l.wall_seconds > 0, "sandbox: wall_seconds must be positive");
  require(l.cpu_seconds > 0 && l.memory_bytes > 0 && l.file_bytes > 0 && l.open_files > 0 &&
              l.processes > 0 && l.output_bytes > 0,
          "sandbox: every limit must be positive");
}

// The run's temporary directory with the program in it, handed to the sandbox uid when we
// are root; "" (and `error` set) when that fails.
std::string make_run_dir(const SandboxProgram& program, bool root, uid_t uid, std::string& error) {
  std::error_code ec;
  std::string tmpl = (fs::temp_directory_path(ec) / "dsv4-sandbox-XXXXXX").string();
  if (ec || ::mkdtemp(tmpl.data()) == nullptr) {
    error = "sandbox: cannot create a temporary directory: " + std::string(std::strerror(errno));
    return "";
  }
  try {
    write_program(tmpl + "/" + program.file_name, program.source);
    if (root && (::chown(tmpl.c_str(), uid, uid) != 0 ||
                 ::chown((tmpl + "/" + program.file_name).c_str(), uid, uid) != 0))
      throw std::runtime_error("chown to the sandbox uid: " + std::string(std::strerror(errno)));
  } catch (const std::exception& e) {
    error = std::string("sandbox: ") + e.what();
    fs::remove_all(tmpl, ec);
    return "";
  }
  return tmpl;
}

// Removes the run's directory (and whatever the program left in it) at scope exit.
struct RunDirGuard {
  std::string dir;
  ~RunDirGuard() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

// The ChildPlan and the storage its pointers point into (argv, environments, cgroup path),
// built before the clone; removes the run's cgroup when done.
class PlanStorage {
 public:
  PlanStorage(const SandboxProgram& program, const SandboxLimits& limits, const std::string& dir,
              bool root, uid_t uid)
      : argv_s_(program.argv),
        env_private_{"PATH=/usr/bin:/bin", "HOME=/tmp", "LANG=C.UTF-8"},
        env_plain_{"PATH=/usr/bin:/bin", "HOME=" + dir, "LANG=C.UTF-8"},
        dir_(dir) {
    argv_ = c_array(argv_s_);
    envp_private_ = c_array(env_private_);
    envp_plain_ = c_array(env_plain_);
    cgroup_ = root ? make_pids_cgroup(limits.processes + 1) : "";  // + init
    cgroup_procs_ = cgroup_.empty() ? "" : cgroup_ + "/cgroup.procs";
    plan.argv = argv_.data();
    plan.envp_private = envp_private_.data();
    plan.envp_plain = envp_plain_.data();
    plan.dir = dir_.c_str();
    plan.cgroup_procs = cgroup_.empty() ? nullptr : cgroup_procs_.c_str();
    std::error_code ec;
    for (const char* d : kSharedWritableDirs)
      if (fs::is_directory(d, ec)) plan.shared_dirs[plan.n_shared++] = d;
    plan.drop_privileges = root;
    plan.uid = uid;
    const auto lim = [](int64_t soft, int64_t hard) { return rlimit{rlim_t(soft), rlim_t(hard)}; };
    plan.cpu = lim(limits.cpu_seconds, limits.cpu_seconds + 1);
    plan.as = lim(limits.memory_bytes, limits.memory_bytes);
    plan.fsize = lim(limits.file_bytes, limits.file_bytes);
    plan.nofile = lim(limits.open_files, limits.open_files);
    plan.nproc = lim(limits.processes, limits.processes);
  }
  ~PlanStorage() { remove_cgroup(); }
  PlanStorage(const PlanStorage&) = delete;
  PlanStorage& operator=(const PlanStorage&) = delete;
  // Kills whatever is left in the run's cgroup and removes it (once).
  void remove_cgroup() {
    if (!cgroup_.empty()) dsv4::evals::remove_cgroup(cgroup_);
    cgroup_.clear();
  }
  ChildPlan plan;

 private:
  std::vector<std::string> argv_s_, env_private_, env_plain_;
  std::vector<char*> argv_, envp_private_, envp_plain_;
  std::string dir_, cgroup_, cgroup_procs_;
};

// The three pipes (status records, stdout, stderr), close-on-exec, closed at scope exit.
struct Pipes {
  int status[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
  bool open() {
    return ::pipe2(status, O_CLOEXEC) == 0 && ::pipe2(out, O_CLOEXEC) == 0 &&
           ::pipe2(err, O_CLOEXEC) == 0;
  }
  void close_write_ends() {
    for (int* p : {status, out, err}) close_fd(p[1]);
  }
  ~Pipes() {
    for (int* p : {status, out, err}) close_fd(p[0]), close_fd(p[1]);
  }
  static void close_fd(int& fd) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
};

// What collect() saw.
struct Collected {
  bool timed_out = false, over = false;
  rusage usage{};
  std::string status_bytes;
};

// Reads stdout/stderr (into r.out/r.err) until init ends, the wall clock runs out or the
// output passes its cap; then kills init's process group and init (which, as the PID
// namespace's init, takes every process of the run with it), reaps init with its resource
// usage, and reads the status records.
Collected collect(pid_t init, const Pipes& pipes, const SandboxLimits& limits, Clock::time_point t0,
                  SandboxResult& r) {
  Collected c;
  for (int fd : {pipes.out[0], pipes.err[0], pipes.status[0]})
    ::fcntl(fd, F_SETFL, ::fcntl(fd, F_GETFL) | O_NONBLOCK);
  const auto deadline = t0 + std::chrono::duration_cast<Clock::duration>(
                                 std::chrono::duration<double>(limits.wall_seconds));
  int64_t budget = limits.output_bytes;
  bool out_open = true, err_open = true;
  for (;;) {
    pollfd pf[2];
    int n = 0;
    if (out_open) pf[n++] = {pipes.out[0], POLLIN, 0};
    if (err_open) pf[n++] = {pipes.err[0], POLLIN, 0};
    ::poll(pf, nfds_t(n), kPollMillis);
    if (out_open) out_open = read_some(pipes.out[0], r.out, budget, c.over);
    if (err_open) err_open = read_some(pipes.err[0], r.err, budget, c.over);
    if (c.over) break;
    siginfo_t si{};
    if (::waitid(P_PID, id_t(init), &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == init)
      break;
    if (Clock::now() >= deadline) {
      c.timed_out = true;
      break;
    }
  }
  // init's process group (the run, where there is no PID namespace), then init itself.
  ::kill(-init, SIGKILL);
  ::kill(init, SIGKILL);
  int init_status = 0;
  while (::wait4(init, &init_status, 0, &c.usage) < 0 && errno == EINTR) {
  }
  if (out_open) read_some(pipes.out[0], r.out, budget, c.over);
  if (err_open) read_some(pipes.err[0], r.err, budget, c.over);
  int64_t status_budget = kMaxStatusBytes;
  bool status_over = false;
  read_some(pipes.status[0], c.status_bytes, status_budget, status_over);
  return c;
}

// The status records of one run, decoded.
struct Reports {
  int32_t flags = 0;
  bool have_wait = false;  // init reported the program's wait status
  int prog_status = 0;
  std::string setup_error;  // the first kError record, as a message
};

Reports parse_reports(const std::string& bytes) {
  Reports rep;
  for (size_t off = 0; off + sizeof(Record) <= bytes.size(); off += sizeof(Record)) {
    Record rec;
    std::memcpy(&rec, bytes.data() + off, sizeof rec);
    if (rec.kind == kFlags) rep.flags |= rec.a;
    if (rec.kind == kWait) rep.have_wait = true, rep.prog_status = rec.a;
    if (rec.kind == kError && rep.setup_error.empty())
      rep.setup_error = std::string("sandbox: ") + stage_name(rec.a) + ": " + std::strerror(rec.b);
  }
  return rep;
}

// Fills the isolation, exit status and outcome of `r`, in the order of sandbox.h.
void classify(const Reports& rep, const Collected& c, const SandboxLimits& limits,
              const std::string& dir, uid_t uid, SandboxResult& r) {
  r.isolation = {(rep.flags & kNet) != 0, (rep.flags & kPidNs) != 0, (rep.flags & kPrivateTmp) != 0,
                 (rep.flags & kUnprivileged) != 0, (rep.flags & kCgroup) != 0};
  r.isolation_notes = notes_for(r.isolation);
  if (r.isolation.unprivileged) r.uid = int64_t(uid);
  if (rep.have_wait && WIFEXITED(rep.prog_status)) r.exit_code = WEXITSTATUS(rep.prog_status);
  if (rep.have_wait && WIFSIGNALED(rep.prog_status)) r.signal = WTERMSIG(rep.prog_status);
  if (!rep.have_wait && (c.timed_out || c.over)) r.signal = SIGKILL;  // ours, before it ended
  // The CPU limit: SIGXCPU at the soft limit, or the kernel's SIGKILL at the hard one (rusage
  // may read a little under the limit, so this second test is a lower bound only).
  const bool cpu_limit =
      r.signal == SIGXCPU || (r.signal == SIGKILL && r.cpu_seconds >= double(limits.cpu_seconds));
  if (!rep.setup_error.empty()) {
    r.outcome = RunClass::sandbox_error;
    r.detail = rep.setup_error;
  } else if (c.timed_out || cpu_limit) {
    r.outcome = RunClass::timeout;
    r.detail = c.timed_out ? "wall-clock limit" : "CPU-seconds limit";
  } else if (c.over) {
    r.outcome = RunClass::output_limit;
    r.detail = "stdout + stderr over the capture cap";
  } else if (!rep.have_wait) {
    r.outcome = RunClass::sandbox_error;
    r.detail = "sandbox: init ended without reporting the program's status";
  } else if (r.exit_code == 0) {
    r.outcome = RunClass::passed;
  } else if (r.signal == SIGXFSZ || file_at_limit(dir, limits.file_bytes)) {
    r.outcome = RunClass::file_size;
    r.detail = "file-size limit";
  } else if (names_memory_failure(r.err)) {
    r.outcome = RunClass::memory;
    r.detail = "allocation failed";
  } else {
    r.outcome = RunClass::failed;
    if (r.signal) r.detail = std::string("signal ") + ::strsignal(r.signal);
  }
}
}  // namespace

const char* run_class_name(RunClass c) {
  switch (c) {
    case RunClass::passed:
      return "passed";
    case RunClass::failed:
      return "failed";
    case RunClass::timeout:
      return "timeout";
    case RunClass::memory:
      return "memory";
    case RunClass::file_size:
      return "file_size";
    case RunClass::output_limit:
      return "output_limit";
    case RunClass::sandbox_error:
      return "sandbox_error";
  }
  return "?";
}

SandboxResult run_sandboxed(const SandboxProgram& program, const SandboxLimits& limits) {
  validate(program, limits);
  SandboxResult r;
  const auto t0 = Clock::now();
  const bool root = ::geteuid() == 0;
  const uid_t uid = kSandboxUidBase + uid_t(::getpid()) % kSandboxUidRange;
  const std::string dir = make_run_dir(program, root, uid, r.detail);
  if (dir.empty()) return r;
  const RunDirGuard guard{dir};
  PlanStorage plan(program, limits, dir, root, uid);
  Pipes pipes;
  if (!pipes.open()) {
    r.detail = "sandbox: pipe: " + std::string(std::strerror(errno));
    return r;
  }
  plan.plan.status_fd = pipes.status[1];
  plan.plan.out_fd = pipes.out[1];
  plan.plan.err_fd = pipes.err[1];
  // New PID, network and mount namespaces where the kernel lets us; a plain fork otherwise.
  pid_t init = -1;
  if (root) {
    plan.plan.namespaces = true;
    init = raw_clone(CLONE_NEWPID | CLONE_NEWNET | CLONE_NEWNS);
    if (init == 0) run_init(plan.plan);
  }
  if (init < 0) {
    plan.plan.namespaces = false;
    init = raw_clone(0);
    if (init == 0) run_init(plan.plan);
  }
  pipes.close_write_ends();
  if (init < 0) {
    r.detail = "sandbox: fork: " + std::string(std::strerror(errno));
    return r;
  }
  const Collected c = collect(init, pipes, limits, t0, r);
  plan.remove_cgroup();
  r.wall_seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  r.cpu_seconds = double(c.usage.ru_utime.tv_sec + c.usage.ru_stime.tv_sec) +
                  1e-6 * double(c.usage.ru_utime.tv_usec + c.usage.ru_stime.tv_usec);
  classify(parse_reports(c.status_bytes), c, limits, dir, uid, r);
  return r;
}

}  // namespace dsv4::evals
