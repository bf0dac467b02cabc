"""First contact: `framestamp locate` starts without the toolkit's heavy modules, and the shipped model is
reachable by name from any folder (issue 12). Its speed is measured by benchmarks/cold_start.py."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

import framestamp
from framestamp.cli import chosen_subcommand

SHIPPED = Path(framestamp.__file__).parent / "models" / "omni-tiny-synth-onnx"
RATE = 16_000

# Runs the CLI, then prints on stderr's last line which heavy modules the process holds.
LOCATE_AND_LIST_MODULES = """
import json, sys
from framestamp.cli import main
try:
    sys.exit(main(sys.argv[1:]))
finally:
    print(json.dumps(sorted({name.split(".")[0] for name in sys.modules})), file=sys.stderr)
"""
HEAVY = {"torch", "transformers", "onnx", "onnxscript", "polygraphy", "safetensors", "matplotlib"}


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("start") / "chirp.wav"
    t = np.arange(2 * RATE) / RATE
    soundfile.write(str(path), (0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t)).astype(np.float32), RATE)
    return path


def run_cli(arguments: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", LOCATE_AND_LIST_MODULES, *arguments], capture_output=True,
                          text=True, timeout=120, cwd=cwd)


def test_locate_answers_without_importing_torch_or_the_toolkit(clip, tmp_path):
    done = run_cli(["locate", str(clip), "--word", "dog"], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    imported = set(json.loads(done.stderr.strip().splitlines()[-1]))
    assert "onnxruntime" in imported  # the list is real: the runtime's own engine is there
    assert not imported & HEAVY, f"locate imported {sorted(imported & HEAVY)}"
    assert json.loads(done.stdout)["times"]


@pytest.mark.parametrize("argv, chosen", [
    (["locate", "clip.wav", "--word", "dog"], "locate"),
    (["--version"], None),
    ([], None),
    (["no-such-command"], None),
    (["bench", "latency"], "bench"),
])
def test_the_subcommand_is_the_first_word_that_is_not_an_option(argv, chosen):
    assert chosen_subcommand(argv) == chosen


# ------------------------------------------------------------------------------ the shipped model by name
FROM_ANOTHER_FOLDER = """
import json, sys
from framestamp.runtime import Locator
print(json.dumps([str(Locator(name).folder) for name in sys.argv[1:]] + [str(Locator().folder)]))
"""


def test_the_shipped_model_is_reachable_by_name_from_any_folder(tmp_path):
    done = subprocess.run([sys.executable, "-c", FROM_ANOTHER_FOLDER, "shipped"], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [Path(folder) for folder in json.loads(done.stdout)] == [SHIPPED, SHIPPED]


def test_locate_takes_the_shipped_model_by_name_and_a_path_is_still_a_path(clip, tmp_path, capsys, monkeypatch):
    from framestamp.cli import main

    assert main(["locate", str(clip), "--word", "dog", "--artifact", "shipped"]) == 0
    by_name = json.loads(capsys.readouterr().out)
    assert main(["locate", str(clip), "--word", "dog", "--artifact", str(SHIPPED)]) == 0
    assert json.loads(capsys.readouterr().out) == by_name
    # A folder called "shipped" is reached as ./shipped; here there is none, and that is what it says.
    monkeypatch.chdir(tmp_path)
    assert main(["locate", str(clip), "--word", "dog", "--artifact", "./shipped"]) == 2
    assert "shipped: no such artifact folder" in capsys.readouterr().err


# ------------------------------------------------------------------------------ a checkout without an install
# Python run from the repository root finds ./framestamp before any installed framestamp; here no install is
# on the path at all (-S: no site-packages, so no editable mapping), only the libraries the runtime needs.
FROM_THE_CHECKOUT = """
import sys
sys.path.append(sys.argv[1])  # numpy, onnxruntime, ... without their .pth files
import framestamp.runtime.locator, framestamp.benchmarks.gpu
print(framestamp.runtime.locator.__file__)
"""


def test_a_checkout_imports_its_subpackages_without_an_install():
    checkout = Path(framestamp.__file__).resolve().parent.parent
    libraries = str(Path(np.__file__).resolve().parent.parent)
    done = subprocess.run([sys.executable, "-S", "-c", FROM_THE_CHECKOUT, libraries], capture_output=True, text=True,
                          timeout=120, cwd=checkout)
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == checkout / "runtime" / "locator.py"


def test_the_checkout_folders_are_the_ones_pyproject_maps():
    import tomllib

    pyproject = tomllib.loads((Path(framestamp.__file__).resolve().parent.parent / "pyproject.toml").read_text())
    mapped = pyproject["tool"]["setuptools"]["package-dir"]
    top_level = {name.split(".")[1]: folder for name, folder in mapped.items() if name.count(".") == 1}
    assert framestamp.CHECKOUT_FOLDERS == top_level


def test_bench_latency_quick_is_described_alike_in_help_and_readme(capsys):
    from framestamp.benchmarks.latency import QUICK
    from framestamp.cli import main

    readme = (Path(framestamp.__file__).resolve().parent.parent / "README.md").read_text()
    quick_line = next(line for line in readme.splitlines() if line.startswith("framestamp bench latency --quick"))
    assert quick_line.split("#", 1)[1].strip() == QUICK
    with pytest.raises(SystemExit):
        main(["bench", "latency", "--help"])
    assert " ".join(QUICK.split()) in " ".join(capsys.readouterr().out.split())
