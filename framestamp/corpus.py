"""Timestamp a whole corpus with Locator actors on Ray Data; results in shards, resumable after a crash.

    framestamp locate-corpus corpus/manifest.jsonl out/            # a local Ray cluster on this machine
    framestamp locate-corpus recordings/ out/ --format parquet     # a folder of audio, each with a .txt transcript
    framestamp locate-corpus manifest.jsonl out/ --address ray://head:10001 --actors 16 --num-gpus 1

The input is a JSONL manifest (one question per line: id, task, prompt, audio; times are not needed)
or a folder of audio files each beside a transcript of the same name (.txt): one transcript question
per file. Ray Data streams the questions through --actors Locator actors (map_batches); the driver
writes the answers in shards of --shard-size, each under its final name only once complete. Run the
same command again after a crash: questions whose answers are in a shard already are skipped, so
nothing is lost or written twice. On a cluster (--address) every node needs framestamp installed and
the audio at the same paths; the shards are written where the command runs.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from framestamp.runtime.artifact import SHIPPED, artifact_folder
from framestamp.runtime.decoding import DECODINGS

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3", ".opus", ".aiff", ".aif")
FORMATS = ("jsonl", "parquet")
SHARD_PREFIX = "part-"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("corpus", type=Path, help="a JSONL manifest, or a folder of audio files with .txt transcripts")
    parser.add_argument("out", type=Path, help="folder for the shards (created; an existing one is resumed)")
    parser.add_argument("--artifact", type=artifact_folder, default=SHIPPED,
                        help="artifact folder from `framestamp export` (default: the shipped model's)")
    parser.add_argument("--format", choices=FORMATS, default="jsonl")
    parser.add_argument("--actors", type=int, default=1, help="Locator actors (default 1)")
    parser.add_argument("--cpus-per-actor", type=float, default=0.5,
                        help="CPUs Ray reserves per actor (default 0.5: whole CPUs for every actor can leave none "
                             "for Ray's read tasks on a small machine, and the job then waits forever)")
    parser.add_argument("--num-gpus", type=float, default=0.0, help="GPUs per actor (a cluster's; default 0)")
    parser.add_argument("--providers", default="CPUExecutionProvider",
                        help="ONNX Runtime providers, comma-separated (CUDAExecutionProvider with --num-gpus)")
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime threads per actor (default 1)")
    parser.add_argument("--batch-size", type=int, default=16, help="questions per forward pass (default 16)")
    parser.add_argument("--shard-size", type=int, default=1000, help="answers per shard (default 1000)")
    parser.add_argument("--decoding", choices=DECODINGS, default="ordered")
    parser.add_argument("--address", help="an existing Ray cluster (e.g. ray://head:10001 or auto); "
                        "default: start a local one on this machine")


def run(args: argparse.Namespace) -> int:
    check_arguments(args)
    questions = read_corpus(args.corpus)
    done = finished_ids(args.out)
    unknown = done - {question["id"] for question in questions}
    if unknown:
        from framestamp.runtime.errors import InputError

        raise InputError(f"{args.out} holds answers for {len(unknown)} id(s) not in {args.corpus} (e.g. "
                         f"{sorted(unknown)[0]!r}): it belongs to another corpus; pick another OUT folder")
    todo = [question for question in questions if question["id"] not in done]
    print(f"framestamp locate-corpus: {len(questions)} questions, {len(done)} answered already, {len(todo)} to go",
          file=sys.stderr, flush=True)
    if todo:
        locate(todo, args)
    print(f"framestamp locate-corpus: done: {len(questions)} answers in {args.out}", file=sys.stderr, flush=True)
    return 0


def locate(todo: list[dict], args: argparse.Namespace) -> None:
    """Stream ``todo`` through Locator actors; write each --shard-size answers as one shard."""
    ray = _import_ray()
    from ray import data

    if args.address:
        ray.init(address=args.address, logging_level="WARNING")
    else:
        ray.init(num_cpus=os.cpu_count(), include_dashboard=False, logging_level="WARNING")
    try:
        questions = data.from_items(todo)
        answers = questions.map_batches(
            LocatorActor, batch_size=args.batch_size, batch_format="pandas", concurrency=args.actors,
            num_cpus=args.cpus_per_actor, num_gpus=args.num_gpus or None,
            fn_constructor_kwargs={"artifact": str(args.artifact), "providers": tuple(args.providers.split(",")),
                                   "threads": args.threads, "batch_size": args.batch_size, "decoding": args.decoding})
        # Ray Data restarts a crashed actor and asks its batches again (its defaults for actor pools).
        number, written, start = next_shard_number(args.out), 0, time.monotonic()
        for shard in answers.iter_batches(batch_size=args.shard_size, batch_format="pandas"):
            records = [json.loads(record) for record in shard["record"]]
            path = write_shard(args.out, number, records, args.format)
            number, written = number + 1, written + len(records)
            rate = written / (time.monotonic() - start)
            print(f"framestamp locate-corpus: wrote {path.name} ({written}/{len(todo)}, {rate:.1f} questions/s)",
                  file=sys.stderr, flush=True)
    finally:
        ray.shutdown()


class LocatorActor:
    """A Ray Data actor: one Locator, a batch of questions -> one forward pass -> one record each."""

    def __init__(self, artifact: str, providers: tuple, threads: int, batch_size: int, decoding: str):
        from framestamp.runtime.locator import Locator

        self.locator = Locator(artifact, providers=providers, threads=threads, batch_size=batch_size,
                               decoding=decoding)

    def __call__(self, batch):
        from framestamp.answers import answer_each
        from framestamp.runtime.locator import Query

        questions = [{"id": i, "task": t, "prompt": json.loads(p), "audio": a}
                     for i, t, p, a in zip(batch["id"], batch["task"], batch["prompt"], batch["audio"])]
        queries = [Query(q["audio"], q["task"], q["prompt"]) for q in questions]
        answers = answer_each(self.locator, queries)
        batch = batch[["id"]].copy()
        batch["record"] = [json.dumps(answer_record(q, a)) for q, a in zip(questions, answers)]
        return batch


def answer_record(question: dict, answer) -> dict:
    """One line of output: the question, and its answer or the reason it was refused."""
    record = {"id": question["id"], "task": question["task"], "prompt": question["prompt"], "times": [],
              "confidence": [], "ends": [], "words": [], "warnings": [], "error": None}
    if isinstance(answer, Exception):
        record["error"] = str(answer)
        return record
    record.update(times=list(answer.times), confidence=list(answer.confidence), ends=list(answer.ends),
                  words=list(answer.words or ()), warnings=list(answer.warnings))
    return record


# ---------------------------------------------------------------------------------- the corpus
def read_corpus(corpus: Path) -> list[dict]:
    """Questions as {id, task, prompt (JSON text), audio (absolute path)}; refuses duplicate ids."""
    from framestamp.runtime.errors import InputError

    if corpus.is_dir():
        questions = _folder_questions(corpus)
    elif corpus.is_file():
        questions = _manifest_questions(corpus)
    else:
        raise InputError(f"{corpus}: no such manifest file or folder")
    if not questions:
        raise InputError(f"{corpus}: holds no questions")
    seen: set[str] = set()
    for question in questions:
        if question["id"] in seen:
            raise InputError(f"{corpus}: the id {question['id']!r} occurs twice; ids must be unique to resume")
        seen.add(question["id"])
    return questions


def _manifest_questions(path: Path) -> list[dict]:
    from framestamp.runtime.errors import ManifestError
    from framestamp.runtime.prompts import check_prompt_fields

    questions = []
    with open(path, encoding="utf-8") as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ManifestError(path, number, f"not valid JSON ({error.msg} at column {error.colno})") from None
            if not isinstance(record, dict):
                raise ManifestError(path, number, "each line must be a JSON object")
            missing = [name for name in ("id", "task", "prompt", "audio") if name not in record]
            if missing:
                raise ManifestError(path, number, f"missing field(s) {', '.join(missing)}")
            try:
                check_prompt_fields(record["task"], record["prompt"])
            except Exception as error:  # noqa: BLE001 (InputError, reported with the line)
                raise ManifestError(path, number, str(error)) from None
            audio = Path(record["audio"])
            questions.append({"id": str(record["id"]), "task": record["task"], "prompt": json.dumps(record["prompt"]),
                              "audio": str(audio if audio.is_absolute() else (path.parent / audio).resolve())})
    return questions


def _folder_questions(folder: Path) -> list[dict]:
    """Every audio file with a .txt beside it: a transcript question, its id the file's relative path."""
    questions = []
    for audio in sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file()):
        transcript = audio.with_suffix(".txt")
        if transcript.is_file():
            questions.append({"id": audio.relative_to(folder).as_posix(), "task": "transcript",
                              "prompt": json.dumps({"transcript": transcript.read_text(encoding="utf-8").strip()}),
                              "audio": str(audio.resolve())})
    return questions


# ---------------------------------------------------------------------------------- the shards
def shard_paths(out: Path) -> list[Path]:
    return sorted(p for ext in FORMATS for p in out.glob(f"{SHARD_PREFIX}*.{ext}")) if out.is_dir() else []


def finished_ids(out: Path) -> set[str]:
    """The ids answered in OUT's complete shards (a shard appears under its name only when complete)."""
    return {record["id"] for path in shard_paths(out) for record in read_shard(path)}


def read_shard(path: Path) -> list[dict]:
    if path.suffix == ".parquet":
        import pyarrow.parquet

        records = pyarrow.parquet.read_table(path).to_pylist()
        return [{**record, "prompt": json.loads(record["prompt"])} for record in records]
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def read_answers(out: Path) -> list[dict]:
    """Every answer in OUT's shards, sorted by id."""
    return sorted((record for path in shard_paths(out) for record in read_shard(path)), key=lambda r: r["id"])


def next_shard_number(out: Path) -> int:
    numbers = [int(p.stem[len(SHARD_PREFIX):]) for p in shard_paths(out) if p.stem[len(SHARD_PREFIX):].isdigit()]
    return max(numbers, default=-1) + 1


def write_shard(out: Path, number: int, records: list[dict], format: str) -> Path:
    """Write ``records`` as OUT/part-NNNNN.<format>, under that name only once complete."""
    from framestamp.runtime.files import atomic_path

    path = out / f"{SHARD_PREFIX}{number:05d}.{format}"
    with atomic_path(path) as temporary:
        if format == "parquet":
            import pyarrow
            import pyarrow.parquet

            columns = {name: [record[name] for record in records] for name in records[0]}
            columns["prompt"] = [json.dumps(prompt) for prompt in columns["prompt"]]  # fields differ per task
            pyarrow.parquet.write_table(pyarrow.table(columns), temporary)
        else:
            with open(temporary, "w", encoding="utf-8") as handle:
                handle.writelines(json.dumps(record) + "\n" for record in records)
    return path


def check_arguments(args: argparse.Namespace) -> None:
    from framestamp.runtime.errors import InputError

    for name in ("actors", "threads", "batch_size", "shard_size"):
        if getattr(args, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(args, name)}")
    if args.cpus_per_actor <= 0 or args.num_gpus < 0:
        raise InputError("--cpus-per-actor must be > 0 and --num-gpus >= 0")


def _import_ray():
    from framestamp.runtime.errors import FramestampError

    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise FramestampError("`framestamp locate-corpus` needs Ray Data: pip install 'framestamp[ray]'") from None
    return ray
