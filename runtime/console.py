"""What a command prints: with ``--json``, one JSON document on stdout and everything else on stderr,
so that ``framestamp parity ... --json | jq`` reads it."""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator, TextIO


@contextlib.contextmanager
def stdout_for_the_answer(only_the_answer: bool = True) -> Iterator[TextIO]:
    """Yield where to print the command's answer. With ``only_the_answer``, whatever else is written to
    stdout meanwhile goes to stderr: Python's prints, and native libraries' and child processes' writes
    to file descriptor 1 (progress of a nested command, a converter's log)."""
    if not only_the_answer:
        yield sys.stdout
        return
    if not _is_file_descriptor_1(sys.stdout):  # replaced inside Python (an embedding app, a test's capture)
        answer = sys.stdout
        with contextlib.redirect_stdout(sys.stderr):
            yield answer
        return
    sys.stdout.flush()
    real_stdout = os.dup(1)
    try:
        os.dup2(2, 1)
        with os.fdopen(os.dup(real_stdout), "w") as answer, contextlib.redirect_stdout(sys.stderr):
            yield answer
    finally:
        sys.stdout.flush()
        os.dup2(real_stdout, 1)
        os.close(real_stdout)


def _is_file_descriptor_1(stream) -> bool:
    try:
        return stream.fileno() == 1
    except (AttributeError, OSError, ValueError):
        return False
