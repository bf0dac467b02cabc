"""Manifest examples -> padded torch batches for training and evaluation.

    examples --length_filter--> BucketBatchSampler (indices of similar-length examples)
             --collate(AudioCache, prompt_ids)--> Batch: prompt ids, log-mel, event times, masks

Features come from ``framestamp.runtime.features.log_mel``, the featurizer the runtime uses, so a
trained head never sees different numbers at inference. Each clip is featurized alone and its mel
zero-padded, so an example's features never depend on which batch it lands in.

With ``torch.utils.data.DataLoader(examples, batch_sampler=sampler, collate_fn=partial(collate, ...))``
each worker process keeps its own AudioCache, and workers fetch batches ahead: save the sampler
state of the batches the trainer has *consumed* (``state_dict`` counts the ones handed out).
"""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np
import torch

from framestamp.data.manifest import Example
from framestamp.runtime.audio import load_audio
from framestamp.runtime.errors import InputError
from framestamp.runtime.features import DEFAULT_SETTINGS, FeatureSettings, log_mel, mel_band_centres
from framestamp.runtime.frames import FRAME_SECONDS, audio_frames_for_mel
from framestamp.runtime.prompts import OCCURRENCE_TASKS, pad_prompts

# prompt_ids(example, num_audio_frames) -> (token ids, index of the first audio placeholder)
PromptIds = Callable[[Example, int], tuple[Sequence[int], int]]
# features(example) -> (num_mel_bins, mel_frames) float32 log-mel
Features = Callable[[Example], np.ndarray]

LABEL_SLACK_SECONDS = 1e-3  # label files round clip ends up to the next millisecond
GROUP_JITTER_SECONDS = 0.5  # BucketBatchSampler: how far runs of one clip's questions are shuffled among durations


class AudioCache:
    """Loads an example's audio and computes its log-mel, keeping recent clips in memory.

    Many questions share one clip, so features are cached by resolved audio path (least recently
    used dropped first) up to ``cache_megabytes``; 0 turns the cache off. Returned arrays are
    read-only because they are shared.
    """

    def __init__(self, manifest_dir: str | Path, settings: FeatureSettings = DEFAULT_SETTINGS,
                 cache_megabytes: float = 256.0):
        if cache_megabytes < 0:
            raise InputError(f"cache_megabytes must be >= 0, got {cache_megabytes}")
        self.manifest_dir = Path(manifest_dir)
        self.settings = settings
        self.cache_bytes = int(cache_megabytes * 2**20)
        self._cache: OrderedDict[Path, np.ndarray] = OrderedDict()
        self._cached_bytes = 0
        self.hits = 0
        self.misses = 0

    def audio_path(self, example: Example) -> Path:
        path = example.audio_path(self.manifest_dir)
        if path is None:
            raise InputError(
                f"example {example.id!r} has no audio file, only generator {example.generator}; "
                "write its audio first (framestamp synth writes files and a manifest that names them)"
            )
        return path

    def __call__(self, example: Example) -> np.ndarray:
        path = self.audio_path(example)
        mel = self._cache.get(path)
        if mel is not None:
            self._cache.move_to_end(path)
            self.hits += 1
            return mel
        self.misses += 1
        mel = log_mel(load_audio(path), self.settings, source=str(path))
        mel.setflags(write=False)
        self._remember(path, mel)
        return mel

    def _remember(self, path: Path, mel: np.ndarray) -> None:
        if mel.nbytes > self.cache_bytes:
            return
        self._cache[path] = mel
        self._cached_bytes += mel.nbytes
        while self._cached_bytes > self.cache_bytes:
            _, dropped = self._cache.popitem(last=False)
            self._cached_bytes -= dropped.nbytes

    def __len__(self) -> int:
        return len(self._cache)


def length_filter(examples: Iterable[Example], min_seconds: float | None = None,
                  max_seconds: float | None = None) -> list[Example]:
    """Examples with ``min_seconds < duration <= max_seconds`` (either bound optional).

    Half-open so that adjacent ranges never share a clip: train ``max_seconds=4`` and test
    ``min_seconds=4, max_seconds=8`` split the data cleanly for out-of-distribution studies.
    """
    if min_seconds is not None and max_seconds is not None and min_seconds >= max_seconds:
        raise InputError(f"min_seconds ({min_seconds}) must be below max_seconds ({max_seconds})")
    return [
        example for example in examples
        if (min_seconds is None or example.duration > min_seconds)
        and (max_seconds is None or example.duration <= max_seconds)
    ]



def balance_tasks(examples: Sequence[Example], power: float, seed: int = 0) -> list[Example]:
    """The same number of examples with each task's share proportional to ``count ** power``: 1 keeps
    the manifest's mix, 0 gives every task an equal share, 0.5 is between (as multilingual models
    temper their languages). A task is repeated whole as often as it fits, then topped up with a
    seeded draw without replacement, so the result is deterministic and uses every example it can.
    """
    if not 0.0 <= power <= 1.0:
        raise InputError(f"--task-balance must be between 0 (equal shares) and 1 (the manifest's mix), got {power}")
    by_task: dict[str, list[Example]] = {}
    for example in examples:
        by_task.setdefault(example.task, []).append(example)
    weights = {task: len(items) ** power for task, items in by_task.items()}
    total = sum(weights.values())
    rng = np.random.default_rng([seed, 7])
    balanced = []
    for task in sorted(by_task):
        items = by_task[task]
        wanted = round(len(examples) * weights[task] / total)
        whole, rest = divmod(wanted, len(items))
        balanced += items * whole + [items[i] for i in sorted(rng.choice(len(items), rest, replace=False))]
    return balanced


def occurrence_group(example: Example) -> tuple | None:
    """What a k-th occurrence question counts over: (clip, task, the asked word or event); None for a
    question that asks no occurrence (a transcript)."""
    if example.task not in OCCURRENCE_TASKS or "occurrence" not in example.prompt:
        return None
    return clip_key(example), example.task, example.prompt.get("word") or example.prompt.get("event")


def complete_occurrence_groups(examples: Sequence[Example]) -> dict[tuple, list[Example]]:
    """The clips' groups of k-th occurrence questions (``occurrence_group``) asked exactly 1..n, each as one
    question per occurrence in order; a group with a gap (a loader left an unreliable word out) is left out,
    as its count is unknown."""
    groups: dict[tuple, dict[int, Example]] = {}
    for example in examples:
        key = occurrence_group(example)
        if key is not None:
            groups.setdefault(key, {})[int(example.prompt["occurrence"])] = example
    return {key: [members[number] for number in sorted(members)] for key, members in groups.items()
            if sorted(members) == list(range(1, len(members) + 1))}


class EveryOccurrence:
    """A k-th occurrence question's training events when its track marks every occurrence of its word,
    event or speaker onset in the clip (``HeadConfig.occurrences == "every"``): ``targets(example)``
    gives (times, ends) of all of them, and decoding picks the k-th (``runtime.decoding.kth_of_every``),
    so the model finds the thing without counting.

    The occurrences come from the clip's questions about the same thing in ``examples``; a group whose
    asked numbers are not exactly 1..n (a loader left an unreliable word out) keeps its own single event,
    as its missing occurrences would otherwise be taught as silence. Other questions keep their own.
    """

    def __init__(self, examples: Sequence[Example]):
        self.events: dict[tuple, tuple[tuple[float, ...], tuple[float, ...] | None]] = {}
        for key, members in complete_occurrence_groups(examples).items():
            times = tuple(member.times[0] for member in members)
            ends = (None if any(member.ends is None for member in members)
                    else tuple(member.ends[0] for member in members))
            self.events[key] = (times, ends)

    def __call__(self, example: Example) -> tuple[tuple[float, ...], tuple[float, ...] | None]:
        return self.events.get(occurrence_group(example), (example.times, example.ends))


class AbsentOccurrences:
    """Questions past the count: for a ``share`` of the clips' complete groups of k-th occurrence questions
    (a word, an event or the speakers of one clip, asked 1..n), one more question asks for occurrence n + 1
    and is trained on no event (``targets(example)`` gives it none). With the count term the head then
    learns to say that a clip holds no such occurrence (Lambda(T) near 0), which the k-th occurrence's
    decoding can read as the count. Groups are picked by a hash of the group, the same on every run.
    ``absent`` holds the added questions; ``targets`` falls back to ``fallback`` (or each question's own
    events) for every other question."""

    def __init__(self, examples: Sequence[Example], share: float, fallback: Callable | None = None):
        if not 0 < share <= 1:
            raise InputError(f"the share of groups asked past their count must be in (0, 1], got {share}")
        self.fallback = fallback
        self.absent: list[Example] = []
        for key, members in complete_occurrence_groups(examples).items():
            draw = int.from_bytes(hashlib.sha256(repr(key).encode()).digest()[:4], "little") / 2 ** 32
            if draw < share:
                last = members[-1]
                self.absent.append(replace(last, id=f"{last.id}/absent",
                                           prompt={**last.prompt, "occurrence": len(members) + 1}))
        self._ids = {example.id for example in self.absent}

    def __call__(self, example: Example) -> tuple[tuple[float, ...], tuple[float, ...] | None]:
        if example.id in self._ids:
            return (), None
        return (example.times, example.ends) if self.fallback is None else self.fallback(example)


@dataclass
class Batch:
    """A padded batch. B examples, T prompt tokens, L mel frames, F audio frames, N event slots."""

    input_ids: torch.Tensor  # (B, T) long, right-padded with the pad id
    attention_mask: torch.Tensor  # (B, T) long, 1 at real tokens
    audio_start: torch.Tensor  # (B,) long, index of the first audio placeholder in input_ids
    num_audio_frames: torch.Tensor  # (B,) long, audio placeholders = encoder frames (40 ms each)
    mel: torch.Tensor  # (B, num_mel_bins, L) float32, zeros past mel_lengths
    mel_lengths: torch.Tensor  # (B,) long
    event_times: torch.Tensor  # (B, N) float64 seconds, 0 in unused slots
    event_mask: torch.Tensor  # (B, N) bool
    frame_mask: torch.Tensor  # (B, F) bool, True at each example's audio frames
    examples: list[Example]
    event_ends: torch.Tensor | None = None  # (B, N) float64 where the example has ends, 0 elsewhere; None if none has
    ends_mask: torch.Tensor | None = None  # (B, N) bool: event_mask on the examples with ends
    frame_labels: torch.Tensor | None = None  # (B, kinds, F) long per-frame labels, training aids only (aids.py)
    # (B,) long: the mel row each example hears when examples share a clip (mel then holds each clip once);
    # None: one mel row per example
    clip_of: torch.Tensor | None = None
    merging: object | None = None  # a model.Merging: the prompts hold merged placeholders (merge-aware training)
    # (B, M) float64 seconds / bool: every occurrence of what each k-th occurrence question asks about in its clip
    # (none for other questions), for the "every" aid channel; None when not asked for
    every_times: torch.Tensor | None = None
    every_mask: torch.Tensor | None = None

    def to(self, device: torch.device | str, non_blocking: bool = False) -> "Batch":
        moved = {
            field.name: getattr(self, field.name).to(device, non_blocking=non_blocking)
            for field in fields(self) if isinstance(getattr(self, field.name), torch.Tensor)
        }
        return replace(self, **moved)

    def __len__(self) -> int:
        return len(self.examples)


def _prompt_for(example: Example, num_audio_frames: int, prompt_ids: PromptIds) -> tuple[list[int], int]:
    ids, audio_start = prompt_ids(example, num_audio_frames)
    ids = [int(token) for token in ids]
    if not isinstance(audio_start, (int, np.integer)) or not 0 <= audio_start <= len(ids) - num_audio_frames:
        raise InputError(
            f"prompt_ids gave audio_start={audio_start!r} for example {example.id!r}, but its {len(ids)} ids must "
            f"hold {num_audio_frames} audio placeholders from audio_start on"
        )
    return ids, int(audio_start)


def _fit_to_frames(example: Example, times: Sequence[float], mel_frames: int, num_audio_frames: int,
                   settings: FeatureSettings) -> list[float]:
    """Times clamped to the end of the last audio frame; refuses a time past the audio itself.

    The encoder's stride and pooling drop up to ~40 ms at the end of a clip, so an event there
    (an interval's end at the clip's end, most often) is moved onto the last frame's right edge,
    which the losses count as inside that frame.
    """
    audio_seconds = (mel_frames + 1) * settings.hop_length / settings.sample_rate  # >= the clip's length
    if len(times) and max(times) > audio_seconds + LABEL_SLACK_SECONDS:  # none: a question past the count
        raise InputError(
            f"example {example.id!r} has a time at {max(times):.3f} s but its audio lasts about "
            f"{mel_frames * settings.hop_length / settings.sample_rate:.2f} s; fix its times or its audio file"
        )
    frames_end = num_audio_frames * FRAME_SECONDS
    return [min(float(time), frames_end) for time in times]


def clip_key(example: Example) -> str:
    """What identifies an example's clip: its audio path, or its generator for generated audio."""
    if example.audio is not None:
        return "audio:" + example.audio
    return "generator:" + json.dumps(example.generator, sort_keys=True)


def collate(examples: Sequence[Example], features: Features, prompt_ids: PromptIds, pad_id: int,
            settings: FeatureSettings = DEFAULT_SETTINGS, frame_labels=None, audio_tokens=None,
            share_clips: bool = False, targets=None, every=None) -> Batch:
    """Pad ``examples`` into one Batch.

    ``features(example)`` gives the clip's log-mel (an AudioCache); ``prompt_ids(example,
    num_audio_frames)`` gives the token ids with ``num_audio_frames`` audio placeholders starting
    at the returned index. ``num_audio_frames = audio_frames_for_mel(mel frames)``.
    ``frame_labels(example, num_audio_frames)``, when given, labels each frame for a training aid.
    ``audio_tokens(num_audio_frames)``, when given, is how many placeholders the prompt holds instead
    (merged audio tokens: ``Merging.tokens``).
    With ``share_clips`` questions about one clip share its mel row: ``batch.mel`` then holds each clip
    once and ``batch.clip_of`` names each example's row (``FrameStampModel.encode_batch`` encodes each
    clip once); without, every example has its own row, as graphs fed ``batch.mel`` directly expect.
    ``targets(example)``, when given, is the (times, ends) an example is trained on instead of its own
    (``EveryOccurrence``). ``every`` (an ``EveryOccurrence``), when given, fills ``batch.every_times``: every
    occurrence of what each k-th occurrence question asks about, for the "every" aid channel.
    """
    if len(examples) == 0:
        raise InputError("collate needs at least one example")
    mels, prompts, frame_counts, times, ends, clip_of = [], [], [], [], [], []
    clip_rows: dict[str, int] = {}
    for example in examples:
        key = clip_key(example) if share_clips else f"row:{len(clip_of)}"
        if key in clip_rows:  # another question about a clip already in the batch: encode it once
            clip_mel = mels[clip_rows[key]]
        else:
            clip_mel = np.asarray(features(example), dtype=np.float32)
            if clip_mel.ndim != 2 or clip_mel.shape[0] != settings.num_mel_bins:
                raise InputError(f"features for {example.id!r} have shape {clip_mel.shape}; expected "
                                 f"({settings.num_mel_bins}, frames)")
            clip_rows[key] = len(mels)
            mels.append(clip_mel)
        clip_of.append(clip_rows[key])
        mel_frames = clip_mel.shape[1]
        num_audio_frames = audio_frames_for_mel(mel_frames)
        if num_audio_frames < 1:
            raise InputError(
                f"example {example.id!r}: {mel_frames} mel frames give no 40 ms audio frame; clips need at "
                "least 30 ms of audio: drop it (length_filter) or fix its audio"
            )
        frame_counts.append(num_audio_frames)
        placeholders = num_audio_frames if audio_tokens is None else audio_tokens(num_audio_frames)
        prompts.append(_prompt_for(example, placeholders, prompt_ids))
        example_times, example_ends = (example.times, example.ends) if targets is None else targets(example)
        times.append(_fit_to_frames(example, example_times, mel_frames, num_audio_frames, settings))
        ends.append(None if example_ends is None else
                    _fit_to_frames(example, example_ends, mel_frames, num_audio_frames, settings))

    batch_size = len(examples)
    input_ids, attention_mask, audio_start = (torch.from_numpy(array) for array in pad_prompts(prompts, pad_id))

    mel_lengths = torch.tensor([mel.shape[1] for mel in mels], dtype=torch.long)
    mel = torch.zeros((len(mels), settings.num_mel_bins, int(mel_lengths.max())), dtype=torch.float32)
    for row, clip_mel in enumerate(mels):
        mel[row, :, : clip_mel.shape[1]] = torch.tensor(clip_mel)  # a copy: cached arrays are read-only

    num_audio_frames = torch.tensor(frame_counts, dtype=torch.long)
    frame_mask = torch.arange(int(num_audio_frames.max()))[None, :] < num_audio_frames[:, None]

    slots = max(len(row) for row in times)
    event_times = torch.zeros((batch_size, slots), dtype=torch.float64)
    event_mask = torch.zeros((batch_size, slots), dtype=torch.bool)
    any_ends = any(row is not None for row in ends)
    event_ends = torch.zeros((batch_size, slots), dtype=torch.float64) if any_ends else None
    ends_mask = torch.zeros((batch_size, slots), dtype=torch.bool) if any_ends else None
    for row, row_times in enumerate(times):
        event_times[row, : len(row_times)] = torch.tensor(row_times, dtype=torch.float64)
        event_mask[row, : len(row_times)] = True
        if ends[row] is not None:
            event_ends[row, : len(row_times)] = torch.tensor(ends[row], dtype=torch.float64)
            ends_mask[row, : len(row_times)] = True

    labels = None
    if frame_labels is not None:
        from framestamp.training.aids import IGNORE

        labels = None
        for row, (example, count) in enumerate(zip(examples, frame_counts)):
            row_labels = torch.from_numpy(frame_labels(example, count))  # (kinds, frames)
            if labels is None:
                labels = torch.full((batch_size, len(row_labels), frame_mask.shape[1]), IGNORE, dtype=torch.long)
            labels[row, :, :count] = row_labels

    return Batch(
        input_ids=input_ids, attention_mask=attention_mask,
        audio_start=audio_start,
        num_audio_frames=num_audio_frames, mel=mel, mel_lengths=mel_lengths,
        event_times=event_times, event_mask=event_mask, frame_mask=frame_mask,
        examples=list(examples), event_ends=event_ends, ends_mask=ends_mask, frame_labels=labels,
        clip_of=None if len(mels) == batch_size else torch.tensor(clip_of, dtype=torch.long),
        **({} if every is None else every_events(examples, every, mels, frame_counts, clip_of, settings)),
    )


def every_events(examples, every, mels, frame_counts, clip_of, settings: FeatureSettings) -> dict:
    """``every_times`` and ``every_mask`` for ``collate``: each k-th occurrence question's every occurrence
    (``every(example)``, fitted to its frames), nothing for other questions."""
    rows = []
    for row, example in enumerate(examples):
        times = every(example)[0] if occurrence_group(example) is not None else ()
        rows.append(_fit_to_frames(example, times, mels[clip_of[row]].shape[1], frame_counts[row], settings)
                    if times else [])
    slots = max(1, max(len(row) for row in rows))
    every_times = torch.zeros((len(rows), slots), dtype=torch.float64)
    every_mask = torch.zeros((len(rows), slots), dtype=torch.bool)
    for row, times in enumerate(rows):
        every_times[row, :len(times)] = torch.tensor(times, dtype=torch.float64)
        every_mask[row, :len(times)] = True
    return {"every_times": every_times, "every_mask": every_mask}


class BucketBatchSampler(torch.utils.data.Sampler):
    """Batches of example indices with similar durations, reproducible and resumable.

    Each epoch (with ``shuffle``): a permutation seeded by (seed, epoch), cut into pools of
    ``pool_batches`` batches; each pool sorted by duration and cut into batches (so a batch pads
    little), then the order of all batches shuffled. Without ``shuffle``: every example sorted by
    duration, the same each epoch (evaluation). An epoch's batches depend only on (seed, epoch),
    so ``state_dict()`` (epoch, batches handed out) restores the exact next batch.

    With ``groups`` (each example's clip, e.g. ``clip_key``) and ``per_group`` > 1, shuffled epochs
    keep up to ``per_group`` questions about one clip together: a batch then holds several
    questions per clip, and the encoder hears each clip once for all of them (``collate``).
    """

    def __init__(self, examples: Sequence[Example], batch_size: int, seed: int = 0, shuffle: bool = True,
                 drop_last: bool = False, pool_batches: int = 32, groups: Sequence[str] | None = None,
                 per_group: int = 1):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise InputError(f"batch_size must be a positive integer, got {batch_size!r}")
        if not isinstance(pool_batches, int) or pool_batches < 1:
            raise InputError(f"pool_batches must be a positive integer, got {pool_batches!r}")
        self.durations = np.array([example.duration for example in examples], dtype=np.float64)
        if len(self.durations) == 0:
            raise InputError("BucketBatchSampler needs at least one example")
        if drop_last and len(self.durations) < batch_size:
            raise InputError(f"{len(self.durations)} examples make no full batch of {batch_size} with drop_last=True")
        if not isinstance(per_group, int) or per_group < 1:
            raise InputError(f"questions per clip must be a positive integer, got {per_group!r}")
        if per_group > 1 and (groups is None or len(groups) != len(self.durations)):
            raise InputError("keeping questions about one clip together needs each example's clip (groups)")
        self.groups = None if per_group == 1 else np.unique(np.asarray(groups), return_inverse=True)[1]
        self.per_group = per_group
        self.batch_size = batch_size
        self.seed = int(seed)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.pool_batches = pool_batches
        self.epoch = 0
        self.index = 0  # batches of this epoch already handed out
        self._epoch_batches: tuple[int, list[list[int]]] | None = None

    def _cut(self, indices: np.ndarray) -> list[list[int]]:
        return [indices[start:start + self.batch_size].tolist() for start in range(0, len(indices), self.batch_size)]

    def batches_for_epoch(self, epoch: int) -> list[list[int]]:
        if self._epoch_batches is not None and self._epoch_batches[0] == epoch:
            return self._epoch_batches[1]
        if self.shuffle:
            rng = np.random.default_rng([self.seed, epoch])
            order = rng.permutation(len(self.durations))
            pool_size = self.batch_size * self.pool_batches
            if self.groups is None:
                units = [order[start:start + 1] for start in range(len(order))]
            else:
                units = self._units(order)
            # Runs of one clip share its duration: a seeded jitter of up to GROUP_JITTER_SECONDS keeps
            # them from sorting next to each other, so a batch holds runs of several clips.
            jitter = rng.uniform(0.0, GROUP_JITTER_SECONDS, len(units)) if self.groups is not None else np.zeros(len(units))
            keys = np.array([self.durations[unit[0]] for unit in units]) + jitter
            ordered = []
            for start in range(0, len(units), pool_size):
                for unit in start + np.argsort(keys[start:start + pool_size], kind="stable"):
                    ordered.extend(units[unit])
            batches = self._cut(np.asarray(ordered, dtype=np.int64))
            if self.drop_last and len(batches[-1]) < self.batch_size:
                batches.pop()  # only the last batch can end short
            batches = [batches[i] for i in rng.permutation(len(batches))]
        else:
            batches = self._cut(np.argsort(self.durations, kind="stable"))
            if self.drop_last and len(batches[-1]) < self.batch_size:
                batches.pop()
        self._epoch_batches = (epoch, batches)
        return batches

    def _units(self, order: np.ndarray) -> list[np.ndarray]:
        """``order`` cut into runs of up to ``per_group`` examples of one clip, in the order of each
        run's first example (a seeded permutation in, so a random order of clips out)."""
        members: dict[int, list[int]] = {}
        for index in order.tolist():
            members.setdefault(int(self.groups[index]), []).append(index)
        units, first = [], []
        position = np.empty(len(order), dtype=np.int64)
        position[order] = np.arange(len(order))
        for indices in members.values():
            for start in range(0, len(indices), self.per_group):
                units.append(np.asarray(indices[start:start + self.per_group], dtype=np.int64))
                first.append(position[indices[start]])
        return [units[i] for i in np.argsort(first, kind="stable")]

    def __len__(self) -> int:
        """Batches per epoch."""
        full, rest = divmod(len(self.durations), self.batch_size)
        return full + (1 if rest and not self.drop_last else 0)

    def __iter__(self) -> Iterator[list[int]]:
        """The rest of the current epoch; the next ``iter`` starts the following epoch."""
        if self.index >= len(self):
            self.epoch, self.index = self.epoch + 1, 0
        batches = self.batches_for_epoch(self.epoch)
        while self.index < len(batches):
            batch = batches[self.index]
            self.index += 1  # counted before the caller sees it: a state saved now resumes after it
            yield batch
        self.epoch, self.index = self.epoch + 1, 0

    def _fingerprint(self) -> dict:
        return {
            "num_examples": len(self.durations),
            "durations_sha1": hashlib.sha1(self.durations.tobytes()).hexdigest(),
            "batch_size": self.batch_size, "seed": self.seed, "shuffle": self.shuffle,
            "drop_last": self.drop_last, "pool_batches": self.pool_batches,
            **({} if self.groups is None else {
                "per_group": self.per_group, "groups_sha1": hashlib.sha1(self.groups.tobytes()).hexdigest()}),
        }

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index, **self._fingerprint()}

    def load_state_dict(self, state: dict) -> None:
        """Resume at ``state``; refuses a state saved for other examples or settings."""
        mismatched = [
            f"{name}: saved {state.get(name)!r}, now {value!r}"
            for name, value in self._fingerprint().items() if state.get(name) != value
        ]
        if mismatched:
            raise InputError(
                "sampler state was saved for different examples or settings (" + "; ".join(mismatched)
                + "); resume with the same manifest, filters and sampler arguments"
            )
        epoch, index = state.get("epoch"), state.get("index")
        if not isinstance(epoch, int) or epoch < 0 or not isinstance(index, int) or not 0 <= index <= len(self):
            raise InputError(
                f"sampler state has epoch={epoch!r}, index={index!r}; expected epoch >= 0 and 0 <= index <= {len(self)}"
            )
        self.epoch, self.index = epoch, index


def batch_draw(seed: int, examples: Sequence[Example], *more: str) -> int:
    """A 64-bit number fixed by ``seed``, the batch's example ids and ``more``: a per-batch choice that
    is the same on every run and after a resume, with no state to save."""
    key = "|".join([str(seed), *(example.id for example in examples), *more])
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "little")


class MergedBatches:
    """A collate that merges some batches' audio tokens, for merge-aware training (``--merge-train``).

    Each batch gets one ratio from ``ratios``, picked from a hash of its examples' ids and ``seed``:
    the same batch gets the same ratio on every run and after a resume, with no state to save.
    Ratio 0 gives the plain batch; otherwise the prompts hold ``merging.tokens(frames)`` audio
    placeholders and ``batch.merging`` tells the model to merge its audio embeddings to fit them.
    """

    def __init__(self, collate: Callable, ratios: Sequence[float], seed: int = 0, kind: str = "local"):
        from framestamp.training.model import Merging

        if not ratios:
            raise InputError("merge-aware training needs at least one ratio")
        self.collate, self.seed = collate, seed
        self.mergings = [None if ratio == 0 else Merging(float(ratio), kind) for ratio in ratios]

    def merging_for(self, examples: Sequence[Example]):
        pick = batch_draw(self.seed, examples) % len(self.mergings)
        return self.mergings[pick]

    def __call__(self, examples: Sequence[Example]) -> Batch:
        merging = self.merging_for(examples)
        if merging is None:
            return self.collate(examples)
        return replace(self.collate(examples, audio_tokens=merging.tokens), merging=merging)


class AugmentedBatches:
    """A collate that perturbs each clip's log-mel for training only (``--augment``).

    Two perturbations a new voice or engine brings, neither of which moves a time: a vocal-tract-length
    warp (the spectrum stretched by a factor in [1 - warp, 1 + warp], read off each mel band's centre
    frequency, as VTLP does) and ``masks`` frequency bands of up to ``mask_bins`` mel bins set to the
    clip's mean (SpecAugment without its time masks, which would hide the words being timed). Each
    clip's draw comes from a hash of ``seed``, the batch's example ids and the clip: the same batch is
    perturbed the same way on every run and after a resume, with no state to save. Inference and the
    exported graphs never see it.
    """

    def __init__(self, collate: Callable, features: Features, seed: int = 0, warp: float = 0.1, masks: int = 2,
                 mask_bins: int = 12, settings: FeatureSettings = DEFAULT_SETTINGS):
        if not 0 <= warp < 0.5:
            raise InputError(f"the warp must be in [0, 0.5), got {warp}")
        if masks < 0 or not 0 <= mask_bins < settings.num_mel_bins:
            raise InputError(f"frequency masks need masks >= 0 and 0 <= mask_bins < {settings.num_mel_bins}")
        self.collate, self.features, self.seed = collate, features, seed
        self.warp, self.masks, self.mask_bins = warp, masks, mask_bins
        self._centres = mel_band_centres(settings)

    def rng_for(self, examples: Sequence[Example], example: Example) -> np.random.Generator:
        return np.random.default_rng(batch_draw(self.seed, examples, clip_key(example)))

    def warped(self, mel: np.ndarray, factor: float) -> np.ndarray:
        """``mel`` with its spectrum stretched by ``factor``: band i reads the source at f_i / factor."""
        source = np.interp(self._centres / factor, self._centres, np.arange(len(self._centres)))
        low = np.minimum(np.floor(source).astype(int), len(source) - 2)
        weight = (source - low)[:, None]
        return (mel[low] * (1 - weight) + mel[low + 1] * weight).astype(np.float32)

    def perturbed(self, mel: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        mel = np.asarray(mel, dtype=np.float32)
        out = self.warped(mel, 1 + rng.uniform(-self.warp, self.warp)) if self.warp else mel.copy()
        fill = float(mel.mean())
        for _ in range(self.masks):
            width = int(rng.integers(0, self.mask_bins + 1))
            start = int(rng.integers(0, len(out) - width + 1))
            out[start:start + width] = fill
        return out

    def __call__(self, examples: Sequence[Example], **options) -> Batch:
        def features(example: Example) -> np.ndarray:
            return self.perturbed(self.features(example), self.rng_for(examples, example))

        return self.collate(examples, features=features, **options)
