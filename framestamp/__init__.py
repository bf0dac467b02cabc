"""framestamp: frame-level timestamps from audio language models.

The subpackages live in the repository's top-level folders:
``framestamp.runtime`` (NumPy decoding, features, the torch-free runtime), ``framestamp.data``
(manifests, synthetic data, real-dataset loaders), ``framestamp.training``, ``framestamp.export``,
``framestamp.calibration`` and ``framestamp.benchmarks``.
"""

import importlib.abc
import importlib.util
import sys
from pathlib import Path

__version__ = "0.1.0"

# The subpackages and their folders in a source checkout: pyproject.toml's package-dir says the same.
CHECKOUT_FOLDERS = {"runtime": "runtime", "data": "data", "training": "training", "export": "export",
                    "calibration": "calibration", "benchmarks": "benchmarks"}


class _CheckoutFolders(importlib.abc.MetaPathFinder):
    """Finds ``framestamp.runtime`` and its siblings in a source checkout's top-level folders.

    An install (pip install . or -e .) maps them itself; this serves when framestamp is imported from
    a checkout without one, e.g. when Python run from the repository root finds ./framestamp before
    the installed package. It comes after every other finder, so an install's mapping wins.
    """

    def __init__(self, checkout: Path):
        self.checkout = checkout

    def find_spec(self, name, path=None, target=None):
        package, _, subpackage = name.partition(".")
        if package != __name__ or subpackage not in CHECKOUT_FOLDERS:
            return None
        folder = self.checkout / CHECKOUT_FOLDERS[subpackage]
        return importlib.util.spec_from_file_location(name, folder / "__init__.py",
                                                      submodule_search_locations=[str(folder)])


_checkout = Path(__file__).resolve().parent.parent
if (_checkout / "pyproject.toml").is_file() and (_checkout / "runtime" / "__init__.py").is_file():
    sys.meta_path.append(_CheckoutFolders(_checkout))
