"""The runtime: NumPy decoding and metrics now; features and the ONNX/TensorRT runner later.

This package is the floor: it imports nothing from the rest of framestamp and never imports torch
or transformers.
"""

from framestamp.runtime.errors import FramestampError, InputError, ManifestError
from framestamp.runtime.frames import FRAME_SECONDS, SAMPLE_RATE
