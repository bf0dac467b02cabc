"""Ask a framestamp server (`framestamp serve`, or a fleet's `framestamp triton-repo`) over HTTP or gRPC.

    from framestamp.client import Client
    client = Client("localhost:8000")                     # or Client("localhost:8001", protocol="grpc")
    client.wait_ready()
    answer = client.word("clip.wav", "budget", occurrence=2)   # .times, .confidence, .warnings
    words = client.transcript(samples, "we approved the budget", rate=44_100)   # a NumPy array and its rate

Audio is a path (its bytes are sent: any format the runtime reads), bytes, or a float array with its
rate. A question the server refuses raises RequestError with the server's one-line reason. Needs
tritonclient only (pip install 'framestamp[client]'), not the runtime's models.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from framestamp.protocol import INPUTS, MODEL_NAME, OUTPUTS
from framestamp.runtime.errors import InputError


class RequestError(InputError):
    """The server refused the question (unreadable audio, an unknown label, a missing field, ...)."""


@dataclass(frozen=True)
class Answer:
    """What the server answered: sorted times in seconds, each one's confidence, interval ends where
    the model gives them, a transcript's words, and warnings when an answer is probably a guess."""

    times: tuple[float, ...]
    confidence: tuple[float, ...]
    ends: tuple[float, ...] = ()
    words: tuple[str, ...] | None = None
    warnings: tuple[str, ...] = ()


class Client:
    """One connection to a server; ``protocol`` is "http" (port 8000 by default) or "grpc" (8001)."""

    def __init__(self, url: str = "localhost:8000", protocol: str = "http", model: str = MODEL_NAME,
                 timeout: float = 120.0):
        if protocol not in ("http", "grpc"):
            raise InputError(f"protocol must be 'http' or 'grpc', got {protocol!r}")
        try:
            if protocol == "http":
                import tritonclient.http as triton
            else:
                import tritonclient.grpc as triton
        except ImportError:
            raise InputError("framestamp.client needs tritonclient: pip install 'framestamp[client]'") from None
        self.triton, self.protocol, self.model, self.timeout = triton, protocol, model, timeout
        options = {"connection_timeout": timeout, "network_timeout": timeout} if protocol == "http" else {}
        self.connection = triton.InferenceServerClient(url, **options)

    def ready(self) -> bool:
        """Whether the server is up and the model loaded (Triton's readiness)."""
        try:
            return bool(self.connection.is_server_ready() and self.connection.is_model_ready(self.model))
        except Exception:  # noqa: BLE001 (a server not up yet refuses the connection in several ways)
            return False

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                raise TimeoutError(f"the framestamp server was not ready within {timeout:g} s")
            time.sleep(0.2)

    def close(self) -> None:
        self.connection.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exception) -> None:
        self.close()

    # ------------------------------------------------------------------------------ questions
    def word(self, audio, word: str, occurrence: int = 1, rate: int | None = None) -> Answer:
        return self.ask(audio, "word", word, occurrence, rate)

    def speaker(self, audio, k: int = 1, rate: int | None = None) -> Answer:
        return self.ask(audio, "speaker", None, k, rate)

    def event(self, audio, label: str, occurrence: int = 1, rate: int | None = None) -> Answer:
        return self.ask(audio, "event", label, occurrence, rate)

    def transcript(self, audio, text: str, rate: int | None = None) -> Answer:
        return self.ask(audio, "transcript", text, None, rate)

    def ask(self, audio, task: str, text: str | None = None, occurrence: int | None = None,
            rate: int | None = None) -> Answer:
        """One request: the task, its text and occurrence, and the audio (path, bytes or array + rate)."""
        values = {"task": task, "text": text, "occurrence": occurrence, **_audio_values(audio, rate)}
        return self.send({name: value for name, value in values.items() if value is not None})

    def send(self, values: dict) -> Answer:
        """A request of raw input values (a subset of the protocol's inputs) -> the Answer."""
        declared = {tensor.name: tensor for tensor in INPUTS}
        inputs = []
        for name, value in values.items():
            tensor = declared.get(name)
            if tensor is None:
                raise InputError(f"the server takes no input {name!r}; it takes {', '.join(declared)}")
            array = _as_array(tensor, value)
            one = self.triton.InferInput(name, list(array.shape), tensor.datatype)
            one.set_data_from_numpy(array, **({"binary_data": True} if self.protocol == "http" else {}))
            inputs.append(one)
        options = {"binary_data": True} if self.protocol == "http" else {}
        outputs = [self.triton.InferRequestedOutput(tensor.name, **options) for tensor in OUTPUTS]
        result = self.connection.infer(self.model, inputs, outputs=outputs,
                                       **({"timeout": int(self.timeout)} if self.protocol == "http" else
                                          {"client_timeout": self.timeout}))
        error = _strings(result.as_numpy("error"))  # outputs with nothing in them are left out of a response
        if error:
            raise RequestError(error[0])
        words = tuple(_strings(result.as_numpy("words")))
        return Answer(times=_floats(result.as_numpy("times")), confidence=_floats(result.as_numpy("confidence")),
                      ends=_floats(result.as_numpy("ends")), words=words if values.get("task") == "transcript" else None,
                      warnings=tuple(_strings(result.as_numpy("warnings"))))


def _audio_values(audio, rate: int | None) -> dict:
    if isinstance(audio, (str, Path)):
        if rate is not None:
            raise InputError("rate is for arrays; a file carries its own")
        path = Path(audio)
        if not path.is_file():
            raise InputError(f"{path}: no such audio file")
        return {"audio": path.read_bytes()}
    if isinstance(audio, (bytes, bytearray)):
        if rate is not None:
            raise InputError("rate is for arrays; audio bytes carry their own")
        return {"audio": bytes(audio)}
    if isinstance(audio, np.ndarray):
        if rate is None:
            raise InputError("an audio array needs its sample rate: pass rate=")
        if audio.dtype.kind != "f" or audio.ndim not in (1, 2):
            raise InputError(f"send float samples in [-1, 1] as a (samples,) or (samples, channels) array, got "
                             f"{audio.dtype} of shape {audio.shape} (divide 16-bit PCM by 32768)")
        samples = audio.astype(np.float32)
        if samples.ndim == 2:  # downmixed as the runtime downmixes
            samples = samples @ np.full(samples.shape[1], 1.0 / samples.shape[1], dtype=np.float32)
        return {"pcm": samples, "rate": rate}
    raise InputError(f"audio must be a file path, bytes or a NumPy array, got {type(audio).__name__}")


def _as_array(tensor, value) -> np.ndarray:
    """One request's value as a batch of one, typed as the protocol declares it."""
    if tensor.datatype == "BYTES":
        data = value.encode("utf-8") if isinstance(value, str) else bytes(value)
        return np.array([[data]], dtype=np.object_)
    if tensor.datatype == "INT32":
        return np.array([[value]], dtype=np.int32)
    return np.asarray(value, dtype=np.float32).reshape(1, -1)


def _floats(array) -> tuple[float, ...]:
    return () if array is None else tuple(float(value) for value in np.asarray(array).reshape(-1))


def _strings(array) -> list[str]:
    if array is None:
        return []
    return [value.decode("utf-8") if isinstance(value, bytes) else str(value) for value in np.asarray(array).reshape(-1)]
