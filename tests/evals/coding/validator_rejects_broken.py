#!/usr/bin/env python3
"""The problem-set validator must reject broken sets (ctest
evals.coding_problem_validator_rejects_broken_sets).

    validator_rejects_broken.py PYTHON.jsonl JAVASCRIPT.jsonl

Takes the first problem of each real file, breaks a copy in one way per case (a wrong
canonical solution, a mutant that passes, a duplicate task_id, ...) and checks that
validate_problems.py exits 1 naming that defect; the unbroken pair must validate (exit 0).
Exit 77 (skipped) when node is missing, as the validator does. Python standard library only.
"""

import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
VALIDATOR = os.path.join(HERE, "validate_problems.py")
SKIP_RETURN_CODE = 77
# Wall-clock limit given to the validator in the timeout case: long enough for interpreter
# start-up on a loaded machine, short enough to keep this test quick.
SHORT_TIMEOUT_S = "3"


def first_problem(path):
    with open(path, encoding="utf-8") as f:
        return json.loads(f.readline())


def cases(py, js):
    """-> list of (name, lines of the broken file, extra validator args, expected message)."""
    def dump(*problems):
        return [json.dumps(p) for p in problems]

    def changed(problem, **fields):
        copy = dict(problem)
        copy.update(fields)
        for key, value in fields.items():
            if value is None:
                del copy[key]
        return copy

    return [
        # solution and mutant swapped: the wrong body is now the reference solution
        ("wrong python solution",
         dump(changed(py, canonical_solution=py["mutant"], mutant=py["canonical_solution"]), js), [],
         "canonical solution: fail"),
        ("wrong javascript solution",
         dump(py, changed(js, canonical_solution=js["mutant"], mutant=js["canonical_solution"])), [],
         "canonical solution: fail"),
        ("solution that never ends", dump(changed(py, canonical_solution="    while True:\n        pass\n"), js),
         ["--timeout", SHORT_TIMEOUT_S], "canonical solution: timeout"),
        ("mutant that passes", dump(changed(py, mutant="    unused = 0\n" + py["canonical_solution"]), js),
         [], "mutant PASSES"),
        ("mutant equal to the solution", dump(py, changed(js, mutant=js["canonical_solution"])), [],
         "mutant is the canonical solution"),
        ("mutant that does not compile", dump(changed(py, mutant="    return (\n"), js), [],
         "mutant does not compile"),
        ("javascript mutant that does not compile", dump(py, changed(js, mutant="  return {{;\n}\n")),
         [], "mutant does not compile"),
        ("duplicate task_id", dump(py, js, py), [], "repeats"),
        ("missing field", dump(changed(py, test=None), js), [], "field 'test' is missing"),
        ("unknown language", dump(changed(py, language="ruby"), js), [], "language 'ruby'"),
        ("task_id of the other language", dump(changed(py, task_id="dsv4/js/999"), js), [],
         "is not dsv4/py/NNN"),
        ("too few asserts", dump(changed(py, test="def check(candidate):\n    assert candidate is not None\n"), js),
         [], "at least 5 needed"),
        ("not JSON", dump(py, js) + ["{not json"], [], "not valid JSON"),
    ]


def run_validator(lines, extra):
    with tempfile.TemporaryDirectory(prefix="dsv4-broken-set-") as tmp:
        path = os.path.join(tmp, "set.jsonl")
        with open(path, "w", encoding="utf-8") as f:
            f.write("\n".join(lines) + "\n")
        r = subprocess.run([sys.executable, VALIDATOR, *extra, path], capture_output=True, text=True)
        return r.returncode, r.stdout + r.stderr


def main():
    if len(sys.argv) != 3:
        print(__doc__.strip().split("\n\n")[1], file=sys.stderr)
        return 2
    py, js = first_problem(sys.argv[1]), first_problem(sys.argv[2])
    rc, out = run_validator([json.dumps(py), json.dumps(js)], [])
    if rc == SKIP_RETURN_CODE:
        print(out.strip())
        return SKIP_RETURN_CODE
    failures = []
    if rc != 0:
        failures.append(f"the unbroken pair does not validate (exit {rc}):\n{out}")
    for name, lines, extra, expected in cases(py, js):
        rc, out = run_validator(lines, extra)
        verdict = "rejected" if rc == 1 and expected in out else "NOT REJECTED AS EXPECTED"
        print(f"{name}: {verdict}")
        if verdict != "rejected":
            failures.append(f"{name}: wanted exit 1 naming '{expected}', got exit {rc}:\n{out}")
    for f in failures:
        print("FAIL: " + f)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
