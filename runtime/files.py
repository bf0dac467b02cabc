"""Nothing half-written: files and folders appear under their final name only when complete.

A write goes to a temporary folder beside its target, ``.NAME.PID-RANDOM.tmp``; on success the new
file or folder takes the target's place in one rename (on Linux; elsewhere see ``replace``), so a
reader finds the old version or the new one, never a mix and never neither, and a kill at any moment
leaves the old version in place.
Temporary folders that killed writers left behind are removed by the next complete write of a folder
to the same target (not after file writes, which may be many to one big folder).
"""

from __future__ import annotations

import errno
import os
import re
import shutil
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

PREVIOUS = "previous"  # where the old version goes, inside the temporary folder, when no exchange exists
ORPHAN_SECONDS = 24 * 3600  # a temporary folder without a writer's pid is stale after this long


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success put it in ``path``'s place, else remove it.

    Works for a file or a folder written at the yielded path.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}-", suffix=".tmp", dir=path.parent))
    temporary = scratch / path.name
    try:
        yield temporary
        folder = temporary.is_dir()
        replace(temporary, path, scratch / PREVIOUS)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if folder:
        remove_stale_temporaries(path)


def replace(new: Path, path: Path, aside: Path) -> None:
    """Put ``new`` in ``path``'s place. An existing ``path`` is swapped out in the same rename (Linux
    renameat2 RENAME_EXCHANGE) and ends at ``new``. Without that rename it is first moved to ``aside``:
    for the moment between the two renames ``path`` is missing (the old version is at ``aside``)."""
    if not (new.is_dir() and os.path.lexists(path) and path.is_dir()):
        os.replace(new, path)  # nothing there, or a file over a file: one rename already (a file over a folder fails)
    elif not _exchange(new, path):
        os.replace(path, aside)
        os.replace(new, path)


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temporary folders of writes to ``path`` whose writer is gone (killed mid-write)."""
    # mkdtemp's random part is [a-z0-9_]; names written before they carried the pid lack "PID-".
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(?:(\d+)-)?[a-z0-9_]+\.tmp")
    removed = []
    for scratch in sorted(path.parent.iterdir()):
        named = pattern.fullmatch(scratch.name)
        if named is None or not scratch.is_dir() or _writer_alive(scratch, named.group(1)):
            continue
        shutil.rmtree(scratch, ignore_errors=True)
        removed.append(scratch)
    return removed


def _writer_alive(scratch: Path, pid: str | None) -> bool:
    """Whether the process that made ``scratch`` (``pid``, from its name) may still be writing."""
    if pid is None:  # written before names carried the pid: stale once old enough
        try:
            return time.time() - scratch.stat().st_mtime < ORPHAN_SECONDS
        except OSError:
            return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # another user's process, or a pid this system cannot signal: leave it alone
    return True


def _exchange(first: Path, second: Path) -> bool:
    """Swap two existing paths in one rename; False where the system or file system has no such rename."""
    import ctypes

    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # not Linux, or glibc < 2.28
        return False
    renameat2.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint)
    at_current_folder, rename_exchange = -100, 2
    if renameat2(at_current_folder, os.fsencode(first), at_current_folder, os.fsencode(second), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(first), None, str(second))
