"""framestamp: frame-level timestamps from audio language models.

The subpackages live in the repository's top-level folders:
``framestamp.runtime`` (NumPy decoding, features, the torch-free runtime), ``framestamp.data``
(manifests, synthetic data, real-dataset loaders), ``framestamp.training``, ``framestamp.export``,
``framestamp.calibration`` and ``framestamp.benchmarks``.
"""

__version__ = "0.1.0"
