"""`--json` commands print one JSON document on stdout and everything else on stderr, so they pipe into jq
(issue 12). The commands themselves are checked in test_export.py (parity) and test_evaluate.py."""

import json
import subprocess
import sys

# Writes to stdout in every way a command's helpers do, then prints its answer.
NOISY_COMMAND = """
import json, os, subprocess, sys
from framestamp.runtime.console import stdout_for_the_answer

with stdout_for_the_answer(sys.argv[1] == "json") as answer:
    print("wrote 113 questions about 12 clips")                   # Python, like a nested command
    os.write(1, b"native library log\\n")                         # file descriptor 1, like a C++ library
    subprocess.run([sys.executable, "-c", "print('child process')"])  # inherited stdout
    print(json.dumps({"passed": True}) if sys.argv[1] == "json" else "a table", file=answer)
print("after the command", file=sys.stderr)
"""


def run_noisy(mode: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", NOISY_COMMAND, mode], capture_output=True, text=True, timeout=60)


def test_with_json_stdout_holds_only_the_answer():
    done = run_noisy("json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout) == {"passed": True}
    for line in ("wrote 113 questions", "native library log", "child process", "after the command"):
        assert line in done.stderr


def test_without_json_everything_stays_on_stdout():
    done = run_noisy("table")
    assert done.returncode == 0, done.stderr
    for line in ("wrote 113 questions", "native library log", "child process", "a table"):
        assert line in done.stdout
