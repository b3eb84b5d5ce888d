#!/usr/bin/env python3
"""Validate the team's coding problem set (ctest evals.coding_problem_set_validates).

    validate_problems.py [--python EXE] [--node EXE] [--timeout S] [--max-cpu S] FILE.jsonl...
    validate_problems.py --print ID canonical|mutant FILE.jsonl...   (the assembled program)

Each line of FILE.jsonl is one problem in the HumanEval format (evals/coding/problems/README.md):
task_id, language, category, prompt, entry_point, canonical_solution, test, mutant. A program
is assembled exactly as the coding suite assembles a sample:

    python:     prompt + body + "\\n" + test + "\\ncheck(" + entry_point + ")\\n"
    javascript: prompt + body + "\\n" + test + "\\ncheck(" + entry_point + ");\\n"

and run in its own process (fresh temporary directory, scrubbed environment, wall-clock
timeout). The set is valid when every record is well formed, task_ids are unique, every
canonical solution passes within the CPU budget, and every mutant (which must compile) fails:
a mutant that passes means the hidden tests are vacuous for that mistake.

Before the set, two probe programs per language (one that must pass, one that must fail)
check that the runner tells pass from fail at all. Prints a summary; exits 0 when valid, 1 on
any problem (every problem is listed), 2 on bad usage, 77 (ctest: skipped) when node is
missing and the set has JavaScript problems. Python standard library only.
"""

import argparse
import collections
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time

REQUIRED_FIELDS = ("task_id", "language", "category", "prompt", "entry_point",
                   "canonical_solution", "test", "mutant")
CATEGORIES = ("strings", "parsing", "algorithms", "numerics", "data-structures")
# language -> the task_id infix and the file suffix of an assembled program.
LANGUAGES = {"python": ("py", ".py"), "javascript": ("js", ".js")}
TASK_ID = re.compile(r"^dsv4/(py|js)/(\d{3})$")
IDENTIFIER = re.compile(r"^[A-Za-z_$][A-Za-z0-9_$]*$")
# Every problem asserts at least five cases, edge cases included (issue 7).
MIN_ASSERTS = 5
# Wall-clock limit per program: generous, the machine is shared by several builds; the
# CPU-time budget below is the real speed requirement.
DEFAULT_TIMEOUT_S = 20.0
# Each program must run in under 1 s; interpreter start-up (node ~0.05 s) is included.
DEFAULT_MAX_CPU_S = 1.0
SKIP_RETURN_CODE = 77
# Limits each program runs under: the coding suite's sandbox defaults (evals/coding/sandbox.h
# SandboxLimits), so a problem that validates here also runs there. Problems write no files.
LIMIT_ADDRESS_SPACE = 1 << 30   # RLIMIT_AS: Node.js 20 starts under 1 GiB
LIMIT_FILE_BYTES = 0            # RLIMIT_FSIZE: no program writes a file
LIMIT_OPEN_FILES = 64           # RLIMIT_NOFILE
QUOTE_CHARS = 600  # how much of a failing program's output an error message quotes


class Runner:
    """Runs assembled programs one at a time (sequential, so the children's rusage delta is
    exactly the program's CPU time) in a fresh temporary directory with a scrubbed env."""

    def __init__(self, python, node, timeout_s):
        self.exe = {"python": python, "javascript": node}
        self.timeout_s = timeout_s

    def command(self, language, path):
        if language == "python":
            # -I: no user site, no PYTHON* variables; -B: no .pyc files
            return [self.exe["python"], "-I", "-B", path]
        return [self.exe["javascript"], path]

    @staticmethod
    def set_limits():
        """preexec_fn of every program (safe here: the validator runs no threads)."""
        for limit, value in ((resource.RLIMIT_AS, LIMIT_ADDRESS_SPACE),
                             (resource.RLIMIT_FSIZE, LIMIT_FILE_BYTES),
                             (resource.RLIMIT_NOFILE, LIMIT_OPEN_FILES)):
            resource.setrlimit(limit, (value, value))

    def run(self, language, source):
        """-> (status, cpu_seconds, output); status is 'pass', 'fail' or 'timeout'."""
        with tempfile.TemporaryDirectory(prefix="dsv4-problem-") as tmp:
            path = os.path.join(tmp, "program" + LANGUAGES[language][1])
            with open(path, "w", encoding="utf-8") as f:
                f.write(source)
            env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "TMPDIR": tmp, "LANG": "C.UTF-8"}
            before = resource.getrusage(resource.RUSAGE_CHILDREN)
            proc = subprocess.Popen(self.command(language, path), cwd=tmp, env=env,
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.STDOUT, preexec_fn=self.set_limits)
            try:
                out, _ = proc.communicate(timeout=self.timeout_s)
                status = "pass" if proc.returncode == 0 else "fail"
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
                status = "timeout"
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
            return status, cpu, out.decode("utf-8", "replace")

    def compiles(self, language, source):
        """-> (ok, message): the program parses (a mutant must fail its tests, not the parser)."""
        if language == "python":
            try:
                compile(source, "<mutant>", "exec")
                return True, ""
            except SyntaxError as e:
                return False, f"SyntaxError: {e}"
        with tempfile.TemporaryDirectory(prefix="dsv4-problem-") as tmp:
            path = os.path.join(tmp, "program.js")
            with open(path, "w", encoding="utf-8") as f:
                f.write(source)
            r = subprocess.run([self.exe["javascript"], "--check", path], capture_output=True,
                               timeout=self.timeout_s, env={"PATH": "/usr/bin:/bin"})
            return r.returncode == 0, r.stderr.decode("utf-8", "replace")


def assemble(problem, body):
    """The program the coding suite runs for one sample body (see the module docstring)."""
    end = ");\n" if problem["language"] == "javascript" else ")\n"
    return (problem["prompt"] + body + "\n" + problem["test"] + "\ncheck(" +
            problem["entry_point"] + end)


def count_asserts(language, test):
    if language == "python":
        return len(re.findall(r"^\s*assert\b", test, flags=re.M))
    return len(re.findall(r"\bassert(?:\.\w+)?\s*\(", test))


def check_record(problem, where):
    """Static checks of one parsed line -> list of error strings."""
    if not isinstance(problem, dict):
        return [f"{where}: not a JSON object"]
    errors = []
    for field in REQUIRED_FIELDS:
        value = problem.get(field)
        if not isinstance(value, str) or not value.strip():
            errors.append(f"{where}: field '{field}' is missing or not a non-empty string")
    if errors:
        return errors
    language, task_id, entry = problem["language"], problem["task_id"], problem["entry_point"]
    if language not in LANGUAGES:
        return [f"{where}: language '{language}' is not one of {sorted(LANGUAGES)}"]
    m = TASK_ID.match(task_id)
    if not m or m.group(1) != LANGUAGES[language][0]:
        errors.append(f"{where}: task_id '{task_id}' is not dsv4/{LANGUAGES[language][0]}/NNN")
    if problem["category"] not in CATEGORIES:
        errors.append(f"{where}: category '{problem['category']}' is not one of {CATEGORIES}")
    if not IDENTIFIER.match(entry):
        errors.append(f"{where}: entry_point '{entry}' is not an identifier")
    prompt, test = problem["prompt"], problem["test"]
    if language == "python":
        defines = re.search(rf"^(def|class)\s+{re.escape(entry)}\b", prompt, flags=re.M)
        has_check = re.search(r"^def check\(candidate\):", test, flags=re.M)
        if not prompt.endswith('"""\n'):
            errors.append(f"{where}: prompt must end with its docstring and a newline")
        for field in ("canonical_solution", "mutant"):
            if not problem[field].startswith((" ", "\t")):
                errors.append(f"{where}: {field} must be an indented body continuing the prompt")
    else:
        defines = re.search(rf"^(function|class)\s+{re.escape(entry)}\b", prompt, flags=re.M)
        has_check = re.search(r"^function check\(candidate\)", test, flags=re.M)
        if not prompt.rstrip(" ").endswith("{\n"):
            errors.append(f"{where}: prompt must end with the opening '{{' and a newline")
    if not defines:
        errors.append(f"{where}: prompt does not define entry_point '{entry}'")
    if not has_check:
        errors.append(f"{where}: test does not define check(candidate)")
    n_asserts = count_asserts(language, test)
    if n_asserts < MIN_ASSERTS:
        errors.append(f"{where}: test has {n_asserts} asserts, at least {MIN_ASSERTS} needed")
    if problem["mutant"].strip() == problem["canonical_solution"].strip():
        errors.append(f"{where}: mutant is the canonical solution")
    return errors


def load(paths):
    """-> (problems, errors); problems is a list of (path, line_no, dict)."""
    problems, errors, seen = [], [], {}
    for path in paths:
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().split("\n")
        except OSError as e:
            errors.append(f"{path}: cannot read: {e.strerror}")
            continue
        if lines and lines[-1] == "":
            lines.pop()
        if not lines:
            errors.append(f"{path}: no problems")
        for no, line in enumerate(lines, 1):
            where = f"{os.path.basename(path)}:{no}"
            try:
                problem = json.loads(line)
            except json.JSONDecodeError as e:
                errors.append(f"{where}: not valid JSON ({e.msg} at column {e.colno})")
                continue
            record_errors = check_record(problem, where)
            errors += record_errors
            if record_errors:
                continue
            task_id = problem["task_id"]
            if task_id in seen:
                errors.append(f"{where}: task_id '{task_id}' repeats {seen[task_id]}")
                continue
            seen[task_id] = where
            problems.append((path, no, problem))
    return problems, errors


PROBES = {
    "python": ("def probe(x):\n", "    return x + 1\n", "    return x\n",
               "def check(candidate):\n    assert candidate(1) == 2\n", "probe"),
    "javascript": ("function probe(x) {\n", "  return x + 1;\n}\n", "  return x;\n}\n",
                   "function check(candidate) {\n  if (candidate(1) !== 2) throw new Error('no');\n}\n",
                   "probe"),
}


def check_runner(runner, language):
    """The runner must report a correct program as pass and a wrong one as fail."""
    prompt, good, bad, test, entry = PROBES[language]
    problem = {"language": language, "prompt": prompt, "test": test, "entry_point": entry}
    errors = []
    status, _, out = runner.run(language, assemble(problem, good))
    if status != "pass":
        errors.append(f"runner: a correct {language} probe did not pass ({status}): {out[:QUOTE_CHARS]}")
    status, _, _ = runner.run(language, assemble(problem, bad))
    if status != "fail":
        errors.append(f"runner: a wrong {language} probe was not reported as failing ({status})")
    return errors


def validate(problems, runner, max_cpu_s):
    """Runs every canonical solution and mutant -> (errors, per-problem cpu seconds)."""
    errors, cpu_of = [], {}
    for path, no, p in problems:
        where = f"{os.path.basename(path)}:{no} {p['task_id']}"
        status, cpu, out = runner.run(p["language"], assemble(p, p["canonical_solution"]))
        cpu_of[p["task_id"]] = cpu
        if status != "pass":
            errors.append(f"{where}: canonical solution: {status}\n{out[-QUOTE_CHARS:]}")
        elif cpu > max_cpu_s:
            errors.append(f"{where}: canonical solution used {cpu:.2f} s CPU (limit {max_cpu_s} s)")
        mutant = assemble(p, p["mutant"])
        ok, message = runner.compiles(p["language"], mutant)
        if not ok:
            errors.append(f"{where}: mutant does not compile, so it fails vacuously: {message[:QUOTE_CHARS]}")
            continue
        status, _, _ = runner.run(p["language"], mutant)
        if status == "pass":
            errors.append(f"{where}: mutant PASSES the tests (the tests miss that mistake)")
        elif status == "timeout":
            errors.append(f"{where}: mutant timed out; make it fail fast instead")
    return errors, cpu_of


def summary(problems, cpu_of):
    counts = collections.Counter((p["language"], p["category"]) for _, _, p in problems)
    for language in LANGUAGES:
        total = sum(n for (lang, _), n in counts.items() if lang == language)
        if not total:
            continue
        parts = ", ".join(f"{c} {counts[(language, c)]}" for c in CATEGORIES if counts[(language, c)])
        print(f"{language}: {total} problems ({parts})")
    if cpu_of:
        slowest = max(cpu_of, key=cpu_of.get)
        print(f"CPU per canonical program: max {cpu_of[slowest]:.3f} s ({slowest}), "
              f"total {sum(cpu_of.values()):.2f} s")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", help="problem files (.jsonl)")
    ap.add_argument("--python", default="/usr/bin/python3" if os.path.exists("/usr/bin/python3")
                    else sys.executable, help="interpreter for python problems")
    ap.add_argument("--node", default=shutil.which("node"), help="node for javascript problems")
    ap.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT_S, help="wall seconds per program")
    ap.add_argument("--max-cpu", type=float, default=DEFAULT_MAX_CPU_S,
                    help="CPU seconds a canonical program may use")
    ap.add_argument("--print", nargs=2, metavar=("TASK_ID", "BODY"),
                    help="print the assembled program (BODY: canonical or mutant) and exit")
    args = ap.parse_args()
    if args.timeout <= 0 or args.max_cpu <= 0:
        ap.error("--timeout and --max-cpu must be positive")

    unreadable = [f for f in args.files if not os.path.isfile(f) or not os.access(f, os.R_OK)]
    if unreadable:
        print(f"validate_problems: cannot read {', '.join(unreadable)}", file=sys.stderr)
        return 2
    problems, errors = load(args.files)
    if args.print:
        task_id, body = args.print
        if body not in ("canonical", "mutant"):
            ap.error("BODY must be 'canonical' or 'mutant'")
        for _, _, p in problems:
            if p["task_id"] == task_id:
                sys.stdout.write(assemble(p, p["canonical_solution" if body == "canonical" else "mutant"]))
                return 0
        print(f"no problem '{task_id}' in {args.files}", file=sys.stderr)
        return 2

    languages = {p["language"] for _, _, p in problems}
    if "javascript" in languages and not args.node:
        print("validate_problems: node is not installed (scripts/setup installs it): skipped")
        return SKIP_RETURN_CODE
    runner = Runner(args.python, args.node, args.timeout)
    start = time.monotonic()
    runner_errors = [e for language in sorted(languages) for e in check_runner(runner, language)]
    # A runner that cannot tell pass from fail would make every verdict below meaningless.
    run_errors, cpu_of = validate(problems, runner, args.max_cpu) if not runner_errors else ([], {})
    errors += runner_errors + run_errors
    summary(problems, cpu_of)
    print(f"{len(cpu_of)} problems run (solution and mutant each) in {time.monotonic() - start:.1f} s")
    if errors:
        print(f"\n{len(errors)} problem(s) in the problem set:")
        for e in errors:
            print("  " + e.replace("\n", "\n    "))
        return 1
    print("problem set valid: every canonical solution passes, every mutant fails")
    return 0


if __name__ == "__main__":
    sys.exit(main())
