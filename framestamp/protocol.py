"""What a framestamp server takes and answers: one question about one clip per request.

`framestamp serve` (PyTriton), the model repository `framestamp triton-repo` writes for a Triton
fleet, and `framestamp.client` all read the tensor names, types and shapes from here. Needs NumPy
and the runtime only.

A request holds ``task`` and, as the task needs, ``text`` (the word, the event label or the
transcript) and ``occurrence``; its audio is either ``audio`` (a file's bytes: wav, flac, ogg, ...)
or ``pcm`` (float samples) with ``rate``. A response holds ``times``, ``confidence``, ``ends``,
``words`` (a transcript's, as written) and ``warnings``, each left out when empty. A question the
runtime refuses (unreadable audio, an unknown event label, a missing field) is answered with its
one-line reason in ``error`` alone, so that one bad request does not fail the others batched with it.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from framestamp.runtime.errors import InputError
from framestamp.runtime.prompts import TASKS

MODEL_NAME = "framestamp"


@dataclass(frozen=True)
class Tensor:
    """One input or output of the served model, as Triton's model configuration names it."""

    name: str
    datatype: str  # Triton's name: BYTES, FP32, INT32
    dims: tuple[int, ...]  # per request, without the batch dimension; -1 is any length
    optional: bool = False


INPUTS = (
    Tensor("task", "BYTES", (1,)),
    Tensor("text", "BYTES", (1,), optional=True),  # word | event label | transcript
    Tensor("occurrence", "INT32", (1,), optional=True),  # k-th occurrence, or the k-th speaker; default 1
    Tensor("audio", "BYTES", (1,), optional=True),  # an audio file's bytes
    Tensor("pcm", "FP32", (-1,), optional=True),  # or float samples in [-1, 1], mono
    Tensor("rate", "INT32", (1,), optional=True),  # the samples' rate, with pcm
)
OUTPUTS = (
    Tensor("times", "FP32", (-1,)),
    Tensor("confidence", "FP32", (-1,)),
    Tensor("ends", "FP32", (-1,)),
    Tensor("words", "BYTES", (-1,)),
    Tensor("warnings", "BYTES", (-1,)),
    Tensor("error", "BYTES", (1,)),
)
NUMPY_TYPES = {"BYTES": np.object_, "FP32": np.float32, "INT32": np.int32}
TEXT_FIELD = {"word": "word", "event": "event", "transcript": "transcript"}  # the prompt field ``text`` fills


def query_fields(task: str, text: str | None, occurrence: int | None) -> dict:
    """The Locator's prompt fields for a request's question; refuses a question that is not whole."""
    if task not in TASKS:
        raise InputError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    if task in TEXT_FIELD and not text:
        raise InputError(f"a {task} question needs text (the {'event label' if task == 'event' else task})")
    if task == "speaker" and text:
        raise InputError("a speaker question takes no text: occurrence says which speaker")
    if task == "transcript":
        if occurrence is not None:
            raise InputError("a transcript question asks about every word; leave occurrence out")
        return {"transcript": text}
    fields = {"occurrence": 1 if occurrence is None else occurrence}
    if task in TEXT_FIELD:
        fields[TEXT_FIELD[task]] = text
    return fields


def read_request(inputs: dict[str, np.ndarray], scratch: Path):
    """A request's tensors (each with its batch dimension of 1) -> the Locator's Query.

    Audio bytes are written to a file in ``scratch`` so they are read exactly as ``framestamp
    locate`` reads a file (including its checks for cut-short files).
    """
    from framestamp.runtime.locator import Query

    task = _text(inputs, "task")
    fields = query_fields(task, _text(inputs, "text"), _integer(inputs, "occurrence"))
    has_audio, has_pcm = "audio" in inputs, "pcm" in inputs
    if has_audio == has_pcm:
        raise InputError("send the audio once: either audio (a file's bytes) or pcm with rate")
    if has_audio:
        if "rate" in inputs:
            raise InputError("rate goes with pcm; an audio file carries its own")
        data = inputs["audio"].reshape(-1)[0]
        if not isinstance(data, bytes) or not data:
            raise InputError("audio is empty; send a file's bytes (wav, flac, ogg, ...)")
        descriptor, path = tempfile.mkstemp(suffix=".audio", dir=scratch)
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        return Query(path, task, fields)
    rate = _integer(inputs, "rate")
    if rate is None:
        raise InputError("pcm needs its sample rate: send rate (Hz)")
    return Query(np.asarray(inputs["pcm"], dtype=np.float32).reshape(-1), task, fields, rate=rate)


def answer_tensors(answer) -> dict[str, np.ndarray]:
    """A Timestamps, or the InputError that refused the question -> the response's tensors (batch of 1).

    Empty outputs are left out of the response (PyTriton 0.7 cannot send an empty tensor): no
    ``warnings`` means none, and ``error`` is there only when the question was refused.
    """
    if isinstance(answer, Exception):
        return {"error": _strings([str(answer)])}
    tensors = {
        "times": np.asarray(answer.times, dtype=np.float32).reshape(1, -1),
        "confidence": np.asarray(answer.confidence, dtype=np.float32).reshape(1, -1),
        "ends": np.asarray(answer.ends, dtype=np.float32).reshape(1, -1),
        "words": _strings(answer.words or ()),
        "warnings": _strings(answer.warnings),
    }
    return {name: tensor for name, tensor in tensors.items() if tensor.size}


def _strings(values) -> np.ndarray:
    return np.array([[value.encode("utf-8") for value in values]], dtype=np.bytes_).reshape(1, -1)


def _text(inputs: dict[str, np.ndarray], name: str) -> str | None:
    if name not in inputs:
        if name == "task":
            raise InputError(f"the request has no task; send one of {', '.join(TASKS)}")
        return None
    value = inputs[name].reshape(-1)
    if value.size != 1:
        raise InputError(f"{name} holds {value.size} values; send one")
    value = value[0]
    try:
        return value.decode("utf-8") if isinstance(value, bytes) else str(value)
    except UnicodeDecodeError:
        raise InputError(f"{name} is not UTF-8 text") from None


def _integer(inputs: dict[str, np.ndarray], name: str) -> int | None:
    if name not in inputs:
        return None
    value = np.asarray(inputs[name]).reshape(-1)
    if value.size != 1:
        raise InputError(f"{name} holds {value.size} values; send one")
    return int(value[0])
