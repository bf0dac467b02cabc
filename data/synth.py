"""Generate a synthetic dataset (spoken words, speaker counting, sound events) from a seed.

    framestamp synth OUT --tasks words,speakers,events --count 100 --seed 0

Each task is written in the layout of the real corpus it stands in for, and read back by that
corpus's loader into the manifests ``OUT/manifest.jsonl`` (all tasks) and ``OUT/<task>/manifest.jsonl``:

    words     OUT/words/LibriSpeech/synth/<spk>/<chap>/...   LibriSpeech + MFA TextGrids (synth_words)
    speakers  OUT/speakers/<k>_<uid>.wav + .json             LibriCount (synth_speakers)
    events    OUT/events/audio/*.flac + strong.tsv           AudioSet strong labels (synth_events)

Output is byte-identical for the same arguments. Clip i of a task is a pure function of
(seed, task, i), whatever --count is; every manifest line carries it in
``source["generator"]``, and ``regenerate(generator)`` rebuilds the clip's audio exactly.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib
import os
from pathlib import Path

import numpy as np

from framestamp.runtime.errors import InputError

# task -> the module that generates, writes and loads it
TASK_MODULES = {
    "words": "framestamp.data.synth_words",
    "speakers": "framestamp.data.synth_speakers",
    "events": "framestamp.data.synth_events",
}
DEFAULT_MIN_SECONDS = 3.0
DEFAULT_MAX_SECONDS = 12.0


# ---------------------------------------------------------------- helpers the task modules share


def clip_seed(seed: int, task: str, index: int) -> int:
    """The seed of clip ``index`` of ``task``: depends on nothing else (not on --count).

    53 bits, so that JSON readers that hold numbers as doubles read it back exactly.
    """
    digest = hashlib.sha256(f"framestamp-synth/{seed}/{task}/{index}".encode()).digest()
    return int.from_bytes(digest[:8], "big") >> 11


def to_pcm16(audio: np.ndarray, peak: float | None = None) -> np.ndarray:
    """Quantize to 16 bits, as the audio file will hold it; first scale to ``peak`` (of full scale) if given."""
    loudest = float(np.max(np.abs(audio))) if audio.size else 0.0
    if peak is not None and loudest > 0:
        audio = audio * (peak / loudest)
    return np.clip(np.round(audio * 32768.0), -32768, 32767).astype(np.int16)


def pcm16_to_float(pcm: np.ndarray) -> np.ndarray:
    """The float32 samples soundfile reads back from a 16-bit file (it divides by 32768)."""
    return pcm.astype(np.float32) / np.float32(32768.0)


def power_ending_at(audio: np.ndarray, window: int) -> np.ndarray:
    """Mean square of the ``window`` samples ending at each sample (zeros before the start)."""
    energy = np.concatenate([[0.0], np.cumsum(np.asarray(audio, np.float64) ** 2)])
    ends = np.arange(1, len(audio) + 1)
    return (energy[ends] - energy[np.maximum(ends - window, 0)]) / window


def write_pcm16(path: Path, pcm: np.ndarray, sample_rate: int) -> None:
    """Write 16-bit samples verbatim (FLAC or WAV from the suffix), so reading gives back ``pcm`` exactly."""
    import soundfile

    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), pcm, sample_rate, subtype="PCM_16", format=path.suffix[1:].upper())


# ---------------------------------------------------------------- the function API


def task_module(name: str):
    if name not in TASK_MODULES:
        raise InputError(f"unknown synthetic task {name!r}; choose from {', '.join(TASK_MODULES)}")
    return importlib.import_module(TASK_MODULES[name])


def generate_clip(name: str, seed: int, **spec) -> tuple[np.ndarray, dict]:
    """(16 kHz float32 audio, labels) of one clip of task ``name``; the same arguments give the same bits."""
    module = task_module(name)
    unknown = sorted(set(spec) - set(module.SPEC_DEFAULTS))
    if unknown:
        raise InputError(f"task {name!r} has no setting(s) {', '.join(unknown)}; "
                         f"its settings are {', '.join(module.SPEC_DEFAULTS) or 'none'}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise InputError(f"a clip's seed must be an integer, got {seed!r}")
    return module.generate(seed, **{**module.SPEC_DEFAULTS, **spec})


def regenerate(generator: dict) -> np.ndarray:
    """The audio of the clip a manifest line's ``generator`` ({"name", "seed", settings...}) describes."""
    if not isinstance(generator, dict) or not isinstance(generator.get("name"), str) or "seed" not in generator:
        raise InputError(f"a generator must be an object with a 'name' and a 'seed', got {generator!r}")
    spec = {key: value for key, value in generator.items() if key not in ("name", "seed")}
    audio, _ = generate_clip(generator["name"], generator["seed"], **spec)
    return audio


# ---------------------------------------------------------------- the command


def configure(parser: argparse.ArgumentParser) -> None:
    from framestamp.data.conditions import NOISE_KINDS
    from framestamp.data.espeak import VOICES

    parser.add_argument("out", type=Path, metavar="OUT", help="folder to write into (each task's folder is replaced)")
    parser.add_argument("--tasks", default="words,speakers,events",
                        help=f"comma-separated tasks out of {','.join(TASK_MODULES)} (default: all)")
    parser.add_argument("--count", type=int, default=100, help="clips per task (default: 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the whole dataset (default: 0)")
    parser.add_argument("--voices", default=",".join(VOICES),
                        help="comma-separated voices to speak with, each ENGINE:VOICE or a plain espeak-ng voice: "
                             "espeak (en, en-us, en-029, ...), flite:slt|rms|awb|kal16|kal, festival:kal|ked|slt "
                             "(default: the 8 espeak-ng English voices); hold some out to test on unseen voices. "
                             "Speaker mixes use the espeak-ng ones")
    parser.add_argument("--min-seconds", type=float, default=DEFAULT_MIN_SECONDS,
                        help=f"shortest word clip (default: {DEFAULT_MIN_SECONDS:g}); speaker mixes are 5 s, event clips 10 s")
    parser.add_argument("--max-seconds", type=float, default=DEFAULT_MAX_SECONDS,
                        help=f"longest word clip (default: {DEFAULT_MAX_SECONDS:g})")
    parser.add_argument("--vocabulary", type=Path, metavar="FILE",
                        help="word clips draw words from this file (the first word of each line; words of letters a-z "
                             "only; a pronouncing dictionary works as is) instead of the built-in vocabulary")
    parser.add_argument("--noise-snr", metavar="LOW,HIGH",
                        help="add background noise to word clips at an SNR (dB, speech in words vs noise) drawn "
                             "uniformly from LOW..HIGH, e.g. 5,30 (default: no noise)")
    parser.add_argument("--noise-kinds", metavar="KINDS",
                        help=f"comma-separated noise kinds to draw from, out of {','.join(NOISE_KINDS)} (default: "
                             f"all; babble is reversed espeak-ng speech)")
    parser.add_argument("--reverb", type=float, default=0.0, metavar="P",
                        help="put a word clip in a synthetic room (RT60 0.2-0.8 s) with probability P (default: 0)")
    parser.add_argument("--rates", metavar="LOW,HIGH",
                        help="word clips: an espeak-ng voice speaks at a rate drawn from LOW..HIGH words per minute "
                             "(80-450; default: 130,250)")
    parser.add_argument("--pitches", metavar="LOW,HIGH",
                        help="word clips: an espeak-ng voice's pitch is drawn from LOW..HIGH (0-99; default: 20,80)")
    parser.add_argument("--separate-events", action="store_true",
                        help="event clips: an animal's event holds calls at most 0.25 s apart and two events of one "
                             "class are at least 0.5 s apart, so 'the k-th dog' is never a bark of another event "
                             "(default: off, as earlier datasets)")
    parser.add_argument("--workers", type=int, default=1, help="clips generated at once, one process each (default: 1)")


def run(args: argparse.Namespace) -> int:
    from framestamp.data.engines import parse_voices

    tasks = list(dict.fromkeys(name.strip() for name in args.tasks.split(",") if name.strip()))
    for name in tasks:
        task_module(name)
    if not tasks:
        raise InputError("--tasks is empty; give one or more of " + ", ".join(TASK_MODULES))
    if args.count < 1:
        raise InputError(f"--count must be at least 1, got {args.count}")
    if args.workers < 1:
        raise InputError(f"--workers must be at least 1, got {args.workers}")
    if not 2.0 <= args.max_seconds or not 0 < args.min_seconds <= args.max_seconds:
        raise InputError(f"need 0 < --min-seconds <= --max-seconds and --max-seconds >= 2 (room for a phrase), "
                         f"got {args.min_seconds:g} and {args.max_seconds:g}")
    voices = list(parse_voices(name.strip() for name in args.voices.split(",") if name.strip()))
    settings = {"voices": voices, "min_seconds": args.min_seconds, "max_seconds": args.max_seconds,
                **condition_settings(args)}
    every_example = []
    for name in tasks:
        examples = write_task(args.out, name, args.count, args.seed, settings, args.workers)
        every_example += [dataclasses.replace(example, audio=f"{name}/{example.audio}") for example in examples]
    from framestamp.data.manifest import write_manifest

    write_manifest(args.out / "manifest.jsonl", every_example)
    print(f"wrote {len(every_example)} questions about {args.count * len(tasks)} clips to {args.out / 'manifest.jsonl'}")
    return 0


def condition_settings(args: argparse.Namespace) -> dict:
    """--vocabulary, --noise-snr, --noise-kinds, --reverb, --rates and --pitches as word-clip settings, and
    --separate-events as the event clips' (only those given)."""
    from framestamp.data import espeak
    from framestamp.data.conditions import check_noise_kinds
    from framestamp.data.synth_words import check_snr_range, vocabulary_source

    settings = {}
    if args.vocabulary is not None:
        settings["vocabulary"] = vocabulary_source(args.vocabulary)
    if args.noise_snr is not None:
        values = args.noise_snr.split(",")
        try:
            numbers = [float(value) for value in values]
        except ValueError:
            numbers = []
        if len(numbers) not in (1, 2):
            raise InputError(f"--noise-snr takes LOW,HIGH in dB (or one value), got {args.noise_snr!r}")
        settings["noise_snr"] = list(check_snr_range(numbers * 2 if len(numbers) == 1 else numbers))
    if args.noise_kinds is not None:
        if args.noise_snr is None:
            raise InputError("--noise-kinds chooses among noises that --noise-snr adds; give --noise-snr too")
        settings["noise_kinds"] = list(check_noise_kinds(kind.strip() for kind in args.noise_kinds.split(",") if kind.strip()))
    if not 0.0 <= args.reverb <= 1.0:
        raise InputError(f"--reverb is a probability between 0 and 1, got {args.reverb:g}")
    if args.reverb:
        settings["reverb"] = args.reverb
    for name, limits in (("rates", espeak.RATE_LIMITS), ("pitches", espeak.PITCH_LIMITS)):
        given = getattr(args, name)
        if given is not None:
            settings[name] = list(espeak.check_range(f"--{name}", given.split(","), limits))
    if args.separate_events:
        settings["separated"] = True
    return settings


def write_task(out: Path, name: str, count: int, seed: int, settings: dict, workers: int = 1) -> list:
    """Write ``count`` clips of task ``name`` to ``out/name`` (replacing it) with its manifest.

    Returns the task's examples, audio paths relative to ``out/name``.
    """
    from tqdm import tqdm

    from framestamp.data.espeak import map_isolated
    from framestamp.data.manifest import write_manifest
    from framestamp.runtime.files import atomic_path

    module = task_module(name)
    spec = {key: settings.get(key, default) for key, default in module.SPEC_DEFAULTS.items()}
    _import_before_forking()
    module.prepare(spec)  # load the task's own sources once, before the per-clip forks inherit them
    tqdm.monitor_interval = 0  # no monitor thread: every clip is made in a forked child
    with atomic_path(out / name) as root:
        root.mkdir()
        jobs = [(root, index, clip_seed(seed, name, index), spec) for index in range(count)]
        records = list(tqdm(map_isolated(module.write_clip, jobs, workers), total=count, desc=f"synth {name}", unit="clip"))
        module.write_labels(root, records)
        recorded = recorded_settings(module, spec)
        generators = {record["audio"]: {"name": name, "seed": job[2], **recorded} for record, job in zip(records, jobs)}
        sources = {record["audio"]: record.get("source", {}) for record in records}
        examples = [_synthetic_example(example, root, name, generators, sources)
                    for example in module.load(root, seed=seed)]
        write_manifest(root / "manifest.jsonl", examples)
    return examples


def _import_before_forking() -> None:
    """Modules every clip uses, imported once here: importing them in each forked child costs ~30 ms a clip."""
    import numpy.random  # noqa: F401 - numpy 2 imports it lazily
    import soundfile  # noqa: F401
    import soxr  # noqa: F401


def recorded_settings(module, spec: dict) -> dict:
    """The settings a clip's generator records: all but the task's OPTIONAL_SETTINGS left at their default."""
    optional = getattr(module, "OPTIONAL_SETTINGS", ())
    return {key: value for key, value in spec.items() if key not in optional or value != module.SPEC_DEFAULTS[key]}


def _synthetic_example(example, root: Path, task: str, generators: dict, sources: dict):
    """A loader's example with its audio path relative to the task folder, its generator and what the
    task reported about the clip (engine, voice, acoustic conditions) attached."""
    audio = Path(os.path.relpath(example.audio, root)).as_posix()
    source = {**example.source, "format": example.source.get("dataset"), "dataset": f"synth_{task}",
              **sources[audio], "generator": generators[audio]}
    return dataclasses.replace(example, id=f"synth/{example.id}", audio=audio, source=source)
