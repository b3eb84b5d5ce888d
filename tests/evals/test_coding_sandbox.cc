// The coding sandbox (evals/coding/sandbox.h): hostile programs are contained, classified
// right, and the harness keeps running. Limits are small so the whole file runs in seconds.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "evals/coding/sandbox.h"
#include "reference/errors.h"

namespace dsv4::evals {
namespace {

namespace fs = std::filesystem;

constexpr const char* kPython = "/usr/bin/python3";
constexpr const char* kNode = "/usr/bin/node";

// Small limits. The wall clock is generous (a loaded CI machine may take a second to start
// Python); the cases that run into it use short_wall().
SandboxLimits quick_limits() {
  SandboxLimits l;
  l.wall_seconds = 10;
  l.cpu_seconds = 5;
  l.memory_bytes = int64_t(512) << 20;
  l.file_bytes = int64_t(1) << 20;
  l.output_bytes = int64_t(64) << 10;
  return l;
}

// quick_limits() with a 1 s wall clock: the infinite loop and the fork bomb end within it.
SandboxLimits short_wall() {
  SandboxLimits l = quick_limits();
  l.wall_seconds = 1;
  return l;
}

SandboxResult python(const std::string& src, const SandboxLimits& l = quick_limits()) {
  return run_sandboxed({{kPython, "-I", "-B", "main.py"}, "main.py", src}, l);
}

// Processes running as `uid` right now (from /proc/<pid>/status "Uid:" real uid).
int processes_of(int64_t uid) {
  int n = 0;
  for (const auto& e : fs::directory_iterator("/proc")) {
    const std::string name = e.path().filename().string();
    if (name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::ifstream f(e.path() / "status");
    for (std::string line; std::getline(f, line);)
      if (line.rfind("Uid:", 0) == 0) {
        if (std::stoll(line.substr(4)) == uid) ++n;
        break;
      }
  }
  return n;
}

// A token no other test run uses, for file names that must not appear.
std::string unique_token() {
  std::random_device rd;
  return std::to_string(::getpid()) + "-" + std::to_string(rd());
}

// The harness itself still forks and runs a program afterwards.
void expect_harness_fine() {
  const SandboxResult r = python("print('still here')");
  EXPECT_EQ(r.outcome, RunClass::passed) << r.detail << r.err;
  EXPECT_EQ(r.out, "still here\n");
}

TEST(CodingSandbox, PassingProgramIsPassedWithItsOutput) {
  const SandboxResult r = python("import sys\nprint('hello')\nprint('warn', file=sys.stderr)\n");
  EXPECT_EQ(r.outcome, RunClass::passed) << r.detail << r.err;
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "hello\n");
  EXPECT_EQ(r.err, "warn\n");
  if (::geteuid() == 0) {
    EXPECT_TRUE(r.isolation.network && r.isolation.pid_namespace && r.isolation.private_tmp &&
                r.isolation.unprivileged)
        << r.isolation_notes;
    EXPECT_GT(r.uid, 0);
  } else {
    EXPECT_NE(r.isolation_notes.find("network: not isolated"), std::string::npos);
  }
}

TEST(CodingSandbox, FailedAssertionIsFailed) {
  const SandboxResult r = python("assert 1 + 1 == 3, 'arithmetic'\n");
  EXPECT_EQ(r.outcome, RunClass::failed);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("AssertionError"), std::string::npos) << r.err;
}

TEST(CodingSandbox, InfiniteLoopTimesOutOnTheWallClock) {
  const auto t0 = std::chrono::steady_clock::now();
  const SandboxResult r = python("while True:\n    pass\n", short_wall());
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.outcome, RunClass::timeout);
  EXPECT_EQ(r.detail, "wall-clock limit");
  EXPECT_LT(s, short_wall().wall_seconds + 1.0);  // killed promptly, not left running
  expect_harness_fine();
}

TEST(CodingSandbox, CpuLimitIsATimeout) {
  SandboxLimits l = quick_limits();
  l.cpu_seconds = 1;
  l.wall_seconds = 60;  // far beyond 1 CPU second even on a machine loaded 10-fold
  const SandboxResult r = python("while True:\n    pass\n", l);
  EXPECT_EQ(r.outcome, RunClass::timeout);
  EXPECT_EQ(r.detail, "CPU-seconds limit");
  EXPECT_EQ(r.signal, SIGXCPU);  // the soft limit's signal (rusage may read a little under 1 s)
}

TEST(CodingSandbox, ForkBombIsContained) {
  const SandboxResult r = python(
      "import os\n"
      "while True:\n"
      "    try:\n"
      "        os.fork()\n"
      "    except OSError:\n"
      "        pass\n",
      short_wall());
  EXPECT_TRUE(r.outcome == RunClass::timeout || r.outcome == RunClass::failed)
      << run_class_name(r.outcome) << " " << r.detail;
  if (r.uid > 0) {
    EXPECT_EQ(processes_of(r.uid), 0) << "fork bomb processes left behind";
  }
  expect_harness_fine();
}

TEST(CodingSandbox, DaemonisedChildDoesNotOutliveTheRun) {
  const auto t0 = std::chrono::steady_clock::now();
  const SandboxResult r = python(
      "import os, time\n"
      "if os.fork() == 0:\n"
      "    os.setsid()\n"
      "    time.sleep(30)\n"
      "print('parent done')\n");
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_EQ(r.outcome, RunClass::passed) << r.detail << r.err;
  EXPECT_LT(s, 10.0);  // the run ended with its main process, not with the 30 s sleeper
  if (r.uid > 0) {
    EXPECT_EQ(processes_of(r.uid), 0) << "the daemon survived";
  }
}

TEST(CodingSandbox, MemoryHogIsMemory) {
  const SandboxResult r = python("x = bytearray(4 << 30)\nprint(len(x))\n");
  EXPECT_EQ(r.outcome, RunClass::memory) << run_class_name(r.outcome) << " " << r.err;
  expect_harness_fine();
}

TEST(CodingSandbox, HugeFileIsStoppedAtTheFileSizeLimit) {
  const SandboxResult r = python(
      "with open('big', 'wb') as f:\n"
      "    for _ in range(64):\n"
      "        f.write(b'x' * (1 << 20))\n");
  EXPECT_EQ(r.outcome, RunClass::file_size) << run_class_name(r.outcome) << " " << r.err;
  expect_harness_fine();
}

TEST(CodingSandbox, OutputFloodIsOutputLimit) {
  const SandboxResult r = python("while True:\n    print('x' * 1000)\n");
  EXPECT_EQ(r.outcome, RunClass::output_limit) << run_class_name(r.outcome);
  EXPECT_LE(int64_t(r.out.size() + r.err.size()), quick_limits().output_bytes);
}

TEST(CodingSandbox, WritesOutsideTheTempDirDoNotAppear) {
  const std::string tok = unique_token();
  const fs::path in_tmp = fs::path("/tmp") / ("dsv4-escape-" + tok);
  const fs::path in_var_tmp = fs::path("/var/tmp") / ("dsv4-escape-" + tok);
  const fs::path in_cwd = fs::current_path() / ("dsv4-escape-" + tok);
  const SandboxResult r = python(
      "import os\n"
      "for p in ['" +
      in_tmp.string() + "', '" + in_var_tmp.string() + "', '" + in_cwd.string() +
      "']:\n"
      "    try:\n"
      "        with open(p, 'w') as f:\n"
      "            f.write('escaped')\n"
      "        print('wrote', p)\n"
      "    except OSError as e:\n"
      "        print('refused', p, e.errno)\n");
  EXPECT_NE(r.outcome, RunClass::sandbox_error) << r.detail;
  EXPECT_FALSE(fs::exists(in_tmp)) << r.out << r.isolation_notes;
  EXPECT_FALSE(fs::exists(in_var_tmp)) << r.out << r.isolation_notes;
  EXPECT_FALSE(fs::exists(in_cwd)) << r.out << r.isolation_notes;
  for (const fs::path& p : {in_tmp, in_var_tmp, in_cwd}) fs::remove(p);  // a failed run's debris
}

// The secret has to be in the harness's startup environment (what the harness's
// /proc/<pid>/environ shows; setenv() does not change that), so without it the test runs
// itself again with DSV4_SECRET set.
TEST(CodingSandbox, HarnessEnvironmentIsNotVisible) {
  const char* secret = std::getenv("DSV4_SECRET");
  if (!secret) {
    const std::string env = "DSV4_SECRET=dsv4-secret-" + unique_token();
    const std::string filter = "--gtest_filter=CodingSandbox.HarnessEnvironmentIsNotVisible";
    std::string self = "self";
    const pid_t pid = ::fork();
    if (pid == 0) {
      char* argv[] = {self.data(), const_cast<char*>(filter.c_str()), nullptr};
      char* envp[] = {const_cast<char*>(env.c_str()), nullptr};
      ::execve("/proc/self/exe", argv, envp);
      ::_exit(127);
    }
    ASSERT_GT(pid, 0);
    int st = 0;
    ASSERT_EQ(::waitpid(pid, &st, 0), pid);
    EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0)
        << "the re-run with DSV4_SECRET in its startup environment failed";
    return;
  }
  const SandboxResult r = python(
      "import os, glob\n"
      "print(','.join(sorted(os.environ)))\n"
      "print(os.environ.get('DSV4_SECRET', 'absent'))\n"
      "for p in glob.glob('/proc/*/environ'):\n"
      "    try:\n"
      "        print(open(p, 'rb').read().decode('latin-1'))\n"
      "    except OSError:\n"
      "        pass\n");
  EXPECT_EQ(r.outcome, RunClass::passed) << r.detail << r.err;
  EXPECT_EQ(r.out.substr(0, r.out.find('\n')), "HOME,LANG,PATH");
  EXPECT_NE(r.out.find("absent"), std::string::npos);
  EXPECT_EQ(r.out.find(secret), std::string::npos) << r.out;
}

TEST(CodingSandbox, NetworkConnectionToLoopbackFails) {
  // A listener in the harness on 127.0.0.1: the program must not reach it.
  const int ls = ::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  ASSERT_GE(ls, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(ls, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::listen(ls, 4), 0);
  socklen_t len = sizeof a;
  ASSERT_EQ(::getsockname(ls, reinterpret_cast<sockaddr*>(&a), &len), 0);
  const int port = ntohs(a.sin_port);
  const SandboxResult r = python(
      "import socket, sys\n"
      "try:\n"
      "    s = socket.create_connection(('127.0.0.1', " +
      std::to_string(port) +
      "), timeout=1)\n"
      "    s.sendall(b'leak')\n"
      "    print('connected')\n"
      "except OSError as e:\n"
      "    print('blocked', e.errno)\n"
      "    sys.exit(3)\n");
  const int accepted = ::accept(ls, nullptr, nullptr);
  ::close(ls);
  if (!r.isolation.network) {
    EXPECT_NE(r.isolation_notes.find("network: not isolated"), std::string::npos);
    if (accepted >= 0) ::close(accepted);
    GTEST_SKIP() << "no network namespace here (unprivileged): " << r.isolation_notes;
  }
  EXPECT_LT(accepted, 0) << "the sandboxed program reached the harness's listener";
  EXPECT_EQ(r.outcome, RunClass::failed);
  EXPECT_EQ(r.out.rfind("blocked", 0), 0u) << r.out;
}

// The harness may run sandboxes from several threads at once (validate_problems): the
// child side must not depend on the other threads (no glibc setxid broadcast, no locks).
TEST(CodingSandbox, ConcurrentRunsFromThreads) {
  constexpr int kThreads = 4, kRunsEach = 5;
  std::vector<std::thread> pool;
  std::atomic<int> passed{0};
  for (int t = 0; t < kThreads; ++t)
    pool.emplace_back([&] {
      for (int i = 0; i < kRunsEach; ++i) passed += python("print(1)").outcome == RunClass::passed;
    });
  for (std::thread& t : pool) t.join();
  EXPECT_EQ(passed.load(), kThreads * kRunsEach);
}

TEST(CodingSandbox, MissingInterpreterIsASandboxError) {
  const SandboxResult r =
      run_sandboxed({{"/nonexistent/python", "main.py"}, "main.py", "print(1)"}, quick_limits());
  EXPECT_EQ(r.outcome, RunClass::sandbox_error);
  EXPECT_NE(r.detail.find("exec of the interpreter"), std::string::npos) << r.detail;
}

TEST(CodingSandbox, MalformedRequestIsAnInputError) {
  EXPECT_THROW(run_sandboxed({{"python3", "main.py"}, "main.py", ""}, quick_limits()), InputError);
  EXPECT_THROW(run_sandboxed({{kPython, "x"}, "../x", ""}, quick_limits()), InputError);
  SandboxLimits l = quick_limits();
  l.wall_seconds = 0;
  EXPECT_THROW(run_sandboxed({{kPython, "x"}, "x", ""}, l), InputError);
}

TEST(CodingSandbox, NodeRunsUnderTheSameLimits) {
  if (!fs::exists(kNode)) GTEST_SKIP() << kNode << " is not installed (scripts/setup: nodejs)";
  SandboxLimits l = quick_limits();
  l.memory_bytes = SandboxLimits{}.memory_bytes;  // V8 reserves ~0.7 GiB of address space
  const SandboxResult ok =
      run_sandboxed({{kNode, "main.js"}, "main.js", "console.log(6 * 7);\n"}, l);
  EXPECT_EQ(ok.outcome, RunClass::passed) << ok.detail << ok.err;
  EXPECT_EQ(ok.out, "42\n");
  const SandboxResult bad =
      run_sandboxed({{kNode, "main.js"},
                     "main.js",
                     "const assert = require('assert');\nassert.strictEqual(1, 2);\n"},
                    l);
  EXPECT_EQ(bad.outcome, RunClass::failed) << bad.detail << bad.err;
}

}  // namespace
}  // namespace dsv4::evals
