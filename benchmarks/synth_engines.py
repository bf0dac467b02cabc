"""Speech engines for word clips: do their word times agree with the audio, are they repeatable, how fast?

    python -m framestamp.benchmarks.synth_engines [--phrases 12] [--clips 20] [--out benchmarks/results/cpu]

Timing: each voice reads phrases of 8 random vocabulary words separated by commas, so every word after
the first follows a pause of the engine's own making (the first word is skipped: its lead-in is
replaced with silence by the engine wrapper, which would make the check circular). A word's energy
onset is measured from the samples alone: the first sample after the pause where the power of the
last 5 ms is 6 dB above the pause's median power (and above -55 dB of the phrase's peak): the start of
the loud run that holds the labelled start, or if the label itself is quiet the first loud 10 ms after it. The table gives onset minus the engine's word start, split by the word's first phone:
a stop (p t k b d g ch jh) starts at its closure in flite and Festival (as Montreal Forced Aligner
labels it) and at its burst in espeak-ng, so its onset comes later by the closure's length there.
Piper's words after a pause start where their sound rises out of the silence (data/piper.py), so its
row checks that onset rule against this one, not the model's durations (those are checked against
pocketsphinx: README, Synthetic data).

Repeatability: word clips made twice from the same seed, and (flite, Festival) one phrase twice in one process.
Speed: ``write_task`` for the words task (every step: synthesis, timing, resampling, FLAC, TextGrid,
manifest), one voice family at a time, one worker.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from framestamp.data.synth import power_ending_at

STOP_PHONES = {"p", "t", "k", "b", "d", "g", "ch", "jh",  # flite and Festival (ARPAbet)
               "tS", "dZ"}  # espeak-ng's affricates; its p t k b d g are spelt the same, as Piper's IPA (stress marks off)
VOICE_SETS = {
    "espeak": ["en-us", "en", "en-029"],
    "flite": ["flite:slt", "flite:rms", "flite:awb", "flite:kal16", "flite:kal"],
    "festival": ["festival:kal", "festival:ked", "festival:slt"],
    "piper": ["piper:joe", "piper:joe-sampled"],
}


def energy_onset(audio: np.ndarray, rate: int, pause: tuple[float, float], label: float, search_end: float) -> float | None:
    """Seconds where the run of loud energy that the word starts with begins (module doc), or None.

    If the energy at ``label`` is already loud, the run began at the last quiet sample before it (within
    the pause); otherwise it is the first sustained rise after ``label`` (a stop's closure is quiet).
    """
    power_db = 10 * np.log10(power_ending_at(audio, rate // 200) + 1e-20)
    first, last = int(pause[0] * rate), int(pause[1] * rate)
    if last - first < rate // 50:
        return None
    threshold = max(np.median(power_db[first:last]) + 6.0, power_db.max() - 55.0)
    loud = power_db >= threshold
    at = int(round(label * rate))
    if loud[at]:
        quiet = np.flatnonzero(~loud[first:at])
        return (first + quiet[-1] + 1) / rate if len(quiet) else None
    run = rate // 100
    sustained = np.convolve(loud[at:int(search_end * rate)], np.ones(run), "valid") >= run
    hits = np.flatnonzero(sustained)
    return (at + hits[0]) / rate if len(hits) else None


def timing_agreement(spec: str, phrases: int, seed: int) -> dict:
    from framestamp.data import engines
    from framestamp.data.synth_words import vocabulary

    rng = np.random.default_rng(seed)
    voice = engines.random_voice(rng, [spec])
    differences: dict[str, list[float]] = {"stop": [], "other": []}
    with engines.session():
        for _ in range(phrases):
            words = [str(word) for word in rng.choice(vocabulary(), size=8, replace=False)]
            speech = engines.synthesize(", ".join(words), voice, keep_pauses=True)  # the engine's own samples
            audio = speech.samples.astype(np.float64) / 32768
            first_phone = {round(phone.start, 4): phone.name for phone in speech.phones}
            for before, word in zip(speech.words, speech.words[1:]):
                # The pause: from 20 ms after the previous word to 30 ms before this one.
                onset = energy_onset(audio, speech.rate, (before.end + 0.02, word.start - 0.03), word.start,
                                      word.start + 0.25)
                if onset is None:
                    continue
                kind = "stop" if first_phone.get(round(word.start, 4), "").lstrip("ˈˌ") in STOP_PHONES else "other"
                differences[kind].append(1000 * (onset - word.start))
    return {kind: summary(values) for kind, values in differences.items()}


def summary(values: list[float]) -> dict:
    values = np.asarray(values)
    if not len(values):
        return {"words": 0}
    return {"words": int(len(values)), "median_ms": round(float(np.median(values)), 1),
            "p5_ms": round(float(np.percentile(values, 5)), 1), "p95_ms": round(float(np.percentile(values, 95)), 1),
            "abs_p95_ms": round(float(np.percentile(np.abs(values), 95)), 1)}


def repeatable(spec: str, seed: int) -> dict:
    """Word clips made twice from one seed (each in its own child, as `synth` makes them), and one
    phrase spoken twice in one process (not for espeak-ng, which keeps state between calls)."""
    from framestamp.data import engines, espeak
    from framestamp.data.synth_words import speak_words

    clips = [speak_words(seed, min_seconds=3, max_seconds=6, voices=[spec]) for _ in range(2)]
    same_clip = bool(np.array_equal(clips[0].pcm, clips[1].pcm) and clips[0].words == clips[1].words)
    voice = clips[0].voice
    if voice.engine == "espeak":
        return {"same_clip": same_clip, "same_phrase_in_process": None}

    def twice():
        with engines.session():
            return [engines.synthesize("the quick brown fox jumps over the lazy dog", voice) for _ in range(2)]

    first, second = espeak.isolated(twice)
    return {"same_clip": same_clip,
            "same_phrase_in_process": bool(np.array_equal(first.samples, second.samples) and first.words == second.words)}


def speed(specs: list[str], clips: int, seed: int) -> dict:
    import soundfile

    from framestamp.data.synth import write_task

    settings = {"voices": specs, "min_seconds": 3.0, "max_seconds": 12.0}
    with tempfile.TemporaryDirectory(prefix="synth_engines.") as folder:
        started = time.perf_counter()
        write_task(Path(folder), "words", clips, seed, settings, workers=1)
        elapsed = time.perf_counter() - started
        audio_seconds = sum(soundfile.info(str(path)).duration for path in Path(folder).rglob("*.flac"))
    return {"clips": clips, "seconds": round(elapsed, 2), "clips_per_second": round(clips / elapsed, 2),
            "real_time_factor": round(audio_seconds / elapsed, 1)}


def markdown(report: dict, command: str) -> str:
    def yes(value):
        return "n/a" if value is None else "yes" if value else "NO"

    lines = ["# Speech engines for word clips: word-time agreement, repeatability, speed", "",
             f"Reproduce: `{command}`", "",
             f"Machine: {report['machine']} (2 cores shared with a training run: speeds are lower bounds).", "",
             "Energy onset minus the engine's word start, in ms (positive: the energy comes after the label), for "
             "words after a pause of the engine's own, measured from the samples alone (method: "
             "benchmarks/synth_engines.py). espeak-ng's rows show the measurement's own bias (under 1 ms). Words "
             "starting with a stop are apart: flite and Festival start them at the closure (as MFA does), "
             "espeak-ng at the burst.", "",
             "| voice | words | median | p5 | p95 | abs p95 | stop words | median | p95 | same clip twice | same phrase twice in a process |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for spec, row in report["voices"].items():
        other, stop = row["timing"]["other"], row["timing"]["stop"]
        lines.append(f"| {spec} | {other.get('words', 0)} | {other.get('median_ms', '-')} | {other.get('p5_ms', '-')} | "
                     f"{other.get('p95_ms', '-')} | {other.get('abs_p95_ms', '-')} | {stop.get('words', 0)} | "
                     f"{stop.get('median_ms', '-')} | {stop.get('p95_ms', '-')} | {yes(row['repeatable']['same_clip'])} | "
                     f"{yes(row['repeatable']['same_phrase_in_process'])} |")
    lines += ["", "Speed (`write_task`, words task, 3-12 s clips, one worker, the voices of one engine; every step: "
              "synthesis, timing, resampling, FLAC, TextGrid, manifest):", "",
              "| engine | clips | seconds | clips/s | x real time |", "|---|---|---|---|---|"]
    for engine, row in report["speed"].items():
        lines.append(f"| {engine} | {row['clips']} | {row['seconds']} | {row['clips_per_second']} | {row['real_time_factor']} |")
    lines += ["", "Most of Festival's time is starting one `festival` process per clip (~0.3 s)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--phrases", type=int, default=12, help="comma-separated phrases of 8 words per voice")
    parser.add_argument("--clips", type=int, default=20, help="word clips per engine for the speed row")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="write synth_engines.json and synth_engines.md here")
    args = parser.parse_args(argv)

    from framestamp.data import engines

    report = {"machine": f"{platform.machine()}, Python {platform.python_version()}", "voices": {}, "speed": {}}
    for engine, specs in VOICE_SETS.items():
        usable = []
        for spec in specs:
            try:
                engines.parse_voices([spec])
            except Exception as error:  # noqa: BLE001 - a missing engine is reported, not fatal
                print(f"skipping {spec}: {error}")
                continue
            usable.append(spec)
            report["voices"][spec] = {"timing": timing_agreement(spec, args.phrases, args.seed),
                                      "repeatable": repeatable(spec, args.seed)}
            print(spec, json.dumps(report["voices"][spec]))
        if usable:
            report["speed"][engine] = speed(usable, args.clips, args.seed)
            print(engine, report["speed"][engine])
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        command = "python -m framestamp.benchmarks.synth_engines " + " ".join(
            f"--{name} {getattr(args, name)}" for name in ("phrases", "clips", "seed")) + f" --out {args.out}"
        (args.out / "synth_engines.json").write_text(json.dumps(report, indent=1) + "\n")
        (args.out / "synth_engines.md").write_text(markdown(report, command))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
