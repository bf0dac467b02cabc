"""Recordings longer than a window: the k-th occurrence counts from the recording's start and a transcript
aligns over the whole file in order, across window boundaries (against one pass of a model that hears
the whole recording); one window reproduces one pass of the shipped model frame for frame; windows are
read from the file as the whole file would be; five minutes run in bounded memory."""

import json
import re
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

import framestamp
from framestamp.cli import main
from framestamp.data.manifest import read_manifest
from framestamp.runtime import InputError, Locator, Query
from framestamp.runtime.audio import load_audio
from framestamp.runtime.features import log_mel
from framestamp.runtime.frames import audio_frames_for_mel
from framestamp.runtime.prompts import ordinal
from framestamp.runtime.windows import AudioStream, plan_windows

ARTIFACT = Path(framestamp.__file__).parent / "models" / "omni-tiny-synth-onnx"
RATE = 16_000
FRAME = 640  # samples per 40 ms frame
BURST_FRAMES = 5  # a burst lasts 0.2 s
TONES = {"dog": 500.0, "cat": 1200.0, "sun": 2500.0, "the": 3600.0}  # a word is a tone burst of its own pitch


def tone_bin(frequency: float) -> int:
    burst = np.sin(2 * np.pi * frequency * np.arange(RATE // 4) / RATE).astype(np.float32)
    return int(np.argmax(log_mel(burst)[:, 10]))


class ListeningGraphs:
    """Stands in for the graphs with a model that hears perfectly, whatever it is given: a word is a tone
    burst, its k-th occurrence the k-th burst of its pitch in the audio it hears, and a transcript's words
    fall on the bursts in order (words beyond the bursts it hears go to the end of its audio: they are
    still to come)."""

    def __init__(self, tokenizer, channels):
        self.tokenizer, self.channels = tokenizer, channels
        self.bins = {word: tone_bin(frequency) for word, frequency in TONES.items()}

    def encode(self, mel, mel_lengths):
        frames = audio_frames_for_mel(np.asarray(mel_lengths))
        centre = mel[:, :, 1: 4 * int(frames.max()): 4]  # the mel frame in the middle of each 40 ms frame
        loud = centre.max(axis=1) > 0.5 * (mel.max(axis=(1, 2))[:, None] + mel.min(axis=(1, 2))[:, None])
        pitch = centre.argmax(axis=1)
        return np.stack([loud, pitch], axis=-1).astype(np.float32), frames

    def scores(self, input_ids, attention_mask, audio_start, audio, frame_counts):
        scores = np.zeros((len(input_ids), audio.shape[1], self.channels), np.float32)
        scores[..., 1:] = -5.0
        for row, ids in enumerate(input_ids):
            heard = audio[row, : int(frame_counts[row])]
            loud = heard[:, 0] > 0
            onsets = np.flatnonzero(loud & ~np.concatenate(([False], loud[:-1])))
            text = self.tokenizer.decode(ids.tolist())
            asked = re.search(r"the (\d+)\w\w occurrence of the word '(\w+)'", text)
            if asked:
                k, word = int(asked.group(1)), asked.group(2)
                mine = [f for f in onsets if abs(heard[f, 1] - self.bins[word]) <= 2]
                peaks = [mine[min(k, len(mine)) - 1]] if mine else []  # none heard: no peak anywhere
                height = 10.0 if k <= len(mine) else 2.0  # fewer than k heard: a low peak on the last one
                if peaks and self.channels > 2:  # onset, inside, end: the burst's end, as a chained occurrence reads it
                    scores[row, min(peaks[0] + BURST_FRAMES, len(heard) - 1), 2] = 10.0
            else:
                words = re.search(r"Transcript:\n(.*)\nBased", text).group(1).split()
                peaks = list(onsets[: len(words)])
                extra = len(words) - len(peaks)
                after = max(len(heard) - 2 * extra + 1, (peaks[-1] + 2) if peaks else 0)
                peaks += [min(after + 2 * i, len(heard) - 1) for i in range(extra)]
            scores[row, peaks, 0] = height if asked else 10.0
        return scores


def listening(window_seconds, overlap_seconds=4.0, transcript_by="words", chain_seconds=None):
    """A Locator on the perfect listener; by default without the chain, so that the windows do the counting."""
    locator = Locator(ARTIFACT, threads=1, window_seconds=window_seconds, overlap_seconds=overlap_seconds,
                      transcript_by=transcript_by, chain_seconds=chain_seconds)
    locator.graphs = ListeningGraphs(locator.tokenizer, len(locator.manifest["channels"]))
    locator.span_context = None  # the listener hears each frame alone: the windows any model gets (span: test_span.py)
    locator.absent_below, locator.vocabulary = {}, None  # the shipped model's thresholds do not fit this one
    return locator


def bursts_recording(onsets_and_words, seconds):
    samples = np.zeros(int(seconds * RATE), np.float32)
    for frame, word in onsets_and_words:
        t = np.arange(BURST_FRAMES * FRAME) / RATE
        samples[frame * FRAME: frame * FRAME + t.size] = 0.5 * np.sin(2 * np.pi * TONES[word] * t)
    return samples


def test_the_kth_occurrence_counts_from_the_recordings_start_across_window_boundaries():
    seconds = 46.0
    windows = plan_windows(round(seconds * 25), 300, 100)  # 12 s windows, 4 s overlap
    # Bursts on every kind of boundary: window starts and ends, the middle of each overlap (where owned
    # stretches meet) and a frame either side of it, plus a few in between.
    edges = sorted({f for w in windows for f in (w.start, w.stop - 5, w.own_start - 1, w.own_start, w.own_start + 1)
                    if 0 < f < round(seconds * 25) - 6} | {37, 140, 470, 905})
    edges = [f for i, f in enumerate(edges) if i == 0 or f - edges[i - 1] >= 7]  # bursts are 5 frames long
    words = [str(w) for w in np.random.default_rng(5).choice(list(TONES), size=len(edges))]
    audio = bursts_recording(list(zip(edges, words)), seconds)
    windowed, one_pass = listening(12.0), listening(None)
    assert len(windows) >= 5
    for word in TONES:
        starts = [f * 0.04 + 0.02 for f, w in zip(edges, words) if w == word]
        for k in range(1, len(starts) + 1):
            expected = one_pass.word(audio, word, k, rate=RATE)
            assert expected.times == pytest.approx([starts[k - 1]])  # the independent answer: the k-th burst
            found = windowed.word(audio, word, k, rate=RATE)
            assert found.times == pytest.approx(expected.times, abs=1e-9), (word, k)  # the same frame
            assert found.warnings == ()
        too_many = windowed.word(audio, word, len(starts) + 1, rate=RATE)
        assert any(f"found {len(starts)} '{word}' occurrence(s)" in w for w in too_many.warnings)


def test_a_first_occurrence_heard_only_in_a_late_window_is_found_there():
    """Every window answers a first-occurrence question somewhere; the recording's first occurrence is in the
    earliest window whose candidate is heard as loudly as the best, not in the first window."""
    seconds = 50.0
    audio = bursts_recording([(100, "cat"), (400, "sun"), (1000, "dog"), (1100, "dog"), (1150, "cat")], seconds)
    windowed, one_pass = listening(12.0), listening(None)
    for word, frame in (("dog", 1000), ("sun", 400), ("cat", 100)):
        expected = one_pass.word(audio, word, 1, rate=RATE)
        assert expected.times == pytest.approx([frame * 0.04 + 0.02])  # the independent answer: its first burst
        assert windowed.word(audio, word, 1, rate=RATE).times == pytest.approx(expected.times, abs=1e-9), word


def test_a_chained_kth_occurrence_counts_from_the_recordings_start_in_windows_and_in_one_pass():
    """Past chain_seconds a k-th occurrence is a chain of first occurrences, each asked of the audio after the
    previous one's end (runtime/chain.py), over a recording longer than a window as in one pass; asked one
    past the last, it warns that the k-th is probably not there."""
    seconds = 46.0
    # Bursts 7 frames apart on a window edge, and gaps longer than a window (a link then walks windows).
    edges = [37, 140, 290, 297, 470, 610, 760, 1100, 1130, 1140]
    words = ["dog", "cat", "cat", "dog", "dog", "cat", "dog", "dog", "cat", "sun"]  # sun: no word asked, last
    audio = bursts_recording(list(zip(edges, words)), seconds)
    for locator in (listening(12.0, chain_seconds=8.0), listening(20.0, chain_seconds=8.0), listening(None, chain_seconds=8.0)):
        locator.absent_below, locator.max_trained_seconds = {"word": 5.0}, None
        for word in ("dog", "cat"):
            starts = [f * 0.04 + 0.02 for f, w in zip(edges, words) if w == word]
            assert len(starts) >= 3 and starts[-1] > 8.0
            for k in range(1, len(starts) + 1):
                found = locator.word(audio, word, k, rate=RATE)
                assert found.times == pytest.approx([starts[k - 1]]), (locator.window_seconds, word, k)
                assert found.warnings == () and found.duration == pytest.approx(seconds)
            # One past the last: the chain's last link hears no further burst of it (a sun burst follows) and says
            # so; where only silence is left no link is asked, and the joint answer or the windows say it instead.
            too_many = locator.word(audio, word, len(starts) + 1, rate=RATE)
            ask = ordinal(len(starts) + 1)
            assert any(f"{ask} occurrence of the word '{word}' is probably not in the audio" in w
                       or f"found {len(starts)} '{word}' occurrence(s)" in w or f"may hold fewer than {len(starts) + 1}" in w
                       for w in too_many.warnings), too_many.warnings


class SlopedListening(ListeningGraphs):
    """The perfect listener with tracks that fall away from each peak, faster before it than after it, so
    that the most probable ordered placement of occurrences past the last burst is unique."""

    def scores(self, *args):
        scores = super().scores(*args)
        frames = np.arange(scores.shape[1])
        for row in scores:
            peak = int(np.argmax(row[:, 0]))
            row[:, 0] -= np.where(frames < peak, 0.02 * (peak - frames), 0.01 * (frames - peak))
        return scores


def test_an_occurrence_past_the_last_is_placed_as_one_pass_places_it():
    """Fewer bursts than asked, on a recording of one window: the windowed path's guess is one pass's
    (jointly after the earlier occurrences), not the k-th question's own peak on the last burst."""
    word = next(iter(TONES))
    audio = bursts_recording([(40, word), (120, word)], 9.0)
    locator = listening(None)
    locator.graphs = SlopedListening(locator.tokenizer, len(locator.manifest["channels"]))
    expected = locator.word(audio, word, 3, rate=RATE)
    # By hand: the 2nd burst's onset is frame 120, and ordered decoding keeps occurrences 2 frames apart; the
    # gentler fall after a peak puts the 3rd at frame 122 rather than the 2nd at 118.
    assert expected.times == pytest.approx([122 * 0.04 + 0.02])
    stream = AudioStream(audio, RATE, "bursts")
    assert len(plan_windows(stream.frames, 300, 100)) == 1
    locator.window_seconds, locator.overlap_seconds = 12.0, 4.0
    found = locator._windowed(Query(audio, "word", {"word": word, "occurrence": 3}, rate=RATE), stream)
    assert found.times == expected.times
    assert any(f"found 2 '{word}' occurrence(s)" in w for w in found.warnings)


class EveryListening(ListeningGraphs):
    """The perfect listener of a head trained on every occurrence (``occurrences="every"``): a word
    question's track marks every burst of its pitch at rate 1 and nothing elsewhere, whatever k it asks,
    so that Lambda(T) is the number of bursts. It counts the word questions it is asked."""

    asked = 0

    def scores(self, input_ids, attention_mask, audio_start, audio, frame_counts):
        scores = np.full((len(input_ids), audio.shape[1], self.channels), -5.0, np.float32)
        scores[..., 0] = -40.0
        for row, ids in enumerate(input_ids):
            heard = audio[row, : int(frame_counts[row])]
            loud = heard[:, 0] > 0
            onsets = np.flatnonzero(loud & ~np.concatenate(([False], loud[:-1])))
            word = re.search(r"occurrence of the word '(\w+)'", self.tokenizer.decode(ids.tolist())).group(1)
            scores[row, [f for f in onsets if abs(heard[f, 1] - self.bins[word]) <= 2], 0] = 0.0
            self.asked += 1
        return scores


def test_a_head_of_every_occurrence_counts_the_kth_over_the_whole_recording():
    """One question per window, its tracks stitched and counted once: the k-th burst from the recording's
    start across window boundaries, as one pass counts it, and no question asked about earlier occurrences."""
    seconds = 40.0
    windows = plan_windows(round(seconds * 25), 300, 100)
    edges = sorted({f for w in windows for f in (w.own_start - 1, w.own_start, w.stop - 5) if 0 < f < 990} | {30, 500})
    edges = [f for i, f in enumerate(edges) if i == 0 or f - edges[i - 1] >= 7]
    words = [str(w) for w in np.random.default_rng(9).choice(["dog", "cat"], size=len(edges))]
    audio = bursts_recording(list(zip(edges, words)), seconds)
    windowed, one_pass = listening(12.0), listening(None)
    for locator in (windowed, one_pass):
        locator.graphs = EveryListening(locator.tokenizer, len(locator.manifest["channels"]))
        locator.occurrences, locator.max_trained_seconds = "every", None
    for word in ("dog", "cat"):
        starts = [f * 0.04 + 0.02 for f, w in zip(edges, words) if w == word]
        assert len(starts) >= 3
        for k in range(1, len(starts) + 1):
            before = one_pass.graphs.asked
            expected = one_pass.word(audio, word, k, rate=RATE)
            assert one_pass.graphs.asked == before + 1  # the k-th alone: no count check's questions
            assert expected.times == pytest.approx([starts[k - 1]]) and expected.warnings == ()
            found = windowed.word(audio, word, k, rate=RATE)
            assert found.times == pytest.approx(expected.times, abs=1e-9), (word, k)
            assert found.warnings == () and found.confidence == pytest.approx(expected.confidence)
        for locator in (windowed, one_pass):
            too_many = locator.word(audio, word, len(starts) + 1, rate=RATE)
            assert any(f"found {len(starts)} '{word}' occurrence(s)" in w for w in too_many.warnings)
            assert too_many.times[0] > starts[-1]  # after the last one heard


@pytest.mark.parametrize("window, overlap, spacing, shift", [(12.0, 4.0, 25, 0), (12.0, 4.0, 25, -1), (12.0, 4.0, 25, 1),
                                                             (12.0, 2.0, 9, 0)])
@pytest.mark.parametrize("by", ["words", "question"])
def test_a_transcript_aligns_over_the_whole_recording_in_order(window, overlap, spacing, shift, by):
    """Words at a steady rate, on the window and owned-stretch boundaries (shift 0) or a frame either side;
    timed by each word's question (the k-th time the window's part says it) or by the transcript question."""
    seconds = 50.0
    edges = list(range(spacing + shift, round(seconds * 25) - 8, spacing))
    words = [str(w) for w in np.random.default_rng(spacing + shift).choice(list(TONES), size=len(edges))]
    audio = bursts_recording(list(zip(edges, words)), seconds)
    transcript = " ".join(words)
    expected = listening(None, transcript_by=by).transcript(audio, transcript, rate=RATE)
    assert expected.times == pytest.approx([f * 0.04 + 0.02 for f in edges])
    found = listening(window, overlap, transcript_by=by).transcript(audio, transcript, rate=RATE)
    assert found.times == pytest.approx(expected.times, abs=1e-9) and found.words == tuple(words)


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    folder = tmp_path_factory.mktemp("speech")
    assert main(["synth", str(folder), "--tasks", "words", "--count", "3", "--seed", "8", "--voices", "en-029",
                 "--min-seconds", "8", "--max-seconds", "11"]) == 0
    return folder, read_manifest(folder / "manifest.jsonl")


def test_one_window_answers_as_one_pass_of_the_shipped_model(speech):
    folder, examples = speech
    locator = Locator(ARTIFACT, threads=1, window_seconds=None, chain_seconds=None)  # the windows' own path
    transcript = next(e for e in examples if e.task == "transcript")
    audio = str(folder / transcript.audio)
    questions = [Query(audio, "transcript", dict(transcript.prompt), with_intensity=True)]
    questions += [Query(audio, "word", dict(e.prompt), with_intensity=True) for e in examples
                  if e.task == "word" and e.audio == transcript.audio][:4]
    questions.append(Query(audio, "word", {"word": "zebra", "occurrence": 2}, with_intensity=True))
    for query in questions:
        expected = locator.run([query])[0]
        stream = AudioStream(audio, None, audio)
        assert len(plan_windows(stream.frames, 300, 100)) == 1
        locator.window_seconds, locator.overlap_seconds = 12.0, 4.0
        found = locator._windowed(query, stream)  # the windowed path, here with one window
        locator.window_seconds = None
        assert found.times == expected.times and found.ends == expected.ends
        assert np.allclose(found.confidence, expected.confidence, atol=1e-9)
        assert np.array_equal(found.log_intensity, expected.log_intensity)


def test_windows_are_read_as_the_whole_file(speech, tmp_path):
    folder, examples = speech
    samples, _ = soundfile.read(folder / examples[0].audio, dtype="float32")
    import soxr

    stereo = soxr.resample(np.tile(samples, 2), RATE, 44_100)
    path = tmp_path / "stereo.flac"
    soundfile.write(path, np.stack([stereo, 0.5 * stereo], axis=1), 44_100)
    whole = load_audio(path)
    stream = AudioStream(path, None, str(path))
    assert stream.samples == len(whole)
    pieces = [stream.read(start, min(start + 7 * RATE, stream.samples)) for start in range(0, stream.samples, 7 * RATE)]
    assert np.abs(np.concatenate(pieces) - whole).max() < 1e-4


def test_what_a_window_cannot_answer_is_refused(speech):
    folder, examples = speech
    audio = str(folder / examples[0].audio)
    locator = Locator(ARTIFACT, threads=1, window_seconds=4.0, overlap_seconds=1.0)
    locator.span_context = None  # windows heard as recordings of their own, as a model without a bounded span gets
    with pytest.raises(InputError, match="cannot keep its meaning across windows"):
        locator.ask(audio, "When does it rain?")
    with pytest.raises(InputError, match="returns one time"):
        locator.run([Query(audio, "word", {"word": "dog", "occurrence": 1}, count=2)])
    with pytest.raises(InputError, match="overlap_seconds .* must be shorter"):
        Locator(ARTIFACT, window_seconds=4.0, overlap_seconds=4.0)
    with pytest.raises(InputError, match="longer than the 6 s this model takes"):
        Locator(ARTIFACT, max_seconds=6.0, window_seconds=4.0, overlap_seconds=1.0).word(audio, "dog")
    # Bad audio longer than a window gets the one-pass path's messages, found by the block-by-block check.
    long = 6 * RATE
    for samples, message in [(np.zeros(long, np.int16), "silent"), (np.full(long, 0.25, np.float32), "constant offset"),
                             (np.r_[np.ones(long, np.float32) * 0.1, np.nan], "NaN"),
                             (np.full(long, 300.0, np.float32), "far outside")]:
        with pytest.raises(InputError, match=message):
            locator.word(samples, "dog", rate=RATE)


LOCATE_UNDER_A_LIMIT = """
import resource, sys
limit = int(sys.argv[1])
resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
from framestamp.cli import main
raise SystemExit(main(["locate", sys.argv[2], "--transcript", sys.argv[3], "--format", "json"]))
"""


def test_five_minutes_run_in_bounded_memory(speech, tmp_path):
    folder, examples = speech
    transcript = next(e for e in examples if e.task == "transcript")
    samples, _ = soundfile.read(folder / transcript.audio, dtype="float32")
    repeats = int(np.ceil(300 / (len(samples) / RATE)))
    path = tmp_path / "five-minutes.flac"
    soundfile.write(path, np.tile(samples, repeats), RATE)
    text = " ".join([transcript.prompt["transcript"]] * repeats)
    limit = 3 << 30  # address space, not resident memory: ONNX Runtime and NumPy reserve more than they touch
    done = subprocess.run([sys.executable, "-c", LOCATE_UNDER_A_LIMIT, str(limit), str(path), text],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout)
    times = answer["times"]
    assert len(times) == len(text.split()) and answer["duration"] >= 300
    assert all(0 <= a < b for a, b in zip(times, times[1:])) and times[-1] < answer["duration"]


def test_long_and_short_recordings_in_one_run_keep_their_order():
    edges = [30, 260, 470]
    long_audio = bursts_recording(list(zip(edges, ["dog", "cat", "dog"])), 20.0)
    short_audio = bursts_recording([(40, "dog"), (90, "dog")], 5.0)
    locator = listening(12.0)
    queries = [Query(long_audio, "word", {"word": "dog", "occurrence": 2}, rate=RATE),
               Query(short_audio, "word", {"word": "dog", "occurrence": 2}, rate=RATE),
               Query(long_audio, "transcript", {"transcript": "dog cat dog"}, rate=RATE)]
    together = locator.run(queries)
    assert [answer.times for answer in together] == [locator.run([query])[0].times for query in queries]
    assert together[0].times == pytest.approx([470 * 0.04 + 0.02]) and together[1].times == pytest.approx([90 * 0.04 + 0.02])


def test_by_default_a_recording_as_long_as_the_training_clips_is_one_pass_and_a_longer_one_windows():
    """The default windows ("auto"): up to the model's training clips (the shipped model's are up to 30 s)
    one pass answers, as in training; past them 20 s windows do. An explicit window is always kept."""
    trained = Locator(ARTIFACT).max_trained_seconds
    assert 20.0 < trained < 31.0
    for seconds, windowed_by_default in ((trained - 1.0, False), (trained + 5.0, True)):
        edges = list(range(20, round(seconds * 25) - 8, 45))
        words = [("dog", "cat")[i % 2] for i in range(len(edges))]
        audio = bursts_recording(list(zip(edges, words)), seconds)
        for window, windows_expected in (("auto", windowed_by_default), (20.0, True), (None, False)):
            locator = listening(window)
            calls = []
            windowed = locator._windowed
            locator._windowed = lambda query, stream: calls.append(stream.seconds) or windowed(query, stream)
            found = locator.transcript(audio, " ".join(words), rate=RATE)
            assert found.times == pytest.approx([f * 0.04 + 0.02 for f in edges])
            assert bool(calls) == windows_expected, (seconds, window)


def test_a_transcript_keeps_its_order_where_the_speaking_rate_changes():
    """Slow speech, then fast: a window over the slow part holds fewer words than the recording's average
    rate predicts. The words it does not hold fall past its end for the next window, instead of being
    squeezed into it: the same frames as one pass over the whole recording."""
    seconds = 50.0
    edges = list(range(20, 600, 40)) + list(range(610, round(seconds * 25) - 8, 12))
    words = [str(w) for w in np.random.default_rng(11).choice(list(TONES), size=len(edges))]
    audio = bursts_recording(list(zip(edges, words)), seconds)
    transcript = " ".join(words)
    expected = listening(None).transcript(audio, transcript, rate=RATE)
    assert expected.times == pytest.approx([f * 0.04 + 0.02 for f in edges])
    found = listening(12.0, 4.0).transcript(audio, transcript, rate=RATE)
    assert found.times == pytest.approx(expected.times, abs=1e-9)


def test_tiled_recordings_hold_the_clips_in_order_with_every_words_start(speech, tmp_path):
    """`bench long-audio tiled` joins a manifest's transcript clips: the FLAC holds their samples one after
    another (again from the first when it needs more), and each word's start is its clip's start plus the
    lengths of the clips before it, read here from the clips' own files."""
    from framestamp.benchmarks.long_audio import tiled_recording

    folder, examples = speech
    clips = [e for e in examples if e.task == "transcript"]
    sounds = [soundfile.read(folder / e.audio, dtype="float32")[0] for e in clips]
    target = sum(len(s) for s in sounds) / RATE + 1.0  # one clip more than the manifest holds
    words, starts = tiled_recording(folder / "manifest.jsonl", target, tmp_path / "tiled.flac")
    order = clips + clips[:1]
    joined, _ = soundfile.read(tmp_path / "tiled.flac", dtype="float32")
    np.testing.assert_allclose(joined, np.concatenate(sounds + sounds[:1]), atol=1e-4)  # FLAC keeps 16-bit samples
    offsets = np.cumsum([0] + [len(s) for s in sounds])[:len(order)] / RATE
    assert words == [w for e in order for w in e.prompt["transcript"].split()]
    np.testing.assert_allclose(starts, [offset + t for offset, e in zip(offsets, order) for t in e.times])
    out = tmp_path / "out"
    assert main(["bench", "long-audio", "tiled", str(folder / "manifest.jsonl"), "--seconds", "12", "--windows",
                 "none,8/2", "--threads", "1", "--out", str(out)]) == 0
    rows = json.loads((out / "long-audio-tiled.json").read_text())["rows"]
    needed = int(np.searchsorted(np.cumsum([len(s) for s in sounds]) / RATE, 12.0)) + 1  # whole clips up to 12 s
    assert [row["window"] for row in rows] == ["none", "8/2"]
    assert all(row["words"] == sum(len(e.times) for e in clips[:needed]) and 0 <= row["acc40"] <= 1 for row in rows)


def test_bench_accuracy_scores_word_questions_with_and_without_the_chain(speech, tmp_path):
    """`bench long-audio accuracy --chain-after 0,8 --tasks word`: a row per chain time over every N-th word
    question, each row's accuracy what a Locator with that chain time answers, asked here one by one."""
    folder, examples = speech
    out = tmp_path / "out"
    assert main(["bench", "long-audio", "accuracy", str(folder / "manifest.jsonl"), "--every", "3", "--windows", "none",
                 "--chain-after", "0,8", "--tasks", "word", "--out", str(out)]) == 0
    rows = json.loads((out / "long-audio-accuracy.json").read_text())["rows"]
    assert [row["chain_after"] for row in rows] == [0.0, 8.0]
    chosen = [e for e in examples if e.task == "word"][::3]
    later = [e for e in chosen if e.prompt["occurrence"] >= 2]
    assert later and all(e.duration > 8 for e in later)  # 8-11 s clips: the chain has something to do
    for row, chain in zip(rows, (None, 8.0)):
        locator = Locator(ARTIFACT, threads=1, window_seconds=None, chain_seconds=chain)
        right = [abs(locator.word(str(folder / e.audio), e.prompt["word"], e.prompt["occurrence"]).times[0] - e.times[0])
                 <= 0.04 for e in chosen]
        assert row["word_events"] == len(chosen) and row["transcript_events"] == 0 and row["transcript_acc40"] is None
        assert row["word_acc40"] == pytest.approx(np.mean(right))
        assert row["word k>=2_events"] == len(later)
    assert "| none | 8 |" in (out / "long-audio-accuracy.md").read_text()


def test_bench_first_scores_each_words_first_occurrence_over_recordings_from_different_clips(speech, tmp_path):
    """`bench long-audio first`: each recording starts from a different clip; its words are asked where they are
    first heard, spread over the recording, and each row's accuracy is what a Locator answers asked one by one."""
    from framestamp.benchmarks.long_audio import tiled_recording

    folder, examples = speech
    clips = [e for e in examples if e.task == "transcript"]
    words, starts = tiled_recording(folder / "manifest.jsonl", 1.0, tmp_path / "one.flac", start=1)
    assert words == clips[1].prompt["transcript"].split() and np.allclose(starts, clips[1].times)
    out = tmp_path / "out"
    assert main(["bench", "long-audio", "first", str(folder / "manifest.jsonl"), "--seconds", "14", "--recordings", "2",
                 "--questions", "3", "--windows", "none", "--out", str(out)]) == 0
    (row,) = json.loads((out / "long-audio-first.json").read_text())["rows"]
    locator = Locator(ARTIFACT, threads=1, window_seconds=None)
    right = []
    for number in range(2):
        path = tmp_path / f"{number}.flac"
        words, starts = tiled_recording(folder / "manifest.jsonl", 14.0, path, start=number * (len(clips) // 2))
        first = {}
        for word, start in zip(words, starts):
            first.setdefault(word, start)
        order = sorted(first, key=first.get)
        for word in [order[i] for i in np.unique(np.linspace(0, len(order) - 1, 3).round().astype(int))]:
            right.append(abs(locator.word(str(path), word, 1).times[0] - first[word]) <= 0.04)
    assert row["questions"] == 6 and row["acc40"] == pytest.approx(np.mean(right))
    assert sum(bucket["questions"] for bucket in row["by_where"]) == 6
