"""Where a model's word answers go wrong: `framestamp bench word-errors MANIFEST --model CHECKPOINT`.

Every word question of a clip names one word and occurrence; the clip's other word questions give
the starts of all its words. A wrong answer is then one of: another occurrence of the asked word (the
count went wrong), another word's start (the word went wrong), or no word's start (the timing went
wrong). Accuracy is also split by the word's position in the clip, by how often the clip says it,
and by where its start falls inside the audio encoder's 2 s chunk (the causal decoder hears a word
at its start only through the encoder's chunk-local attention and the head's look-ahead).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from framestamp.runtime.errors import InputError

TOLERANCE = 0.04
CHUNK_SECONDS = 2.0  # the Omni audio encoder attends within chunks of n_window * 2 = 200 mel frames
KINDS = ("right", "another occurrence of the word", "another word's start", "no word's start")


@dataclass(frozen=True)
class Question:
    clip: str
    word: str
    start: float  # the asked occurrence's true start


def classify(questions: list[Question], answers: list[float | None], scored=None, tolerance: float = TOLERANCE) -> dict:
    """The kinds of answer and the splits over the questions ``scored`` (indices; default all).

    ``questions`` must cover every word of their clips (they give each clip's word starts);
    ``answers[i]`` is the predicted start for ``questions[i]`` (None: no answer, a miss at no word's start).
    """
    if len(questions) != len(answers):
        raise InputError(f"{len(questions)} questions but {len(answers)} answers")
    scored = range(len(questions)) if scored is None else scored
    starts = defaultdict(list)  # clip -> sorted [(start, word)]
    for question in questions:
        starts[question.clip].append((question.start, question.word))
    for clip in starts:
        starts[clip].sort()
    kinds, by_position, by_count, by_chunk = Counter(), defaultdict(list), defaultdict(list), defaultdict(list)
    for index in scored:
        question, answer = questions[index], answers[index]
        right = answer is not None and abs(answer - question.start) <= tolerance
        if right:
            kind = KINDS[0]
        else:
            near = [] if answer is None else [w for s, w in starts[question.clip] if abs(s - answer) <= tolerance]
            kind = KINDS[1] if question.word in near else (KINDS[2] if near else KINDS[3])
        kinds[kind] += 1
        clip = starts[question.clip]
        position = [s for s, _ in clip].index(question.start)
        said = sum(1 for _, w in clip if w == question.word)
        group = position // 5
        by_position[f"{5 * group + 1}-{5 * group + 5}" if group < 3 else "16+"].append(right)
        by_count["3+" if said >= 3 else str(said)].append(right)
        into = question.start % CHUNK_SECONDS
        by_chunk[f"{0.25 * int(into / 0.25):.2f}-{0.25 * int(into / 0.25) + 0.25:.2f} s"].append(right)
    def split(groups):  # in the order of each group's leading number
        order = sorted(groups, key=lambda key: float(key.split("-")[0].rstrip("+ s")))
        return {key: {"count": len(groups[key]), "acc@40ms": float(np.mean(groups[key]))} for key in order}

    return {"questions": sum(kinds.values()), "kinds": {kind: kinds[kind] for kind in KINDS},
            "by_position": split(by_position), "by_times_said": split(by_count), "by_chunk_offset": split(by_chunk)}


def word_questions(manifest: Path, limit: int | None):
    from framestamp.data.manifest import read_manifest

    every = [example for example in read_manifest(manifest) if example.task == "word"]
    if not every:
        raise InputError(f"{manifest}: no word questions; give a manifest from `framestamp synth` or a word loader")
    questions = [Question(example.audio, example.prompt["word"], float(example.times[0])) for example in every]
    step = max(1, len(every) // limit) if limit else 1
    return every, questions, list(range(0, len(every), step))


def markdown(result: dict, command: str) -> str:
    total = result["questions"]
    lines = ["# Where word answers go wrong", "", f"Reproduce: `{command}`", "",
             f"{total} word questions, acc@40ms {100 * result['kinds'][KINDS[0]] / total:.1f}%.", "",
             "| answer | questions | share |", "|---|---|---|"]
    lines += [f"| {kind} | {n} | {100 * n / total:.1f}% |" for kind, n in result["kinds"].items()]
    for title, key in (("the word's position in the clip", "by_position"), ("times the clip says the word", "by_times_said"),
                       ("the start's offset in the encoder's 2 s chunk", "by_chunk_offset")):
        lines += ["", f"| {title} | questions | acc@40ms |", "|---|---|---|"]
        lines += [f"| {group} | {row['count']} | {100 * row['acc@40ms']:.1f}% |" for group, row in result[key].items()]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from framestamp.benchmarks import write_report
    from framestamp.benchmarks.peers import framestamp_answers

    parser = argparse.ArgumentParser(prog="framestamp bench word-errors", description=__doc__.strip().splitlines()[0])
    parser.add_argument("manifest", type=Path, help="a manifest whose clips have a word question for every word")
    parser.add_argument("--model", type=Path, default=Path(__file__).resolve().parents[1] / "framestamp" / "models" / "omni-tiny-synth",
                        help="a checkpoint or exported artifact folder (default: the shipped model)")
    parser.add_argument("--limit", type=int, help="score every n-th question so about this many are scored")
    parser.add_argument("--out", type=Path, help="folder for word-errors.md and word-errors.json")
    args = parser.parse_args(argv)
    if not args.manifest.is_file():
        raise InputError(f"{args.manifest}: no such manifest")
    examples, questions, chosen = word_questions(args.manifest, args.limit)
    answers = framestamp_answers(args.model, [examples[i] for i in chosen], args.manifest.parent)
    every_answer: list[float | None] = [None] * len(questions)
    for i in chosen:
        times = answers[examples[i].id]
        every_answer[i] = float(times[0]) if len(times) else None
    result = classify(questions, every_answer, scored=chosen)  # every question gives its clip's word starts
    # `framestamp bench` passes argv; `python -m` leaves it in sys.argv[1:]
    command = "framestamp bench word-errors " + " ".join(argv if argv is not None else sys.argv[1:])
    text = markdown(result, command)
    print(text)
    if args.out:
        write_report(args.out, "word-errors", text, {"command": command, "model": str(args.model), **result})
    return 0



if __name__ == "__main__":
    raise SystemExit(main())
