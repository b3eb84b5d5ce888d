// Runs one untrusted program (a model's code plus its tests) in its own sandboxed process,
// never in the harness's process (docs/evals.md "Coding suite: the sandbox").
//
// run_sandboxed() writes the program into a fresh temporary directory and starts the
// interpreter on it. The process tree is:
//
//   harness ── init (our code, pid 1 of a new PID namespace when the kernel allows)
//                └─ program (exec of the interpreter)
//
// What contains the program:
//   - setrlimit: CPU seconds (SIGXCPU, then SIGKILL one second later), address space,
//     size of any one file written, open files, processes (RLIMIT_NPROC).
//   - As root: the program runs as an unprivileged uid/gid of its own (1900000000 + harness
//     pid mod 10^6: no account's, and not 65534, which daemons share and RLIMIT_NPROC counts
//     machine-wide) with no supplementary groups and no_new_privs, because the kernel does not
//     enforce RLIMIT_NPROC for uid 0 and root could write anywhere; the temporary directory is
//     handed to that uid.
//   - Namespaces (root): a new network namespace (loopback down: no connection anywhere,
//     127.0.0.1 included), a new PID namespace (when init exits the kernel kills every
//     process left in it, so forked or daemonised children die with the run; /proc is
//     remounted, so the harness's processes are not visible), a new mount namespace in which
//     the temporary directory is bind-mounted over every world-writable directory (/tmp,
//     /var/tmp, /run/lock, /dev/shm): a write to /tmp/x lands in the temporary directory
//     and is removed with it.
//   - A pids cgroup with pids.max = the process limit, when /sys/fs/cgroup is writable
//     (cgroup v1 "pids" hierarchy or cgroup v2).
//   - A wall-clock timeout that kills init's whole process group (and so the namespace).
//   - Environment: exactly PATH=/usr/bin:/bin, HOME=<the temporary directory>, LANG=C.UTF-8;
//     stdin is /dev/null; every other descriptor is closed; stdout and stderr are captured up
//     to a byte cap (beyond it the run is killed: output_limit).
// Whatever could not be set up (e.g. unprivileged: no namespaces, no uid change) is recorded
// in SandboxResult::isolation and isolation_notes ("network: not isolated"), never assumed.
//
// Not contained: CPU and memory bandwidth shared with the harness; reads of world-readable
// files (the program sees the machine's filesystem read-only through its uid).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dsv4::evals {

// How a sandboxed run ended. Checked in this order (the first that applies):
//   sandbox_error  the sandbox itself failed (temporary directory, fork, exec of the
//                  interpreter, a limit that could not be set): not the program's fault
//   timeout        the wall-clock limit, or the CPU-seconds limit (SIGXCPU / the hard kill)
//   output_limit   stdout + stderr passed the capture cap
//   file_size      a file reached the file-size limit (SIGXFSZ, or a file of exactly that
//                  size left in the directory) and the program did not exit 0
//   memory         the program did not exit 0 and its stderr names an allocation failure
//                  (Python MemoryError, V8 "heap out of memory", "Cannot allocate memory",
//                  std::bad_alloc)
//   passed         exit status 0
//   failed         any other non-zero exit or signal (a failed assertion, an exception)
enum class RunClass { passed, failed, timeout, memory, file_size, output_limit, sandbox_error };
const char* run_class_name(RunClass c);  // "passed", "failed", "timeout", ...

struct SandboxLimits {
  double wall_seconds = 10;                 // wall-clock timeout
  int64_t cpu_seconds = 10;                 // RLIMIT_CPU soft limit (hard = soft + 1)
  int64_t memory_bytes = int64_t(1) << 30;  // RLIMIT_AS: Node.js 20 starts under 1 GiB
  int64_t file_bytes = int64_t(16) << 20;   // RLIMIT_FSIZE: largest file the program writes
  int64_t open_files = 64;                  // RLIMIT_NOFILE
  int64_t processes = 32;                   // RLIMIT_NPROC (the sandbox uid) and pids.max
  int64_t output_bytes = int64_t(1) << 20;  // stdout + stderr captured
};

// The program: `source` is written to <temporary dir>/<file_name>, then argv is executed
// with the temporary directory as the working directory. argv[0] is an absolute path (no
// PATH search); argv names the file relatively, e.g. {"/usr/bin/python3", "-I", "-B",
// "main.py"}.
struct SandboxProgram {
  std::vector<std::string> argv;
  std::string file_name;
  std::string source;
};

// What the sandbox managed to set up for one run.
struct Isolation {
  bool network = false;  // new network namespace
  bool pid_namespace = false;
  bool private_tmp = false;   // the world-writable directories replaced by the temp dir
  bool unprivileged = false;  // the program ran as the sandbox's own uid
  bool pids_cgroup = false;
};

struct SandboxResult {
  RunClass outcome = RunClass::sandbox_error;
  int exit_code = -1;  // the program's exit status; -1 when it was killed by a signal
  int signal = 0;      // the signal that ended it, 0 when it exited
  double wall_seconds = 0;
  double cpu_seconds = 0;  // user + system of init and every process it reaped
  int64_t uid = -1;        // the uid the program ran as; -1: the harness's own
  std::string out, err;    // captured stdout / stderr (together at most output_bytes)
  Isolation isolation;
  // "network: not isolated; ..." for every protection missing; "" when all held.
  std::string isolation_notes;
  std::string detail;  // sandbox_error: what failed; otherwise a short reason ("SIGXCPU")
};

// Runs `program` under `limits`. Never throws for anything the program does; throws
// InputError for a malformed request (empty argv, a relative argv[0], a file name with a
// '/', a non-positive limit).
SandboxResult run_sandboxed(const SandboxProgram& program, const SandboxLimits& limits);

}  // namespace dsv4::evals
