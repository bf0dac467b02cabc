"""Make a bare machine ready for the GPU kit: carried wheels, espeak-ng, and framestamp importable.

    python3 benchmarks/gpu/bootstrap.py [--kit .gpukit] [--site /tmp/framestamp-site] -- -m framestamp gpu-kit run

The GPU machine has no framestamp installed and no network, so this runs before framestamp can be
imported and uses the standard library only. Into SITE it
- installs the kit's wheels (pip --no-index --no-deps --target), when they were built for this Python;
- unpacks the kit's .deb files with `dpkg -x` into SITE/debs (never into /) and links into SITE/lib
  the shared libraries this system lacks, plus espeak-ng's own, so that LD_LIBRARY_PATH=SITE/lib and
  ESPEAK_DATA_PATH=SITE/debs/usr/lib/x86_64-linux-gnu let data/espeak.py load the carried espeak-ng;
- lays out SITE/framestamp as pyproject.toml's package-dir maps it, as symbolic links to this
  checkout's folders (what an editable install does), so PYTHONPATH=SITE imports this very tree.
It writes what it did to SITE/bootstrap.json. Given arguments after `--` it then replaces itself
with `python3 ARGUMENTS` in that environment, working in SITE: the loader reads LD_LIBRARY_PATH only
when a process starts, so the run must be a new process, and `python -m` puts the working folder
first on sys.path, where the checkout's bare framestamp/ folder would shadow SITE/framestamp.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parents[2]
DEFAULT_KIT = REPOSITORY / ".gpukit"
DEFAULT_SITE = Path("/tmp/framestamp-site")
RECORD_VARIABLE = "FRAMESTAMP_GPUKIT_BOOTSTRAP"  # set in the prepared environment: SITE/bootstrap.json
# Linked from the kit even where the system has them, so the carried espeak-ng is the one that runs.
ESPEAK_LIBRARIES = ("libespeak-ng.so.1", "libpcaudio.so.0", "libsonic.so.0")
LIBRARY_FOLDERS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu/pulseaudio")


def kit_description(kit: Path) -> dict:
    path = kit / "kit.json"
    return json.loads(path.read_text()) if path.is_file() else {}


def install_wheels(kit: Path, site: Path) -> dict:
    """The kit's wheels into ``site``; skipped (with the reason) when they target another Python."""
    wheels = sorted((kit / "wheels").glob("*.whl"))
    if not wheels:
        return {"installed": [], "note": f"no wheels in {kit / 'wheels'}"}
    wanted = kit_description(kit).get("python")
    here = f"{sys.version_info.major}.{sys.version_info.minor}"
    if wanted and wanted != here:
        return {"installed": [], "note": f"the kit's wheels are for Python {wanted}, this is {here}: not installed"}
    command = [sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
               "--no-cache-dir", "--upgrade", "--disable-pip-version-check", "--target", str(site)]
    result = subprocess.run(command + [str(wheel) for wheel in wheels], capture_output=True, text=True)
    if result.returncode:
        return {"installed": [], "error": (result.stderr or result.stdout).strip()[-2000:]}
    return {"installed": [wheel.name for wheel in wheels]}


def system_libraries() -> set[str] | None:
    """Sonames the system's loader finds on its own (``ldconfig -p``); None if that cannot be read."""
    for ldconfig in ("ldconfig", "/sbin/ldconfig", "/usr/sbin/ldconfig"):
        try:
            listing = subprocess.run([ldconfig, "-p"], capture_output=True, text=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            continue
        return {line.split()[0] for line in listing.splitlines()[1:] if line.strip()}
    return None


def unpack_debs(kit: Path, site: Path) -> dict:
    """``dpkg -x`` every carried .deb into SITE/debs and link what the system lacks into SITE/lib."""
    debs = sorted((kit / "debs").glob("*.deb"))
    if not debs:
        return {"unpacked": [], "note": f"no .deb files in {kit / 'debs'}: espeak-ng must be installed here"}
    root, lib = site / "debs", site / "lib"
    for folder in (root, lib):
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
    for deb in debs:
        result = subprocess.run(["dpkg", "-x", str(deb), str(root)], capture_output=True, text=True)
        if result.returncode:
            return {"unpacked": [], "error": f"dpkg -x {deb.name}: {result.stderr.strip()}"}
    known = system_libraries()
    linked, from_system = [], []
    for folder in LIBRARY_FOLDERS:
        entries = sorted((root / folder).glob("lib*.so*"))
        # The loader asks for sonames: libfoo.so.1 (a link to libfoo.so.1.2.3, which needs no link of
        # its own) or, rarely, a real file such as libpulsecommon-16.1.so.
        named = {path.resolve() for path in entries if path.is_symlink()}
        for path in entries:
            name = path.name
            if not path.is_symlink() and path.resolve() in named:
                continue
            if name in ESPEAK_LIBRARIES or known is None or name not in known:
                if not (lib / name).exists():
                    (lib / name).symlink_to(path)
                    linked.append(name)
            else:
                from_system.append(name)
    data = root / "usr/lib/x86_64-linux-gnu"
    return {"unpacked": [deb.name for deb in debs], "linked": linked, "from_system": from_system,
            "library_path": str(lib), "espeak_data_path": str(data) if (data / "espeak-ng-data").is_dir() else None}


def package_dirs(repository: Path) -> dict[str, str]:
    """pyproject.toml's [tool.setuptools.package-dir]: package name -> folder."""
    import tomllib

    with open(repository / "pyproject.toml", "rb") as handle:
        return tomllib.load(handle)["tool"]["setuptools"]["package-dir"]


def lay_out_package(repository: Path, site: Path) -> dict:
    """SITE/framestamp: the framestamp folder's files, and each subpackage linked to its top-level folder."""
    mapping = package_dirs(repository)
    target = site / "framestamp"
    if target.is_symlink() or target.is_file():
        target.unlink()
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    for entry in (repository / mapping["framestamp"]).iterdir():
        if entry.name != "__pycache__":
            (target / entry.name).symlink_to(entry)
    linked = {}
    for package, folder in sorted(mapping.items()):
        parts = package.split(".")
        if len(parts) == 2:
            (target / parts[1]).symlink_to(repository / folder)
            linked[package] = folder
        elif len(parts) > 2 and Path(mapping[".".join(parts[:-1])]) / parts[-1] != Path(folder):
            raise SystemExit(f"bootstrap: {package} maps to {folder}, not inside its parent's folder; "
                             "lay_out_package links top-level folders only")
    return {"package": str(target), "subpackages": linked}


def prepare(kit: Path, site: Path, repository: Path = REPOSITORY) -> tuple[dict, dict]:
    """Set ``site`` up; returns (the record written to SITE/bootstrap.json, the environment to run in)."""
    started = time.monotonic()
    site.mkdir(parents=True, exist_ok=True)
    record = {"kit": str(kit), "kit_description": kit_description(kit), "site": str(site),
              "python": sys.version.split()[0], "executable": sys.executable,
              "wheels": install_wheels(kit, site), "debs": unpack_debs(kit, site),
              "framestamp": lay_out_package(repository, site)}
    environment = {"PYTHONPATH": os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
                   RECORD_VARIABLE: str(site / "bootstrap.json"), "PYTHONUNBUFFERED": "1"}
    if record["debs"].get("library_path"):
        environment["LD_LIBRARY_PATH"] = os.pathsep.join(
            filter(None, [record["debs"]["library_path"], os.environ.get("LD_LIBRARY_PATH")]))
    if record["debs"].get("espeak_data_path"):
        environment["ESPEAK_DATA_PATH"] = record["debs"]["espeak_data_path"]
    record["environment"] = environment
    record["seconds"] = round(time.monotonic() - started, 2)
    (site / "bootstrap.json").write_text(json.dumps(record, indent=2) + "\n")
    return record, environment


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    then = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="bootstrap.py", description=__doc__.strip().splitlines()[0])
    parser.add_argument("--kit", type=Path, default=DEFAULT_KIT, help=f"the prepared kit (default {DEFAULT_KIT})")
    parser.add_argument("--site", type=Path, default=DEFAULT_SITE, help=f"folder to set up (default {DEFAULT_SITE})")
    args = parser.parse_args(own)
    record, environment = prepare(args.kit.resolve(), args.site.resolve())
    for part in ("wheels", "debs"):
        problem = record[part].get("error") or record[part].get("note")
        done = record[part].get("installed") or record[part].get("unpacked") or []
        print(f"bootstrap: {part}: {len(done)} from the kit" + (f" ({problem})" if problem else ""), flush=True)
    print(f"bootstrap: framestamp importable from {args.site} ({record['seconds']} s)", flush=True)
    if not then:
        return 0
    restart(site=args.site.resolve(), environment=environment, arguments=then)


def restart(site: Path, environment: dict, arguments: list[str]) -> None:
    """Become ``python3 ARGUMENTS`` in the prepared environment, working in SITE.

    Not in the checkout: `python -m` puts the working folder first on sys.path, and the checkout's
    own framestamp/ folder (without its subpackages) would shadow the package laid out in SITE.
    """
    os.chdir(site)
    os.execve(sys.executable, [sys.executable, *arguments], {**os.environ, **environment})


if __name__ == "__main__":
    raise SystemExit(main())
