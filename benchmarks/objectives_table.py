"""Tables of the objective comparison and the length study run by benchmarks/train_objectives.sh.

    python -m framestamp.benchmarks.objectives_table runs/objectives --out benchmarks/results/cpu

Writes objectives.json and objectives.md: per task, acc@20/40/100 ms and MAD of each objective at the
same budget, and the out-of-distribution grid (train on clips <= 4 s; test on <= 4 s and on 4-8 s).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

# (name in the results, run folder, its evaluation file, label)
IN_DISTRIBUTION = [("all-poisson-la2", "all-poisson-la2", "eval.json", "Poisson, look-ahead 2"),
                   ("all-poisson-la0", "all-poisson-la0", "eval.json", "Poisson, per-frame (paper)"),
                   ("all-binary-la2", "all-binary-la2", "eval.json", "binary, look-ahead 2"),
                   ("all-tokens-la0", "all-tokens-la0", "eval.json", "tokens (JSON text)"),
                   ("all-interpolated-la2", "all-interpolated-la2", "eval.json",
                    "interpolated T + 0.05 P: frame head"),
                   ("all-interpolated-la2-text", "all-interpolated-la2", "eval-tokens.json",
                    "interpolated T + 0.05 P: generated text")]
DEFAULT_STEPS = 1500  # train_objectives.sh's default, used for merged results that did not record theirs
# (run prefix, longest training clip s, longest test clip s): train <= 4 s -> test 4-8 s, train <= 8 s -> 8-12 s
LENGTH_STUDIES = [("ood", 4, 8), ("ood8", 8, 12)]
LENGTH_OBJECTIVES = [("poisson", "Poisson"), ("binary", "binary"), ("tokens", "tokens")]
COMMAND = "bash benchmarks/train_objectives.sh runs/objectives 1500 && python -m framestamp.benchmarks.objectives_table runs/objectives"


def read(path: Path) -> dict | None:
    return json.loads(path.read_text())["tasks"] if path.is_file() else None


def cell(scores: dict | None, task: str) -> list[str]:
    if not scores or task not in scores:
        return ["n/a"] * 5
    s = scores[task]
    mad = s["mad_ms"]
    mad_text = f"{mad:.0f} ms" if mad is not None and np.isfinite(mad) else "n/a (no usable answer)"
    return [f"{s['acc@20ms']:.1%}", f"{s['acc@40ms']:.1%}", f"{s['acc@100ms']:.1%}", mad_text,
            str(s.get("malformed", 0))]


def training_steps(run: Path) -> int | None:
    model = run / "model" / "framestamp.json"
    return json.loads(model.read_text())["training"].get("steps") if model.is_file() else None


def build(runs: Path, previous: dict | None = None) -> tuple[dict, str]:
    """Tables from the runs on disk; with ``previous`` (an earlier objectives.json), runs no longer on
    disk keep the results recorded there."""
    previous = previous or {}
    results = {"command": COMMAND, "in_distribution": {}, "length_study": {}, "steps": {}}

    def scores_of(name: str, run: str, file: str):
        scores = read(runs / run / file)
        if scores is None and name in previous.get("in_distribution", {}):
            scores = previous["in_distribution"][name]
            results["steps"][name] = previous.get("steps", {}).get(name, DEFAULT_STEPS)
        elif scores is not None:
            results["steps"][name] = training_steps(runs / run)
        return scores

    lines = [f"# Objectives at an equal budget, and length generalization (CPU, omni-tiny from scratch)", "",
             f"Reproduce: `{COMMAND}`", "",
             "Same backbone (omni-tiny, random init), data, batch (8), learning rate and steps for every row. "
             "Evaluation on voices never heard in training.", ""]
    header = "| objective | steps | acc@20ms | acc@40ms | acc@100ms | MAD | malformed |\n|---|---|---|---|---|---|---|"
    for name, run, file, _ in IN_DISTRIBUTION:
        results["in_distribution"][name] = scores_of(name, run, file)
    tasks = sorted({task for scores in results["in_distribution"].values() for task in (scores or {})})
    for task in tasks:
        lines += [f"## {task}", "", header]
        for name, _, _, label in IN_DISTRIBUTION:
            steps = results["steps"].get(name)
            lines.append(f"| {label} | {steps or '?'} | " + " | ".join(cell(results["in_distribution"][name], task)) + " |")
        lines.append("")
    for prefix, limit, longest in LENGTH_STUDIES:
        lines += [f"## Length generalization: train on word clips <= {limit} s", "",
                  f"| objective | task | test <= {limit} s acc@40ms | test {limit}-{longest} s acc@40ms | "
                  f"test <= {limit} s MAD | test {limit}-{longest} s MAD | malformed ({limit}-{longest} s) |",
                  "|---|---|---|---|---|---|---|"]
        for objective, label in LENGTH_OBJECTIVES:
            name = f"{prefix}-{objective}"
            pair = {"short": read(runs / name / "eval-short.json"), "long": read(runs / name / "eval-long.json")}
            if pair["short"] is None and pair["long"] is None and name in previous.get("length_study", {}):
                pair = previous["length_study"][name]
            results["length_study"][name] = {**pair, "train_max_seconds": limit, "test_max_seconds": longest}
            for task in ("word", "transcript"):
                a, b = cell(pair["short"], task), cell(pair["long"], task)
                lines.append(f"| {label} | {task} | {a[1]} | {b[1]} | {a[3]} | {b[3]} | {b[4]} |")
        lines.append("")
    lines += ["## What this says about the paper's claims", ""] + verdict(results)
    return results, "\n".join(lines) + "\n"


def mean_accuracy(scores: dict | None, tasks) -> float | None:
    values = [scores[task]["acc@40ms"] for task in tasks if scores and task in scores]
    return float(np.mean(values)) if values else None


def verdict(results: dict) -> list[str]:
    """One line per claim, computed from the numbers above."""
    lines = []
    runs = results["in_distribution"]
    tasks = sorted({task for scores in runs.values() if scores for task in scores})
    means = {name: mean_accuracy(scores, tasks) for name, scores in runs.items()}
    if all(means.get(name) is not None for name in ("all-poisson-la2", "all-binary-la2", "all-tokens-la0")):
        frame = max(means["all-poisson-la2"], means["all-binary-la2"])
        holds = "holds" if frame > means["all-tokens-la0"] else "does not hold"
        lines.append(f"- Frame-level heads beat generated timestamps at equal budget: {holds} here (mean acc@40ms "
                     f"over tasks: Poisson {means['all-poisson-la2']:.1%}, binary {means['all-binary-la2']:.1%}, "
                     f"tokens {means['all-tokens-la0']:.1%}).")
        better = "Poisson" if means["all-poisson-la2"] >= means["all-binary-la2"] else "binary"
        lines.append(f"- Poisson vs binary: {better} is ahead on the mean "
                     f"({means['all-poisson-la2']:.1%} vs {means['all-binary-la2']:.1%}).")
    if means.get("all-interpolated-la2") is not None and means.get("all-poisson-la2") is not None:
        frame, alone = runs["all-interpolated-la2"], runs["all-poisson-la2"]
        gains = [frame[task]["acc@40ms"] - alone[task]["acc@40ms"] for task in tasks if task in frame and task in alone]
        holds = "does not hold" if gains and all(gain > 0 for gain in gains) else "holds"
        text = means.get("all-interpolated-la2-text")
        lines.append(f"- Interpolating token and Poisson losses (4.6: no consistent gain over Poisson alone): {holds} "
                     f"here (mean acc@40ms: frame head {means['all-interpolated-la2']:.1%} vs Poisson alone "
                     f"{means['all-poisson-la2']:.1%}, better on {sum(g > 0 for g in gains)} of {len(gains)} tasks"
                     + (f"; its generated text {text:.1%} vs tokens alone {means['all-tokens-la0']:.1%}"
                        if text is not None and means.get("all-tokens-la0") is not None else "") + ").")
    if means.get("all-poisson-la0") is not None and means.get("all-poisson-la2") is not None:
        lines.append(f"- Look-ahead head vs the paper's per-frame head: {means['all-poisson-la2']:.1%} vs "
                     f"{means['all-poisson-la0']:.1%} mean acc@40ms.")
    for prefix, limit, longest in LENGTH_STUDIES:
        drops = {}
        for objective, _ in LENGTH_OBJECTIVES:
            pair = results["length_study"].get(f"{prefix}-{objective}") or {}
            short = mean_accuracy(pair.get("short"), ("word", "transcript"))
            long = mean_accuracy(pair.get("long"), ("word", "transcript"))
            if short is not None and long is not None:
                drops[objective] = (short, long)
        if not drops:
            continue
        described = ", ".join(f"{objective} {a:.1%} -> {b:.1%}" for objective, (a, b) in drops.items())
        grid = f"<= {limit} s -> {limit}-{longest} s"
        if "tokens" in drops and "poisson" in drops:
            tokens_keep = drops["tokens"][1] / max(drops["tokens"][0], 1e-9)
            poisson_keep = drops["poisson"][1] / max(drops["poisson"][0], 1e-9)
            holds = "holds" if poisson_keep > tokens_keep else "does not hold"
            lines.append(f"- Length generalization, {grid} (Table 4: tokens collapse beyond the training lengths, "
                         f"Poisson holds): {holds} here in relative terms (mean word/transcript acc@40ms: {described}).")
        else:
            lines.append(f"- Length generalization, {grid}: {described}.")
    return lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", type=Path, help="the folder benchmarks/train_objectives.sh wrote")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/cpu"))
    parser.add_argument("--merge", type=Path, help="an earlier objectives.json: runs no longer on disk keep its results")
    args = parser.parse_args(argv)
    previous = json.loads(args.merge.read_text()) if args.merge else None
    results, table = build(args.runs, previous)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "objectives.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "objectives.md").write_text(table)
    print(table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
