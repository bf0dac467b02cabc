"""`framestamp locate-corpus` on a local Ray cluster: throughput with 1 and 2 actors, and a job that loses
an actor's worker, then its driver and cluster (SIGKILL), and is run again.

    python -m framestamp.benchmarks.corpus_scaling [--count 95] [--out benchmarks/results/cpu]
    framestamp bench corpus --out benchmarks/results/cpu

Generates a set of >= 2,000 questions (every task), answers it with 1 actor and with 2 (wall clock
of the whole command, Ray's start included), then the fault run: 2 actors; once a third of the
shards exist one actor's worker process is killed (Ray restarts it), once two thirds exist the whole
job is killed (driver, workers, the local cluster); the same command run again finishes it. Its final
output is compared, answer by answer, with the uninterrupted 1-actor run's.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from framestamp.benchmarks import machine_facts


def locate_corpus(manifest: Path, out: Path, *options: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "framestamp", "locate-corpus", str(manifest), str(out), *options],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)


def timed_run(manifest: Path, out: Path, *options: str) -> float:
    start = time.perf_counter()
    job = locate_corpus(manifest, out, *options)
    if job.wait() != 0:
        raise RuntimeError(f"locate-corpus {' '.join(options)} failed")
    return time.perf_counter() - start


def wait_for_shards(out: Path, count: int, job: subprocess.Popen, timeout: float = 1200) -> None:
    from framestamp.corpus import shard_paths

    deadline = time.monotonic() + timeout
    while len(shard_paths(out)) < count:
        if job.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError("the job ended (or stalled) before the shards to kill it at were written")
        time.sleep(0.1)


def actor_workers(session: int) -> list[int]:
    """Process ids of the job's Locator actors (Ray names their processes after the actor class)."""
    listing = subprocess.run(["ps", "-eo", "pid=,sid=,args="], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in listing.splitlines()
            if len(line.split()) > 2 and int(line.split()[1]) == session and "LocatorActor" in line]


def steady_rate(out: Path) -> float:
    """Questions per second between the first shard written and the last (Ray's start left out)."""
    from framestamp.corpus import read_shard, shard_paths

    paths = sorted(shard_paths(out), key=lambda p: p.stat().st_mtime)
    after_first = sum(len(read_shard(p)) for p in paths[1:])
    seconds = paths[-1].stat().st_mtime - paths[0].stat().st_mtime
    return after_first / seconds if seconds > 0 else float("nan")


def compare(reference: list[dict], found: list[dict]) -> dict:
    ids = [record["id"] for record in found]
    expected = {record["id"]: record for record in reference}
    mismatched, largest = [], 0.0
    for record in found:
        other = expected.get(record["id"])
        if other is None or record["times"] != other["times"] or record["error"] != other["error"] \
                or record["warnings"] != other["warnings"] or len(record["confidence"]) != len(other["confidence"]):
            mismatched.append(record["id"])
            continue
        largest = max([largest] + [abs(a - b) for a, b in zip(record["confidence"], other["confidence"])])
    return {"answers": len(found), "duplicates": len(ids) - len(set(ids)), "missing": len(set(expected) - set(ids)),
            "different_times_or_warnings": len(mismatched), "max_confidence_difference": largest}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=110, help="clips per task for `framestamp synth` (default 110: ~2,050 questions)")
    parser.add_argument("--shard-size", type=int, default=100)
    parser.add_argument("--out", type=Path, help="folder for corpus_scaling.json and corpus_scaling.md")
    args = parser.parse_args(argv)
    from framestamp.cli import main as framestamp
    from framestamp.corpus import read_answers, read_corpus, shard_paths

    with tempfile.TemporaryDirectory(prefix="framestamp-corpus-") as scratch:
        scratch = Path(scratch)
        if framestamp(["synth", str(scratch / "clips"), "--count", str(args.count), "--seed", "37", "--voices",
                       "en-029,en-us-nyc", "--max-seconds", "4", "--workers", "2"]) != 0:
            raise RuntimeError("could not generate the clips")
        manifest = scratch / "clips" / "manifest.jsonl"
        questions = len(read_corpus(manifest))
        shard = ["--shard-size", str(args.shard_size)]
        rows = []
        for actors in (1, 2):
            seconds = timed_run(manifest, scratch / f"actors-{actors}", "--actors", str(actors), *shard)
            rows.append({"actors": actors, "questions": questions, "seconds": seconds,
                         "questions_per_second": questions / seconds,
                         "steady_questions_per_second": steady_rate(scratch / f"actors-{actors}"),
                         **compare(read_answers(scratch / "actors-1"), read_answers(scratch / f"actors-{actors}"))})
            print(f"{actors} actor(s): {questions} questions in {seconds:.1f} s ({questions / seconds:.1f}/s)", flush=True)

        shards = -(-questions // args.shard_size)
        fault_out = scratch / "fault"
        job = locate_corpus(manifest, fault_out, "--actors", "2", *shard)
        wait_for_shards(fault_out, shards // 3, job)
        workers = actor_workers(job.pid)
        os.kill(workers[0], signal.SIGKILL)  # one actor's worker: Ray starts it again
        wait_for_shards(fault_out, 2 * shards // 3, job)
        os.killpg(job.pid, signal.SIGKILL)  # the driver, the workers and the local cluster
        job.wait()
        answered_at_kill = len(read_answers(fault_out))
        rerun_seconds = timed_run(manifest, fault_out, "--actors", "2", *shard)
        fault = {"actor_workers_seen": len(workers), "answered_when_killed": answered_at_kill, "questions": questions,
                 "rerun_seconds": rerun_seconds, "shards": len(shard_paths(fault_out)),
                 **compare(read_answers(scratch / "actors-1"), read_answers(fault_out))}
    speedup = rows[1]["steady_questions_per_second"] / rows[0]["steady_questions_per_second"]
    table = "\n".join(["| actors | questions | seconds (with Ray's start) | questions/s | questions/s after the first shard "
                       "| duplicates | missing |", "|---|---|---|---|---|---|---|"] +
                      [f"| {r['actors']} | {r['questions']} | {r['seconds']:.1f} | {r['questions_per_second']:.1f} | "
                       f"{r['steady_questions_per_second']:.1f} | {r['duplicates']} | {r['missing']} |" for r in rows])
    fault_text = (f"Fault run (2 actors): one actor's worker killed at a third of the shards, then the whole job "
                  f"(SIGKILL to driver, workers and local cluster) with {fault['answered_when_killed']} of {questions} "
                  f"answers written; run again, it finished in {fault['rerun_seconds']:.1f} s. Final output: "
                  f"{fault['answers']} answers, {fault['duplicates']} duplicates, {fault['missing']} missing, "
                  f"{fault['different_times_or_warnings']} differing from the uninterrupted 1-actor run in times, "
                  f"warnings or errors (largest confidence difference {fault['max_confidence_difference']:.1e}).")
    print(table + f"\n\n2 actors / 1 actor (after the first shard): {speedup:.2f}x\n\n" + fault_text)
    if args.out:
        import numpy
        import ray

        machine = machine_facts(numpy=numpy.__version__, ray=ray.__version__)
        command = "framestamp bench corpus " + " ".join(argv if argv is not None else sys.argv[1:])
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "corpus_scaling.json").write_text(json.dumps(
            {"command": command, "machine": machine, "rows": rows, "speedup": speedup, "fault": fault}, indent=2) + "\n")
        (args.out / "corpus_scaling.md").write_text(
            f"# framestamp locate-corpus on a local Ray cluster\n\nReproduce: `{command}`\n\nMachine: {machine}\n\n"
            f"The shipped model; generated 2-4 s clips, questions of every task; actors of 0.5 CPU and 1 ONNX Runtime "
            f"thread each, batches of 16, shards of {args.shard_size}.\n\n{table}\n\n2 actors / 1 actor (after the first "
            f"shard): {speedup:.2f}x\n\n{fault_text}\n")
    return 0 if fault["duplicates"] == fault["missing"] == fault["different_times_or_warnings"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
