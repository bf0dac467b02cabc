"""Load on `framestamp serve`: N concurrent clients, a fixed number of requests, dynamic batching on and off.

    python -m framestamp.benchmarks.serve_load [--clients 64 --requests 384] [--out benchmarks/results/cpu]
    framestamp bench serve-load --out benchmarks/results/cpu

Starts the server on localhost (127.0.0.1 only) once per setting (max batch 1, then --max-batch),
with the same instances and threads, sends every client's share of word questions about generated
clips (a file's bytes per request, over HTTP), and reports errors, p50/p99 latency and throughput.
Each run is bounded: a fixed request count, each request with a timeout.
"""

from __future__ import annotations

import argparse
import json
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from framestamp.benchmarks import machine_facts


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    for one in sockets:
        one.bind(("127.0.0.1", 0))
    ports = [one.getsockname()[1] for one in sockets]
    for one in sockets:
        one.close()
    return ports


@contextmanager
def running_server(folder: Path, *options: str, ready_within: float = 120.0):
    """`framestamp serve` in a subprocess on free localhost ports, yielded once ready, stopped with SIGTERM."""
    from framestamp.client import Client

    http, grpc, metrics = free_ports(3)
    log = Path(folder) / f"serve-{http}.log"
    with open(log, "w") as handle:
        process = subprocess.Popen(
            [sys.executable, "-m", "framestamp", "serve", "--host", "127.0.0.1", "--http-port", str(http),
             "--grpc-port", str(grpc), "--metrics-port", str(metrics), *options],
            stdout=handle, stderr=subprocess.STDOUT)
    server = {"process": process, "http": http, "grpc": grpc, "metrics": metrics, "log": log}
    try:
        with Client(f"127.0.0.1:{http}") as client:
            deadline = time.monotonic() + ready_within
            while not client.ready():
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.3)
        yield server
    finally:
        stop(process)


def stop(process: subprocess.Popen) -> int:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
    return process.wait()


def load(url: str, requests: list[dict], clients: int, timeout: float = 120.0) -> dict:
    """Send ``requests`` from ``clients`` threads at once (each a connection of its own); latencies and errors."""
    from framestamp.client import Client

    latencies: list[float] = []
    errors: list[str] = []
    next_index = iter(range(len(requests)))
    lock = threading.Lock()

    def client_loop() -> None:
        with Client(url, timeout=timeout) as client:
            while True:
                with lock:
                    index = next(next_index, None)
                if index is None:
                    return
                start = time.perf_counter()
                try:
                    client.send(requests[index])
                except Exception as error:  # noqa: BLE001 (every failure is counted, whatever its kind)
                    with lock:
                        errors.append(f"{type(error).__name__}: {str(error)[:200]}")
                    continue
                with lock:
                    latencies.append(time.perf_counter() - start)

    threads = [threading.Thread(target=client_loop) for _ in range(clients)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    milliseconds = 1e3 * np.asarray(latencies) if latencies else np.zeros(1)
    return {"requests": len(requests), "answered": len(latencies), "errors": len(errors),
            "error_examples": errors[:3], "seconds": wall, "requests_per_second": len(latencies) / wall,
            "p50_ms": float(np.percentile(milliseconds, 50)), "p99_ms": float(np.percentile(milliseconds, 99))}


def in_process(requests: list[dict], batch: int, folder: Path) -> float:
    """Questions per second of Locator.run alone (one thread) on ``batch`` requests at a time, in arrival
    order as the dynamic batcher would group them: what batching can gain before any serving cost."""
    from framestamp.runtime.locator import Locator, Query

    paths = {}
    for number, request in enumerate(requests):
        path = folder / f"request-{number}.flac"
        path.write_bytes(request["audio"])
        paths[number] = str(path)
    queries = [Query(paths[n], "word", {"word": r["text"], "occurrence": r["occurrence"]}) for n, r in enumerate(requests)]
    locator = Locator("shipped", threads=1, batch_size=batch)
    locator.run(queries[:batch])  # warm-up
    start = time.perf_counter()
    for first in range(0, len(queries), batch):
        locator.run(queries[first:first + batch])
    return len(queries) / (time.perf_counter() - start)


def word_requests(count: int, folder: Path, seed: int = 7) -> list[dict]:
    """``count`` word questions about freshly generated clips (3-6 s), as request values (a file's bytes)."""
    from framestamp.cli import main
    from framestamp.data.manifest import read_manifest

    clips = folder / "clips"
    if main(["synth", str(clips), "--tasks", "words", "--count", "16", "--seed", str(seed), "--voices",
             "en-029,en-us-nyc", "--min-seconds", "3", "--max-seconds", "6"]) != 0:
        raise RuntimeError("could not generate clips")
    examples = [e for e in read_manifest(clips / "manifest.jsonl") if e.task == "word"]
    audio = {e.audio: (clips / e.audio).read_bytes() for e in examples}
    return [{"task": "word", "text": e.prompt["word"], "occurrence": e.prompt["occurrence"], "audio": audio[e.audio]}
            for e in (examples[i % len(examples)] for i in range(count))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument("--requests", type=int, default=384, help="requests per run (default 384)")
    parser.add_argument("--max-batch", type=int, default=16, help="the batched runs' max batch (default 16)")
    parser.add_argument("--queue-delay-us", type=int, default=5000)
    parser.add_argument("--layouts", default="1x2,2x1", metavar="IxT,...",
                        help="model instances x ONNX Runtime threads each, one pair of runs per layout (default 1x2,2x1)")
    parser.add_argument("--out", type=Path, help="folder for serve_load.json and serve_load.md")
    args = parser.parse_args(argv)
    layouts = [tuple(int(n) for n in layout.split("x")) for layout in args.layouts.split(",")]
    rows = []
    with tempfile.TemporaryDirectory(prefix="framestamp-load-") as scratch:
        requests = word_requests(args.requests, Path(scratch))
        for instances, threads in layouts:
            for max_batch in (1, args.max_batch):
                options = ["--max-batch", str(max_batch), "--queue-delay-us", str(args.queue_delay_us),
                           "--instances", str(instances), "--threads", str(threads)]
                with running_server(Path(scratch), *options) as server:
                    url = f"127.0.0.1:{server['http']}"
                    load(url, requests[: args.clients], args.clients)  # warm-up, not counted
                    result = load(url, requests, args.clients)
                rows.append({"instances": instances, "threads_per_instance": threads, "max_batch": max_batch,
                             "queue_delay_us": args.queue_delay_us, "clients": args.clients, **result})
                print(f"{instances} instance(s) x {threads} thread(s), max batch {max_batch}: {result['answered']}/"
                      f"{result['requests']} answered, {result['errors']} errors, p50 {result['p50_ms']:.0f} ms, "
                      f"p99 {result['p99_ms']:.0f} ms, {result['requests_per_second']:.1f} req/s", flush=True)
        locator_alone = {batch: in_process(requests, batch, Path(scratch)) for batch in (1, args.max_batch)}
    print(f"Locator.run alone, one thread: {locator_alone[1]:.1f} questions/s at batch 1, "
          f"{locator_alone[args.max_batch]:.1f} at batch "
          f"{args.max_batch}", flush=True)
    header = ("| instances x threads | max batch | clients | requests | errors | p50 ms | p99 ms | requests/s | vs max batch 1 |\n"
              "|---|---|---|---|---|---|---|---|---|")
    lines = []
    for row in rows:
        unbatched = next(r for r in rows if r["max_batch"] == 1 and r["instances"] == row["instances"]
                         and r["threads_per_instance"] == row["threads_per_instance"])
        row["speedup"] = row["requests_per_second"] / unbatched["requests_per_second"]
        lines.append(f"| {row['instances']} x {row['threads_per_instance']} | {row['max_batch']} | {row['clients']} | "
                     f"{row['requests']} | {row['errors']} | {row['p50_ms']:.0f} | {row['p99_ms']:.0f} | "
                     f"{row['requests_per_second']:.1f} | {row['speedup']:.2f}x |")
    table = "\n".join([header, *lines])
    print(table)
    if args.out:
        import onnxruntime

        machine = machine_facts(numpy=np.__version__, onnxruntime=onnxruntime.__version__)
        command = "framestamp bench serve-load " + " ".join(argv if argv is not None else sys.argv[1:])
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "serve_load.json").write_text(json.dumps(
            {"command": command, "machine": machine, "rows": rows,
             "locator_alone_questions_per_second": {str(batch): rate for batch, rate in locator_alone.items()}}, indent=2) + "\n")
        (args.out / "serve_load.md").write_text(
            f"# framestamp serve under load (Triton through PyTriton, localhost, HTTP)\n\nReproduce: `{command}`\n\n"
            f"Machine: {machine}\n\nThe shipped model; word questions about generated 3-6 s clips, each request a "
            f"FLAC file's bytes; queue delay {args.queue_delay_us} us; every client a connection of its own, all "
            f"sending at once; each run after a warm-up of one request per client.\n\n{table}\n\n"
            f"Locator.run alone (no server), one ONNX Runtime thread, the same requests {args.max_batch} or 1 at a time in "
            f"arrival order: {locator_alone[args.max_batch]:.1f} vs {locator_alone[1]:.1f} questions/s "
            f"({locator_alone[args.max_batch] / locator_alone[1]:.2f}x).\n")
    return 0 if all(r["errors"] == 0 for r in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
