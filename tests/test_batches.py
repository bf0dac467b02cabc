"""Manifest examples -> padded batches: shapes, padding, masks, the audio cache, length filters and
the resumable length-bucketed sampler."""

import itertools
from dataclasses import replace
from functools import partial

import numpy as np
import pytest
import soundfile
import torch

from framestamp.data.manifest import Example, read_manifest, write_manifest
from framestamp.runtime import InputError
from framestamp.runtime.audio import load_audio
from framestamp.runtime.features import log_mel, mel_band_centres
from framestamp.runtime.frames import FRAME_SECONDS, audio_frames_for_mel, mel_frames_for_samples
from framestamp.training.batches import (AbsentOccurrences, AudioCache, AugmentedBatches, Batch, BucketBatchSampler,
                                         EveryOccurrence, MergedBatches, balance_tasks, clip_key, collate, length_filter)
from framestamp.training.losses import event_segments, poisson_nll

PAD, BOS, EOS, AUDIO = 0, 1, 2, 3
CLIP_SECONDS = [0.5, 1.01, 1.7, 2.3, 3.1, 4.0, 4.6, 6.03]


def prompt_ids_stub(example: Example, num_audio_frames: int) -> tuple[list[int], int]:
    """A stand-in for the model's tokenizer: one token per question word, then the audio, then 2 closers."""
    question = [BOS] + [10 + len(word) for word in example.question.split()]
    return question + [AUDIO] * num_audio_frames + [EOS, EOS], len(question)


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """Sine-tone clips (one at 22.05 kHz, resampled on load) and 2-3 questions per clip."""
    folder = tmp_path_factory.mktemp("tiny")
    (folder / "clips").mkdir()
    examples = []
    for clip, seconds in enumerate(CLIP_SECONDS):
        rate = 22_050 if clip == 2 else 16_000
        t = np.arange(round(seconds * rate)) / rate
        soundfile.write(folder / "clips" / f"{clip}.wav", 0.3 * np.sin(2 * np.pi * (200 + 50 * clip) * t), rate)
        audio = f"clips/{clip}.wav"
        examples.append(Example(id=f"{clip}/speaker", task="speaker", prompt={"occurrence": 1},
                                times=(0.1 * seconds,), duration=seconds, audio=audio))
        # An event ending at the clip's end: past the last 40 ms frame the encoder keeps.
        examples.append(Example(id=f"{clip}/event", task="event", prompt={"event": "tone", "occurrence": 1},
                                times=(seconds - 0.002,), ends=(seconds,), duration=seconds, audio=audio))
        if clip % 2:
            words = tuple(np.round(np.linspace(0.05, seconds, 2 + clip), 3))
            examples.append(Example(id=f"{clip}/transcript", task="transcript",
                                    prompt={"transcript": " ".join(["la"] * len(words))},
                                    times=words, duration=seconds, audio=audio))
    write_manifest(folder / "tiny.jsonl", examples)
    return folder, read_manifest(folder / "tiny.jsonl")


def make_batch(manifest, indices, share_clips=False, **cache_arguments) -> tuple[Batch, AudioCache]:
    folder, examples = manifest
    cache = AudioCache(folder, **cache_arguments)
    return collate([examples[i] for i in indices], cache, prompt_ids_stub, pad_id=PAD, share_clips=share_clips), cache


@pytest.mark.parametrize("share_clips", [False, True])
def test_shapes_padding_and_masks(manifest, share_clips):
    folder, examples = manifest
    batch, _ = make_batch(manifest, range(len(examples)), share_clips=share_clips)
    count = len(examples)
    assert len(batch) == count and batch.mel.dtype == torch.float32 and batch.event_times.dtype == torch.float64
    if share_clips:  # each clip's mel once, whichever question came first; each question points at its clip's row
        clips = list(dict.fromkeys(example.audio for example in examples))
        assert batch.mel.shape[0] == len(clips) < count
        assert batch.clip_of.tolist() == [clips.index(example.audio) for example in examples]
    else:  # a row per example, as graphs fed batch.mel directly expect
        assert batch.mel.shape[0] == count and batch.clip_of is None
        batch.clip_of = torch.arange(count)
    for row, example in enumerate(examples):
        mel = log_mel(load_audio(folder / example.audio))
        mel_length, frames = mel.shape[1], int(batch.num_audio_frames[row])
        clip = int(batch.clip_of[row])
        assert int(batch.mel_lengths[clip]) == mel_length == mel_frames_for_samples(len(load_audio(folder / example.audio)))
        assert frames == audio_frames_for_mel(mel_length)
        torch.testing.assert_close(batch.mel[clip, :, :mel_length], torch.from_numpy(mel), rtol=0, atol=0)
        assert not batch.mel[clip, :, mel_length:].any()  # zeros past the clip

        ids, start = prompt_ids_stub(example, frames)
        tokens = len(ids)
        assert batch.input_ids[row, :tokens].tolist() == ids and int(batch.audio_start[row]) == start
        assert (batch.input_ids[row, tokens:] == PAD).all()
        assert batch.attention_mask[row].tolist() == [1] * tokens + [0] * (batch.input_ids.shape[1] - tokens)
        assert (batch.input_ids[row, start:start + frames] == AUDIO).all()

        assert batch.frame_mask[row].tolist() == [True] * frames + [False] * (batch.frame_mask.shape[1] - frames)
        events = len(example.times)
        assert batch.event_mask[row].tolist() == [True] * events + [False] * (batch.event_mask.shape[1] - events)
    assert batch.frame_mask.shape[1] == int(batch.num_audio_frames.max())
    assert batch.mel.shape[2] == int(batch.mel_lengths.max())
    # Ends where an example has them: its event slots in ends_mask, nothing elsewhere.
    for row, example in enumerate(examples):
        expected = batch.event_mask[row] if example.ends is not None else torch.zeros_like(batch.event_mask[row])
        assert torch.equal(batch.ends_mask[row], expected)
        assert (batch.event_ends[row][~batch.ends_mask[row]] == 0).all()


def test_event_times_fall_in_unmasked_frames(manifest):
    _, examples = manifest
    batch, _ = make_batch(manifest, range(len(examples)))
    frames_end = batch.num_audio_frames.to(torch.float64)[:, None] * FRAME_SECONDS
    times = batch.event_times[batch.event_mask]
    assert (times >= 0).all() and (batch.event_times <= frames_end).all()
    # Times past the kept frames moved by less than the ~40 ms the encoder drops, and only those.
    for row, example in enumerate(examples):
        fitted = batch.event_times[row, : len(example.times)].numpy()
        original = np.array(example.times)
        assert np.all(original - fitted < 0.045) and np.all(fitted <= original)
        np.testing.assert_array_equal(fitted[original <= float(frames_end[row])], original[original <= float(frames_end[row])])
    # The losses agree: every event lands in a real frame (they raise otherwise).
    segments = event_segments(batch.event_times, batch.event_mask, batch.frame_mask,
                              torch.ones(batch.frame_mask.shape, dtype=torch.float64))
    assert batch.frame_mask.gather(1, segments)[batch.event_mask].all()
    log_intensity = torch.zeros(batch.frame_mask.shape)
    assert torch.isfinite(poisson_nll(log_intensity, batch.event_times, batch.event_mask, batch.frame_mask))


def test_ends_fall_in_unmasked_frames_after_their_starts(manifest):
    _, examples = manifest
    with_ends = [i for i, example in enumerate(examples) if example.ends is not None]
    batch, _ = make_batch(manifest, with_ends)
    frames_end = batch.num_audio_frames.to(torch.float64) * FRAME_SECONDS
    assert batch.event_ends.shape == batch.event_times.shape
    assert (batch.event_ends[:, 0] <= frames_end).all() and (batch.event_ends >= batch.event_times).all()


def test_batch_moves_to_a_device(manifest):
    batch, _ = make_batch(manifest, [0, 1])
    moved = batch.to("cpu")
    assert isinstance(moved, Batch) and moved.examples == batch.examples
    assert torch.equal(moved.mel, batch.mel)
    assert (moved.event_ends is None) == (batch.event_ends is None)


def test_cache_shares_clips_between_questions(manifest):
    folder, examples = manifest

    def ask_each(**cache_arguments):  # one question at a time, as batches of other clips come and go
        cache = AudioCache(folder, **cache_arguments)
        for example in examples:
            cache(example)
        return cache

    cache = ask_each()
    assert cache.misses == len(CLIP_SECONDS) and cache.hits == len(examples) - len(CLIP_SECONDS)
    uncached = ask_each(cache_megabytes=0)
    assert len(uncached) == 0 and uncached.misses == len(examples)
    # Room for about half the clips (0.6 MB = ~12 s of log-mel): the least recently used go first.
    small = ask_each(cache_megabytes=0.6)
    assert 0 < len(small) < len(CLIP_SECONDS)
    assert small._cached_bytes <= 0.6 * 2**20
    # A batch sharing clips asks its features once per clip, however many questions it holds.
    _, batch_cache = make_batch(manifest, range(len(examples)), share_clips=True)
    assert batch_cache.misses == len(CLIP_SECONDS) and batch_cache.hits == 0


def test_unusable_examples_are_refused(manifest, tmp_path):
    folder, examples = manifest
    cache = AudioCache(folder)
    late = Example(id="late", task="speaker", prompt={"occurrence": 1}, times=(0.9,), duration=1.0,
                   audio=examples[0].audio)  # clip 0 lasts 0.5 s
    with pytest.raises(InputError, match="late.*0.900 s.*lasts about 0.50 s"):
        collate([late], cache, prompt_ids_stub, pad_id=PAD)
    generated = Example(id="gen", task="speaker", prompt={"occurrence": 1}, times=(0.1,), duration=1.0,
                        generator={"name": "speakers", "seed": 3})
    with pytest.raises(InputError, match="no audio file"):
        collate([generated], cache, prompt_ids_stub, pad_id=PAD)
    soundfile.write(tmp_path / "tick.wav", np.zeros(320), 16_000)  # 20 ms: no 40 ms frame
    tick = Example(id="tick", task="speaker", prompt={"occurrence": 1}, times=(0.0,), duration=0.02,
                   audio=str(tmp_path / "tick.wav"))
    with pytest.raises(InputError, match="no 40 ms audio frame"):
        collate([tick], cache, prompt_ids_stub, pad_id=PAD)
    with pytest.raises(InputError, match="audio_start"):
        collate([examples[0]], cache, lambda example, frames: ([AUDIO] * frames, 1), pad_id=PAD)


def test_length_filter_splits_cleanly(manifest):
    _, examples = manifest
    short = length_filter(examples, max_seconds=4)
    longer = length_filter(examples, min_seconds=4, max_seconds=8)
    assert {e.duration for e in short} == {s for s in CLIP_SECONDS if s <= 4}
    assert {e.duration for e in longer} == {s for s in CLIP_SECONDS if 4 < s <= 8}
    assert len(short) + len(longer) == len(examples)
    assert length_filter(examples) == examples
    with pytest.raises(InputError, match="below"):
        length_filter(examples, min_seconds=8, max_seconds=4)



def test_balance_tasks_tempers_the_mix_and_keeps_the_size():
    counts = {"word": 900, "speaker": 100, "event": 25}
    prompts = {"word": {"word": "la", "occurrence": 1}, "speaker": {"occurrence": 1},
               "event": {"event": "tone", "occurrence": 1}}
    examples = [Example(id=f"{task}/{i}", task=task, prompt=prompts[task], times=(0.5,), duration=2.0,
                        audio=f"{task}{i}.wav") for task, count in counts.items() for i in range(count)]
    assert balance_tasks(examples, 1.0) == sorted(examples, key=lambda e: e.task)  # the manifest's mix
    for power in (0.0, 0.5):
        balanced = balance_tasks(examples, power, seed=3)
        assert len(balanced) == pytest.approx(len(examples), abs=len(counts))
        total = sum(count ** power for count in counts.values())
        for task, count in counts.items():
            taken = [e for e in balanced if e.task == task]
            assert len(taken) == pytest.approx(len(examples) * count ** power / total, abs=1)
            if len(taken) >= count:  # up-sampled: every example at least once, none more than once extra
                assert {e.id for e in taken} == {e.id for e in examples if e.task == task}
                assert max(taken.count(e) for e in taken) - min(taken.count(e) for e in taken) <= 1
            else:  # down-sampled: distinct examples
                assert len({e.id for e in taken}) == len(taken)
        assert balance_tasks(examples, power, seed=3) == balanced and balance_tasks(examples, power, seed=4) != balanced
    with pytest.raises(InputError, match="between 0"):
        balance_tasks(examples, 1.5)

def test_every_occurrence_trains_each_kth_question_on_all_occurrences_of_its_thing_in_its_clip():
    rng = np.random.default_rng(5)
    examples, truth = [], {}  # truth[(clip, thing)] = every start, written down as the clips are made
    for clip in range(6):
        starts = np.sort(rng.uniform(0, 9, 9)).round(3)
        names = rng.choice(["cat", "dog", "sun"], 9)
        audio = f"{clip}.wav"
        for name in set(names):
            truth[(clip, name)] = tuple(float(t) for t, said in zip(starts, names) if said == name)
        seen = {}
        for start, name in zip(starts, names):
            seen[name] = seen.get(name, 0) + 1
            examples.append(Example(id=f"{clip}/{name}/{seen[name]}", task="word",
                                    prompt={"word": str(name), "occurrence": seen[name]}, times=(float(start),),
                                    ends=(float(start) + 0.2,), duration=10.0, audio=audio))
        examples.append(Example(id=f"{clip}/speaker/1", task="speaker", prompt={"occurrence": 1}, times=(0.3,),
                                duration=10.0, audio=audio))
        examples.append(Example(id=f"{clip}/transcript", task="transcript", prompt={"transcript": " ".join(names)},
                                times=tuple(float(t) for t in starts), duration=10.0, audio=audio))
    # An unreliable word left out by a loader: clip 0's word asked only as its 2nd occurrence.
    examples.append(Example(id="0/owl/2", task="word", prompt={"word": "owl", "occurrence": 2}, times=(9.5,),
                            duration=10.0, audio="0.wav"))
    targets = EveryOccurrence(examples)
    for example in examples:
        times, ends = targets(example)
        clip, thing = int(example.id.split("/")[0]), example.id.split("/")[1]
        if example.task == "word" and thing != "owl":
            assert times == truth[(clip, thing)] and ends == tuple(t + 0.2 for t in times)
            assert times[int(example.prompt["occurrence"]) - 1] == example.times[0]  # its own among them
        else:  # a transcript, a lone speaker, an incomplete group: its own events
            assert (times, ends) == (example.times, example.ends)
    assert sum(len(t) > 1 for t in truth.values()) >= 5  # repeats to count


def test_questions_past_the_count_ask_occurrence_n_plus_one_and_train_on_no_event(manifest):
    folder, examples = manifest
    words = [Example(id=f"w/{k}", task="word", prompt={"word": "tone", "occurrence": k}, times=(0.1 * k,),
                     duration=examples[1].duration, audio=examples[1].audio) for k in (1, 2)]
    lone = Example(id="x/2", task="word", prompt={"word": "owl", "occurrence": 2}, times=(0.3,),
                   duration=examples[1].duration, audio=examples[1].audio)  # asked 2nd only: its count is unknown
    own = [*words, lone, examples[0], examples[1]]  # a speaker and an event of clip 0: groups of one
    past = AbsentOccurrences(own, share=1.0)
    asked = {(e.task, e.prompt.get("word") or e.prompt.get("event"), e.prompt["occurrence"]) for e in past.absent}
    assert asked == {("word", "tone", 3), ("speaker", None, 2), ("event", "tone", 2)}  # n + 1 of each complete group
    assert all(past(e) == ((), None) for e in past.absent)
    assert all(past(e) == (e.times, e.ends) for e in own)  # every other question keeps its own events
    fallback = AbsentOccurrences(own, share=1.0, fallback=lambda e: ((0.05,), None))
    assert fallback(words[0]) == ((0.05,), None)
    some = AbsentOccurrences(own, share=0.5)
    assert {e.id for e in some.absent} <= {e.id for e in past.absent}  # a hash of the group picks them: a subset
    assert {e.id for e in AbsentOccurrences(own, share=0.5).absent} == {e.id for e in some.absent}
    batch = collate([words[0], past.absent[0]], AudioCache(folder), prompt_ids_stub, pad_id=PAD, targets=past)
    assert batch.event_mask.sum(-1).tolist() == [1, 0]
    scores = torch.randn(batch.frame_mask.shape, dtype=torch.float64)
    loss = poisson_nll(scores, batch.event_times, batch.event_mask, batch.frame_mask, count_term=True, reduction="none")
    assert float(loss[1]) == pytest.approx(float(scores[1][batch.frame_mask[1]].exp().sum()))  # Lambda(T): no event
    with pytest.raises(InputError, match="share"):
        AbsentOccurrences(own, share=0.0)


def test_collate_takes_the_events_targets_give(manifest):
    folder, examples = manifest
    chosen = [examples[0], examples[1]]
    extra = {chosen[0].id: ((0.01, 0.02), None), chosen[1].id: ((0.1, 0.2, 0.3), (0.15, 0.25, 0.35))}
    batch = collate(chosen, AudioCache(folder), prompt_ids_stub, pad_id=PAD, targets=lambda e: extra[e.id])
    assert batch.event_mask.sum(-1).tolist() == [2, 3]
    assert batch.event_times[1].tolist() == [0.1, 0.2, 0.3] and batch.event_times[0, :2].tolist() == [0.01, 0.02]
    assert batch.ends_mask[0].tolist() == [False] * 3 and batch.event_ends[1].tolist() == [0.15, 0.25, 0.35]


def test_collate_gives_the_every_channel_each_kth_questions_every_occurrence(manifest):
    folder, examples = manifest
    extra = Example(id="0/event/2", task="event", prompt={"event": "tone", "occurrence": 2}, times=(0.45,),
                    ends=(0.5,), duration=examples[1].duration, audio=examples[1].audio)
    chosen = [examples[1], extra, examples[0]] + [e for e in examples if e.task == "transcript"][:1]
    first = replace(examples[1], times=(0.1,), ends=(0.2,))  # clip 0's 1st tone, before the 2nd
    every = EveryOccurrence([first, extra, examples[0]])
    batch = collate([first, extra, examples[0], chosen[3]], AudioCache(folder), prompt_ids_stub, pad_id=PAD,
                    every=every)
    assert batch.every_mask.sum(-1).tolist() == [2, 2, 1, 0]  # both tones for each tone question; none for a transcript
    assert batch.every_times[0].tolist() == batch.every_times[1].tolist() == [0.1, 0.45]
    assert batch.every_times[2, 0].item() == pytest.approx(examples[0].times[0])
    assert batch.event_mask.sum(-1).tolist()[:3] == [1, 1, 1]  # the onset channel keeps the asked occurrence


def fake_examples(count: int, seed: int = 0) -> list[Example]:
    durations = np.random.default_rng(seed).uniform(1, 12, count).round(2)
    return [Example(id=str(i), task="speaker", prompt={"occurrence": 1}, times=(0.5,), duration=float(d),
                    audio=f"{i}.wav") for i, d in enumerate(durations)]


def take(sampler, count):
    """The next ``count`` batches, crossing epochs the way a training loop does."""
    return list(itertools.islice(itertools.chain.from_iterable(iter(sampler) for _ in itertools.count()), count))


def test_sampler_covers_every_example_once_per_epoch_in_similar_lengths():
    examples = fake_examples(203)
    sampler = BucketBatchSampler(examples, batch_size=8, seed=1, pool_batches=5)
    epoch = list(sampler)
    assert len(epoch) == len(sampler) == 26 and sampler.epoch == 1 and sampler.index == 0
    assert sorted(i for batch in epoch for i in batch) == list(range(203))
    assert sum(len(batch) < 8 for batch in epoch) == 1
    durations = np.array([e.duration for e in examples])
    bucketed_spread = np.mean([np.ptp(durations[batch]) for batch in epoch])
    shuffled = np.random.default_rng(0).permutation(203)
    random_spread = np.mean([np.ptp(durations[shuffled[i:i + 8]]) for i in range(0, 203, 8)])
    assert bucketed_spread < random_spread / 3
    assert list(sampler) != epoch  # a new epoch, a new order
    assert sum(len(b) for b in BucketBatchSampler(examples, 8, drop_last=True)) == 200


def test_sampler_is_deterministic():
    examples = fake_examples(50)
    first = take(BucketBatchSampler(examples, 4, seed=7), 40)
    assert take(BucketBatchSampler(examples, 4, seed=7), 40) == first
    assert take(BucketBatchSampler(examples, 4, seed=8), 40) != first
    evaluation = list(BucketBatchSampler(examples, 4, shuffle=False))
    durations = [examples[i].duration for batch in evaluation for i in batch]
    assert durations == sorted(durations)


@pytest.mark.parametrize("stop", [0, 1, 5, 13, 14, 20, 27])  # 13 batches per epoch: stops inside, at and past the end
def test_sampler_resumes_on_the_very_next_batch(stop):
    examples = fake_examples(50)
    uninterrupted = take(BucketBatchSampler(examples, 4, seed=3), 40)
    killed = BucketBatchSampler(examples, 4, seed=3)
    before = take(killed, stop) if stop else []
    state = killed.state_dict()
    resumed = BucketBatchSampler(examples, 4, seed=3)
    resumed.load_state_dict(state)
    assert before + take(resumed, 40 - stop) == uninterrupted


def test_sampler_refuses_a_state_from_other_data():
    state = BucketBatchSampler(fake_examples(50), 4, seed=3).state_dict()
    with pytest.raises(InputError, match="durations_sha1"):
        BucketBatchSampler(fake_examples(50, seed=1), 4, seed=3).load_state_dict(state)
    with pytest.raises(InputError, match="batch_size"):
        BucketBatchSampler(fake_examples(50), 5, seed=3).load_state_dict(state)


def clip_questions(clips: int, per_clip, spacing: float = 1.0) -> list[Example]:
    """``per_clip(c)`` questions about each clip c, clip durations ``spacing`` seconds apart."""
    return [Example(id=f"{c}/{q}", task="speaker", prompt={"occurrence": q + 1}, times=(0.5,),
                    duration=1.0 + spacing * c, audio=f"{c}.wav") for c in range(clips) for q in range(per_clip(c))]


def test_sampler_keeps_questions_about_one_clip_together():
    # Every clip has exactly a batch of questions, durations further apart than the jitter: each batch is one clip.
    examples = clip_questions(12, lambda c: 4)
    groups = [clip_key(example) for example in examples]
    sampler = BucketBatchSampler(examples, 4, seed=2, groups=groups, per_group=4)
    epoch = list(sampler)
    assert sorted(i for batch in epoch for i in batch) == list(range(len(examples)))
    assert all(len({groups[i] for i in batch}) == 1 for batch in epoch)
    # Clips with many questions are cut into runs of per_group; close durations still mix clips.
    # Clips with many questions are cut into runs of up to per_group; runs of several clips share a batch.
    examples = clip_questions(300, lambda c: 3 + c % 7, spacing=0.05)
    groups = [clip_key(example) for example in examples]
    settings = dict(seed=2, drop_last=True, pool_batches=2)
    grouped = list(BucketBatchSampler(examples, 8, groups=groups, per_group=4, **settings))
    mixed = list(BucketBatchSampler(examples, 8, **settings))
    assert len(grouped) == len(mixed) == len(examples) // 8
    assert len({i for batch in grouped for i in batch}) == len(grouped) * 8
    clips_per_batch = [len({groups[i] for i in batch}) for batch in grouped]
    assert np.mean(clips_per_batch) < 0.5 * np.mean([len({groups[i] for i in batch}) for batch in mixed])
    assert np.mean(clips_per_batch) > 2  # not one clip a batch: runs of up to 4 from different clips
    # Deterministic, resumable, and a state saved with other grouping is refused.
    assert list(BucketBatchSampler(examples, 8, groups=groups, per_group=4, **settings)) == grouped
    killed = BucketBatchSampler(examples, 8, groups=groups, per_group=4, **settings)
    before = take(killed, 5)
    resumed = BucketBatchSampler(examples, 8, groups=groups, per_group=4, **settings)
    resumed.load_state_dict(killed.state_dict())
    assert before + take(resumed, len(grouped) - 5) == grouped
    with pytest.raises(InputError, match="per_group"):
        BucketBatchSampler(examples, 8, groups=groups, per_group=2, **settings).load_state_dict(killed.state_dict())
    with pytest.raises(InputError, match="each example's clip"):
        BucketBatchSampler(examples, 8, per_group=4)


def test_works_as_a_dataloader_batch_sampler(manifest):
    folder, examples = manifest
    sampler = BucketBatchSampler(examples, batch_size=3, seed=0)
    loader = torch.utils.data.DataLoader(
        examples, batch_sampler=sampler,
        collate_fn=partial(collate, features=AudioCache(folder), prompt_ids=prompt_ids_stub, pad_id=PAD))
    batches = list(loader)
    assert len(batches) == len(sampler)
    assert sorted(example.id for batch in batches for example in batch.examples) == sorted(e.id for e in examples)


def test_merged_batches_pick_one_ratio_per_batch_the_same_every_time(manifest):
    folder, examples = manifest
    plain = partial(collate, features=AudioCache(folder), prompt_ids=prompt_ids_stub, pad_id=PAD)
    merged = MergedBatches(plain, [0, 0.4], seed=5)
    groups = [examples[start:start + 3] for start in range(0, len(examples) - 2)]
    picks = [merged.merging_for(group) for group in groups]
    assert picks == [merged.merging_for(group) for group in groups]  # no state: a resumed run picks the same
    assert {None if pick is None else pick.ratio for pick in picks} == {None, 0.4}  # both ratios get used
    for group, pick in zip(groups, picks):
        batch, reference = merged(group), plain(group)
        if pick is None:
            assert batch.merging is None and torch.equal(batch.input_ids, reference.input_ids)
            continue
        assert batch.merging.ratio == 0.4
        # The prompts hold the merged token count's placeholders; audio, times and masks are the plain batch's.
        tokens = [pick.tokens(int(frames)) for frames in reference.num_audio_frames]
        assert (batch.input_ids == AUDIO).sum(1).tolist() == tokens
        assert all(count < int(frames) for count, frames in zip(tokens, reference.num_audio_frames) if frames >= 5)
        assert torch.equal(batch.mel, reference.mel) and torch.equal(batch.event_times, reference.event_times)
        assert torch.equal(batch.frame_mask, reference.frame_mask)
    with pytest.raises(InputError, match="at least one ratio"):
        MergedBatches(plain, [])


def test_augmented_batches_perturb_the_mel_the_same_every_time_and_leave_times_alone(manifest):
    folder, examples = manifest
    cache = AudioCache(folder)
    plain = partial(collate, features=cache, prompt_ids=prompt_ids_stub, pad_id=PAD, share_clips=True)
    augmented = AugmentedBatches(plain, cache, seed=3)
    group = examples[:6]
    batch, reference = augmented(group), plain(group)
    assert not torch.equal(batch.mel, reference.mel)
    assert torch.equal(augmented(group).mel, batch.mel)  # no state: a resumed run draws the same
    assert not torch.equal(AugmentedBatches(plain, cache, seed=4)(group).mel, batch.mel)
    for name in ("event_times", "event_mask", "frame_mask", "num_audio_frames", "input_ids", "mel_lengths"):
        assert torch.equal(getattr(batch, name), getattr(reference, name)), name
    # Through MergedBatches, the way training stacks them: merging's placeholders, augmentation's mel.
    stacked = MergedBatches(augmented, [0.4], seed=5)(group)
    assert torch.equal(stacked.mel, batch.mel) and stacked.merging.ratio == 0.4


def test_augmented_warp_moves_a_tone_where_a_higher_tone_sits():
    """A tone at f Hz warped by 1.15 peaks in the band a tone at 1.15 f peaks in (or a neighbour)."""
    augmented = AugmentedBatches(lambda examples, features: None, None, masks=0)
    seconds = np.arange(16_000) / 16_000
    centres = mel_band_centres()
    for hertz in (400.0, 1200.0, 2500.0, 5000.0):
        tone = log_mel((0.3 * np.sin(2 * np.pi * hertz * seconds)).astype(np.float32))
        higher = log_mel((0.3 * np.sin(2 * np.pi * 1.15 * hertz * seconds)).astype(np.float32))
        warped = augmented.warped(tone, 1.15)
        assert abs(int(warped[:, 20].argmax()) - int(higher[:, 20].argmax())) <= 1, hertz
        assert abs(centres[warped[:, 20].argmax()] / centres[tone[:, 20].argmax()] - 1.15) < 0.1
    assert np.array_equal(augmented.warped(tone, 1.0), tone)


def test_augmented_masks_are_bands_of_the_clip_mean():
    augmented = AugmentedBatches(lambda examples, features: None, None, warp=0.0, masks=2, mask_bins=12)
    mel = np.random.default_rng(0).normal(size=(128, 40)).astype(np.float32)
    for seed in range(20):
        out = augmented.perturbed(mel, np.random.default_rng(seed))
        changed = np.flatnonzero((out != mel).any(axis=1))
        assert np.allclose(out[changed], mel.mean())  # whole rows, every frame, set to the mean
        runs = np.split(changed, np.flatnonzero(np.diff(changed) > 1) + 1) if len(changed) else []
        assert len(runs) <= 2 and all(len(run) <= 24 for run in runs)
        assert np.array_equal(np.delete(out, changed, axis=0), np.delete(mel, changed, axis=0))
    with pytest.raises(InputError, match="warp"):
        AugmentedBatches(None, None, warp=0.6)
