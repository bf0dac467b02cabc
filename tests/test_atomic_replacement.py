"""Replacing an artifact (or any folder written through atomic_path): a kill at any moment leaves the old
version or the new one, readers never find a mix or nothing, and killed writers' temporary folders are
removed (issue 12)."""

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import framestamp
from framestamp.runtime import Locator
from framestamp.runtime.artifact import SHIPPED_ARTIFACT, ArtifactError, GraphSessions, folder_version, read_manifest
from framestamp.runtime.files import _exchange, atomic_path, remove_stale_temporaries

PARTS = 5

# Writes folder TARGET holding PARTS files that all say VERSION, killing itself (SIGKILL) at PHASE.
WRITER = """
import os, signal, sys
from pathlib import Path
import framestamp.runtime.files as files

target, version, phase = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
die = lambda *args, **kwargs: os.kill(os.getpid(), signal.SIGKILL)
if phase == "cleanup":  # after the swap, while the old version is being removed
    files.shutil.rmtree = die
if phase == "between-renames":  # a system without an exchanging rename, killed between its two renames
    files._exchange = lambda first, second: False
    rename, done = os.replace, []
    def replace_then_die(source, destination):
        rename(source, destination)
        done.append(destination)
        if len(done) == 1:
            die()
    files.os.replace = replace_then_die
with files.atomic_path(target) as folder:
    folder.mkdir()
    for part in range(int(sys.argv[4])):
        (folder / f"part{part}").write_text(version)
        if phase == "writing" and part == 2:
            die()
"""


def write_version(target: Path, version: str, phase: str = "complete") -> int:
    done = subprocess.run([sys.executable, "-c", WRITER, str(target), version, phase, str(PARTS)], timeout=60)
    return done.returncode


def versions(folder: Path) -> set[str]:
    """The versions the folder's files say, if it holds all PARTS of them."""
    files = sorted(folder.iterdir())
    assert [file.name for file in files] == [f"part{part}" for part in range(PARTS)]
    return {file.read_text() for file in files}


def temporaries(target: Path) -> list[str]:
    return sorted(path.name for path in target.parent.iterdir() if path.name.startswith(f".{target.name}."))


@pytest.mark.parametrize("phase, left", [("writing", "old"), ("cleanup", "new")])
def test_a_kill_while_replacing_leaves_the_old_or_the_new_folder_whole(tmp_path, phase, left):
    target = tmp_path / "artifact"
    assert write_version(target, "old") == 0
    assert write_version(target, "new", phase) == -signal.SIGKILL
    assert versions(target) == {left}
    assert len(temporaries(target)) == 1  # what the killed writer left

    assert write_version(target, "next") == 0  # the next complete write removes it
    assert versions(target) == {"next"} and temporaries(target) == []


def test_without_an_exchanging_rename_the_old_version_waits_aside(tmp_path):
    target = tmp_path / "artifact"
    assert write_version(target, "old") == 0
    assert write_version(target, "new", "between-renames") == -signal.SIGKILL
    # The one moment this fallback has no folder at the target: the old one is whole, aside.
    (aside,) = [tmp_path / name for name in temporaries(target)]
    assert not target.exists() and versions(aside / "previous") == {"old"}
    assert write_version(target, "next") == 0
    assert versions(target) == {"next"} and temporaries(target) == []


def test_a_reader_never_finds_nothing_or_a_mix_while_a_folder_is_replaced(tmp_path):
    target = tmp_path / "artifact"
    with atomic_path(target) as folder:
        folder.mkdir()
        for part in range(PARTS):
            (folder / f"part{part}").write_text("0")
    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    if not _exchange(tmp_path / "a", tmp_path / "b"):
        pytest.skip("this file system has no exchanging rename (renameat2 RENAME_EXCHANGE)")
    stop, seen, problems = threading.Event(), [], []

    def read():
        while not stop.is_set():
            version = folder_version(target)
            if version is None:
                problems.append("no folder at the target")
                continue
            try:
                found = {file.read_text() for file in target.iterdir()}
            except FileNotFoundError:  # the listing was of a version swapped out since
                found = None
            if folder_version(target) == version:  # the same version throughout: it must be whole
                if found is None or len(found) != 1:
                    problems.append(f"a mix: {found}")
                seen.append(found)

    reader = threading.Thread(target=read)
    reader.start()
    for version in range(1, 150):
        with atomic_path(target) as folder:
            folder.mkdir()
            for part in range(PARTS):
                (folder / f"part{part}").write_text(str(version))
    stop.set()
    reader.join()
    assert problems == [] and len(seen) > 10
    assert versions(target) == {"149"} and temporaries(target) == []


def test_only_the_temporaries_of_writers_that_are_gone_are_removed(tmp_path):
    target = tmp_path / "artifact"
    target.mkdir()
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(gone.stdout)
    names = {"dead": f".artifact.{dead_pid}-abc123.tmp", "alive": f".artifact.{os.getpid()}-def456.tmp",
             "old, no pid": ".artifact.gh78ij90.tmp", "recent, no pid": ".artifact.kl12mn34.tmp",
             "another target's": f".artifact.v2.{dead_pid}-op56.tmp"}
    for name in names.values():
        (tmp_path / name).mkdir()
    day_and_more = time.time() - 2 * 24 * 3600
    os.utime(tmp_path / names["old, no pid"], (day_and_more, day_and_more))
    removed = {path.name for path in remove_stale_temporaries(target)}
    assert removed == {names["dead"], names["old, no pid"]}


def test_framestamp_export_killed_midway_leaves_the_existing_artifact_whole(tmp_path):
    out = tmp_path / "out"
    shutil.copytree(SHIPPED_ARTIFACT, out)
    before = {path.name: path.read_bytes() for path in out.iterdir()}
    checkpoint = Path(framestamp.__file__).parent / "models" / "omni-tiny-synth"
    export = subprocess.Popen([sys.executable, "-m", "framestamp", "export", str(checkpoint), str(out)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not temporaries(out) and export.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert temporaries(out), "the export never started writing"
    finally:
        export.send_signal(signal.SIGKILL)
        export.wait()
    read_manifest(out, verify=True)  # still a whole, verifiable artifact: the old one
    assert {path.name: path.read_bytes() for path in out.iterdir()} == before


def test_a_locator_refuses_an_artifact_replaced_while_it_was_opening(tmp_path, monkeypatch):
    artifact = tmp_path / "artifact"
    shutil.copytree(SHIPPED_ARTIFACT, artifact)
    Locator(artifact)  # opens: nothing replaced it
    real_open = GraphSessions.open

    def open_then_replace(*args, **kwargs):
        sessions = real_open(*args, **kwargs)
        with atomic_path(artifact) as folder:  # an export finishing meanwhile
            shutil.copytree(SHIPPED_ARTIFACT, folder)
        return sessions

    monkeypatch.setattr(GraphSessions, "open", open_then_replace)
    with pytest.raises(ArtifactError, match="was replaced .* while it was being opened"):
        Locator(artifact)
