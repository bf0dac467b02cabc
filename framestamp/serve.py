"""Serve an artifact with NVIDIA Triton Inference Server (through PyTriton): HTTP, gRPC, metrics, dynamic batching.

    framestamp serve                                       # the shipped model on 127.0.0.1:8000 (HTTP), :8001 (gRPC), :8002 (metrics)
    framestamp serve out/fp32 --max-batch 16 --queue-delay-us 5000 --instances 2 --host 0.0.0.0

Triton's dynamic batcher gathers requests for up to --queue-delay-us and hands them to a model instance
as one batch; the instance answers all of them with one Locator.run (one forward pass per batch).
Health (/v2/health/live, /v2/health/ready) and Prometheus metrics (:8002/metrics) are Triton's own.
SIGTERM or Ctrl-C stops taking requests, answers those in flight, then exits. The request and
response tensors are described in framestamp/protocol.py; framestamp.client speaks them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from framestamp.runtime.decoding import DECODINGS

STARTS = 3  # tries to bring Triton up with the model loaded (see start_triton)
from framestamp.runtime.artifact import SHIPPED, artifact_folder


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("artifact", type=artifact_folder, nargs="?", default=SHIPPED,
                        help="artifact folder from `framestamp export` (default: the shipped model's)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only; "
                        "0.0.0.0 for every interface)")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002, help="Prometheus metrics at /metrics")
    parser.add_argument("--max-batch", type=int, default=16, help="most requests answered in one forward pass (default 16)")
    parser.add_argument("--queue-delay-us", type=int, default=5000, metavar="US",
                        help="how long the dynamic batcher waits to fill a batch, in microseconds (default 5000)")
    parser.add_argument("--instances", type=int, default=2, help="model instances answering batches in parallel (default 2)")
    parser.add_argument("--threads", type=int, help="ONNX Runtime threads per instance (default: CPU cores / instances)")
    parser.add_argument("--providers", default="CPUExecutionProvider", help="ONNX Runtime providers, comma-separated")
    parser.add_argument("--decoding", choices=DECODINGS, default="ordered")
    parser.add_argument("--exit-timeout", type=int, default=30, metavar="S",
                        help="on SIGTERM, how long to wait for requests in flight (default 30 s)")


def run(args: argparse.Namespace) -> int:
    from framestamp.protocol import MODEL_NAME
    from framestamp.runtime.locator import Locator

    check_arguments(args)
    triton_modules = _import_pytriton()
    threads = args.threads or max(1, (os.cpu_count() or 1) // args.instances)
    instances = [LocatorModel(Locator(args.artifact, providers=tuple(args.providers.split(",")), threads=threads,
                                      batch_size=args.max_batch, decoding=args.decoding))
                 for _ in range(args.instances)]
    use_own_libpython()
    Triton, TritonConfig, ModelConfig, DynamicBatcher = triton_modules
    config = TritonConfig(http_address=args.host, http_port=args.http_port, grpc_address=args.host,
                          grpc_port=args.grpc_port, metrics_port=args.metrics_port, exit_timeout_secs=args.exit_timeout,
                          log_verbose=0)
    model_config = ModelConfig(max_batch_size=args.max_batch,
                               batcher=DynamicBatcher(max_queue_delay_microseconds=args.queue_delay_us))
    # SIGTERM (a service manager's stop) takes the same path as Ctrl-C: Triton drains requests in flight.
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        triton, running = start_triton(Triton, config, model_config, instances)
    except KeyboardInterrupt:
        return 0
    with running:
        print(f"framestamp serve: ready: model {MODEL_NAME!r} on HTTP {args.host}:{args.http_port}, gRPC "
              f"{args.host}:{args.grpc_port}, metrics {args.host}:{args.metrics_port}/metrics; max batch {args.max_batch}, "
              f"queue delay {args.queue_delay_us} us, {args.instances} instance(s)", file=sys.stderr, flush=True)
        try:
            triton.serve()
        except KeyboardInterrupt:
            pass
    print("framestamp serve: stopped", file=sys.stderr, flush=True)
    return 0


def start_triton(Triton, config, model_config, instances):
    """Triton running with the model loaded, and the context that stops it; up to STARTS tries.

    PyTriton 0.7 loses a race on busy machines: each further model instance waits at most 1 s for
    the first one's handshake socket, and fails to load ("Timeout occurred while waiting for config
    file", or "Connection refused" between the socket's bind and listen) when the first starts slower.
    """
    from contextlib import ExitStack

    from framestamp.protocol import MODEL_NAME
    from framestamp.runtime.errors import FramestampError

    inputs, outputs = pytriton_tensors()
    for attempt in range(1, STARTS + 1):
        running = ExitStack()
        try:
            triton = running.enter_context(Triton(config=config))
            triton.bind(model_name=MODEL_NAME, infer_func=instances, inputs=inputs, outputs=outputs, config=model_config)
            triton.run()
            return triton, running
        except Exception as error:  # noqa: BLE001 (PyTriton and tritonclient raise several kinds for a failed load)
            running.close()
            reason = (str(error).strip().splitlines() or [type(error).__name__])[0][:300]
            if attempt == STARTS:
                raise FramestampError(f"Triton could not load the model ({reason})") from None
            print(f"framestamp serve: Triton could not load the model ({reason}); starting again "
                  f"({attempt + 1} of {STARTS})", file=sys.stderr, flush=True)
            time.sleep(2.0 * attempt)  # a load spike on the machine may pass
        except BaseException:
            running.close()
            raise


class LocatorModel:
    """One model instance: a batch of requests -> one Locator.run -> one response each.

    PyTriton 0.7 can only fail a whole batch, so a refused question is answered in its own ``error``
    output and the rest of its batch is answered as usual.
    """

    def __init__(self, locator):
        self.locator = locator

    def __call__(self, requests) -> list[dict]:
        from framestamp.answers import answer_each
        from framestamp.protocol import answer_tensors, read_request
        from framestamp.runtime.errors import InputError

        scratch = Path(tempfile.mkdtemp(prefix="framestamp-serve-", dir=_scratch_root()))
        try:
            queries = []
            for request in requests:
                try:
                    queries.append(read_request(dict(request.items()), scratch))
                except InputError as error:
                    queries.append(error)
            return [answer_tensors(_without_paths(answer, scratch)) for answer in answer_each(self.locator, queries)]
        finally:
            shutil.rmtree(scratch, ignore_errors=True)


def pytriton_tensors():
    """The protocol's inputs and outputs as PyTriton declares them."""
    import numpy as np
    from pytriton.model_config import Tensor

    from framestamp.protocol import INPUTS, OUTPUTS

    dtypes = {"BYTES": bytes, "FP32": np.float32, "INT32": np.int32}

    def declare(tensors):
        return [Tensor(name=t.name, dtype=dtypes[t.datatype], shape=t.dims, optional=t.optional) for t in tensors]
    return declare(INPUTS), declare(OUTPUTS)


def use_own_libpython() -> None:
    """Make Triton's Python-backend stub load this interpreter's libpython.

    The stub in nvidia-pytriton's wheel links libpython3.X.so by name; where the system has its own
    libpython of that version (Debian's 3.11.2 beside a pyenv 3.11.7), it would load that one and fail
    in the model's initialize with errors like "'_thread.RLock' object has no attribute
    '_recursion_count'". Triton passes LD_LIBRARY_PATH on to the stub.
    """
    library_folder = sysconfig.get_config_var("LIBDIR")
    current = os.environ.get("LD_LIBRARY_PATH", "")
    if library_folder and library_folder not in current.split(":"):
        os.environ["LD_LIBRARY_PATH"] = ":".join(part for part in (library_folder, current) if part)


def check_arguments(args: argparse.Namespace) -> None:
    from framestamp.runtime.errors import InputError

    for name in ("max_batch", "instances", "threads"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {value}")
    if args.queue_delay_us < 0:
        raise InputError(f"--queue-delay-us must be >= 0, got {args.queue_delay_us}")
    ports = [args.http_port, args.grpc_port, args.metrics_port]
    if len(set(ports)) < 3:
        raise InputError(f"--http-port, --grpc-port and --metrics-port must differ, got {', '.join(map(str, ports))}")


def _import_pytriton():
    import numpy

    from framestamp.runtime.errors import FramestampError

    if int(numpy.__version__.split(".")[0]) >= 2:
        # Measured: under numpy 2 the stub hands the model zeros for every input, and no error.
        raise FramestampError(f"PyTriton 0.7 needs numpy < 2 (this is {numpy.__version__}): its backend stub reads "
                              "requests as zeros under numpy 2; pip install 'framestamp[serve]' installs numpy 1.26")
    try:
        from pytriton.model_config import DynamicBatcher, ModelConfig
        from pytriton.triton import Triton, TritonConfig
    except ImportError:
        raise FramestampError("`framestamp serve` needs PyTriton: pip install 'framestamp[serve]'") from None
    return Triton, TritonConfig, ModelConfig, DynamicBatcher


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def _scratch_root() -> str | None:
    """Request audio is written to memory where the system offers a RAM-backed folder."""
    return "/dev/shm" if os.access("/dev/shm", os.W_OK) else None


def _without_paths(answer, scratch: Path):
    """An error about a request's audio names "audio", not the scratch file it was written to."""
    from framestamp.runtime.errors import InputError

    if isinstance(answer, InputError):
        message = str(answer)
        for path in sorted(scratch.glob("*"), key=lambda p: -len(str(p))):
            message = message.replace(str(path), "audio")
        return InputError(message)
    return answer
