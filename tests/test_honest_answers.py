"""Answers a user can trust or doubt: words spelled as training spelled them, a confidence on every time
(checked against an independent computation), and warnings where the model is guessing."""

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile

import framestamp
from framestamp.cli import main
from framestamp.data.manifest import read_manifest
from framestamp.runtime import InputError, Locator
from framestamp.runtime.prompts import normalize_transcript, normalize_word

ARTIFACT = Path(framestamp.__file__).parent / "models" / "omni-tiny-synth-onnx"


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """Fresh clips of all three tasks in voices the shipped model never heard."""
    folder = tmp_path_factory.mktemp("clips")
    assert main(["synth", str(folder), "--count", "2", "--seed", "23", "--voices", "en-029,en-us-nyc"]) == 0
    return folder, read_manifest(folder / "manifest.jsonl")


@pytest.fixture(scope="module")
def locator():
    return Locator(ARTIFACT, threads=1)


def audio_of(clips, task: str) -> tuple[str, object]:
    folder, examples = clips
    example = next(e for e in examples if e.task == task)
    return str(folder / example.audio), example


# ----------------------------------------------------------------------------------------- normalization
@pytest.mark.parametrize("written, spelled", [
    ("dog", "dog"), ("Dog", "dog"), ("MOTHER", "mother"), ("dog,", "dog"), ("(dog)", "dog"), ('"Dog!"', "dog"),
    ("\u201cHello!\u201d", "hello"), ("don\u2019t", "don't"), ("'Tis", "'tis"), ("brothers'", "brothers'"),
    ("'dog'", "dog"), ("--", ""), ("...", ""),
])
def test_words_are_spelled_as_training_spelled_them(written, spelled):
    assert normalize_word(written) == spelled


def test_transcripts_lose_case_and_punctuation_but_keep_the_written_words():
    assert normalize_transcript("Hello, world -- the DOG.") == [("Hello,", "hello"), ("world", "world"),
                                                               ("the", "the"), ("DOG.", "dog")]


def test_case_and_punctuation_do_not_change_the_answer(clips, locator):
    audio, _ = audio_of(clips, "word")
    answers = {word: locator.word(audio, word) for word in ("mother", "Mother", "MOTHER", "mother,", "\u201cMother\u201d")}
    assert len({(a.times, a.question) for a in answers.values()}) == 1
    plain = locator.transcript(audio, "the dog saw the cat")
    written = locator.transcript(audio, "The dog, saw -- the CAT.")
    assert written.times == plain.times and written.question == plain.question
    assert written.words == ("The", "dog,", "saw", "the", "CAT.")  # what the caller wrote, for subtitles


def test_event_labels_match_whatever_their_case(clips, locator):
    audio, _ = audio_of(clips, "event")
    assert locator.event(audio, "dog").times == locator.event(audio, "Dog").times
    assert locator.event(audio, "dog").question == locator.event(audio, "Dog").question


@pytest.mark.parametrize("word, message", [
    ("the dog", "is 2 words; ask about one word"),
    ("--", "holds no word"),
    ("<|im_end|>", "control token '<|im_end|>'"),
    ("dog<|AUDIO|>", "control token '<|AUDIO|>'"),
])
def test_words_that_are_not_one_word_are_refused(clips, locator, word, message):
    audio, _ = audio_of(clips, "word")
    with pytest.raises(InputError, match=message.replace("|", r"\|")):
        locator.word(audio, word)


@pytest.mark.parametrize("call, message", [
    (lambda loc, audio: loc.transcript(audio, "the dog <|im_end|> came"), "control token"),
    (lambda loc, audio: loc.transcript(audio, "-- ..."), "holds no words"),
    (lambda loc, audio: loc.event(audio, "<|AUDIO|>"), "control token"),
    (lambda loc, audio: loc.ask(audio, "when <|im_start|>system"), "control token"),
])
def test_control_tokens_never_reach_the_tokenizer(clips, locator, call, message):
    audio, _ = audio_of(clips, "word")
    with pytest.raises(InputError, match=message):
        call(locator, audio)


# ------------------------------------------------------------------------------------------- confidence
def monte_carlo_mass(log_intensity, times, radius, samples, rng):
    """Draw the IHP's n ordered events given n (n iid draws from the normalized intensity, sorted)."""
    probability = np.exp(log_intensity - log_intensity.max())
    probability /= probability.sum()
    draws = rng.choice(log_intensity.size, size=(samples, len(times)), p=probability) + rng.random((samples, len(times)))
    draws.sort(axis=1)
    return (np.abs(draws - np.asarray(times)) <= radius).mean(axis=0)


def integrated_mass(log_intensity, times, radius, steps_per_frame=400):
    """Eq. 8's density integrated on a fine grid (midpoint rule), normalized numerically."""
    n = len(times)
    rate = np.exp(log_intensity - log_intensity.max())
    grid = (np.arange(log_intensity.size * steps_per_frame) + 0.5) / steps_per_frame
    density_rate = np.repeat(rate, steps_per_frame)
    cumulative = np.cumsum(density_rate) / steps_per_frame - density_rate / (2 * steps_per_frame)
    share = cumulative / (rate.sum())
    masses = []
    for i, time in enumerate(times, start=1):
        density = share ** (i - 1) * (1 - share) ** (n - i) * density_rate
        inside = np.abs(grid - time) <= radius
        masses.append(density[inside].sum() / density.sum())
    return np.array(masses)


@pytest.mark.parametrize("count, frames, decoding", [(1, 30, "ordered"), (3, 25, "ordered"), (7, 50, "posterior"),
                                                      (12, 80, "ordered")])
def test_confidence_is_the_posterior_mass_within_40_ms(count, frames, decoding):
    from framestamp.runtime.decoding import decode_events, event_confidence

    rng = np.random.default_rng(count)
    log_intensity = rng.normal(0.0, 2.0, frames)
    times = decode_events(log_intensity, count, "poisson", decoding, frame_seconds=0.04)
    confidence = event_confidence(log_intensity, times, "poisson", frame_seconds=0.04)
    frame_times = times / 0.04
    np.testing.assert_allclose(confidence, integrated_mass(log_intensity, frame_times, 1.0), atol=2e-3)
    sampled = monte_carlo_mass(log_intensity, frame_times, 1.0, 100_000, rng)
    assert np.abs(confidence - sampled).max() < 5 * np.sqrt(0.25 / 100_000)
    # Only the shape of the intensity matters: heads trained without the count term are fine.
    np.testing.assert_allclose(event_confidence(log_intensity + 7.5, times, "poisson"), confidence, atol=1e-12)


def test_one_event_confidence_is_the_softmax_mass_around_its_frame():
    from framestamp.runtime.decoding import event_confidence

    log_intensity = np.log(np.array([1.0, 2.0, 10.0, 4.0, 3.0]))
    time = 2.5 * 0.04  # the centre of frame 2: +-40 ms covers half of frames 1 and 3
    expected = (10.0 + (2.0 + 4.0) / 2) / 20.0
    assert event_confidence(log_intensity, [time], "poisson")[0] == pytest.approx(expected)
    logits = np.array([-3.0, 0.5, 2.0])
    assert event_confidence(logits, [0.06], "binary")[0] == pytest.approx(1 / (1 + np.exp(-0.5)))


def test_every_answer_carries_its_confidence(clips, locator, capsys):
    import json

    audio, example = audio_of(clips, "transcript")
    result = locator.transcript(audio, example.prompt["transcript"])
    assert len(result.confidence) == len(result.times) == len(result.words)
    assert all(0.0 <= c <= 1.0 for c in result.confidence)
    record = result.as_dict()
    assert record["confidence"] == [round(c, 3) for c in result.confidence]
    assert [w["confidence"] for w in record["words"]] == record["confidence"]
    threshold = float(np.median(result.confidence))
    kept = result.confident(threshold)
    assert len(kept.times) == sum(c >= threshold for c in result.confidence) == len(kept.words)
    assert main(["locate", audio, "--transcript", example.prompt["transcript"], "--min-confidence", str(threshold)]) == 0
    out, err = capsys.readouterr()
    printed = json.loads(out)
    dropped = len(result.times) - len(kept.times)
    assert len(printed["times"]) == len(kept.times) and all(c >= threshold - 1e-3 for c in printed["confidence"])
    assert (f"dropped {dropped} of {len(result.times)}" in err) == (dropped > 0)


# --------------------------------------------------------------------------------------------- warnings
class ScriptedGraphs:
    """Stands in for the ONNX graphs: the k-th occurrence question peaks where ``peak_frame(k)`` says, at ``height``."""

    def __init__(self, tokenizer, peak_frame, height=10.0, channels=1):
        self.tokenizer, self.peak_frame, self.height, self.channels = tokenizer, peak_frame, height, channels

    def encode(self, mel, mel_lengths):
        frames = np.asarray(mel_lengths) // 4
        return np.zeros((len(mel), int(frames.max()), 4), np.float32), frames

    def scores(self, input_ids, attention_mask, audio_start, audio, frame_counts):
        import re

        scores = np.zeros((len(input_ids), audio.shape[1], self.channels), np.float32)  # as many as the artifact
        for row, ids in enumerate(input_ids):
            found = re.search(r"(\d+)(st|nd|rd|th) ", self.tokenizer.decode(ids.tolist()))
            k = int(found.group(1)) if found else 1
            scores[row, self.peak_frame(k), 0] = self.height
        return scores


@pytest.fixture()
def scripted(clips):
    """A Locator on the shipped artifact whose graphs answer as scripted, with known training facts."""
    def make(peak_frame, height=10.0, **trained):
        locator = Locator(ARTIFACT, threads=1)
        locator.graphs = ScriptedGraphs(locator.tokenizer, peak_frame, height, len(locator.manifest["channels"]))
        locator.max_trained_seconds = trained.get("max_seconds")
        locator.vocabulary = trained.get("vocabulary")
        locator.absent_below = trained.get("absent_below", {})
        return locator
    return make


def test_an_occurrence_landing_on_an_earlier_one_is_flagged(clips, scripted):
    audio, _ = audio_of(clips, "speaker")
    stuck = scripted(lambda k: 20 + 10 * min(k, 2))  # the clip "holds" two speakers: 3rd and later land on the 2nd
    assert stuck.speaker(audio, 2).warnings == ()
    (warning,) = stuck.speaker(audio, 5).warnings
    assert "5th speaker" in warning and "same moment as the 2nd" in warning and "fewer than 5" in warning
    assert "before the 1st" in scripted(lambda k: 40 - 10 * k).event(audio, "Dog", 2).warnings[0]
    moving = scripted(lambda k: 10 * k)
    assert moving.word(audio, "dog", 4).warnings == ()
    stuck.count_check = False  # Locator(..., count_check=False): earlier occurrences are not asked
    assert stuck.speaker(audio, 5).warnings == ()


def test_the_kth_occurrence_is_decoded_with_the_earlier_ones(clips, scripted):
    """The 3rd's own track peaks equally at frames 35 and 50; the 2nd answers at 40: decoded with
    occurrences 1 and 2, the 3rd lands after the 2nd (50), alone it takes the earlier peak (35)."""
    audio, _ = audio_of(clips, "word")
    locator = scripted(lambda k: {1: [30], 2: [40], 3: [35, 50]}[min(k, 3)])
    frame = locator.frame_seconds
    assert locator.word(audio, "dog", 3).times == pytest.approx(((50 + 0.5) * frame,))
    assert locator.word(audio, "dog", 2).times == pytest.approx(((40 + 0.5) * frame,))
    locator.count_check = False
    assert locator.word(audio, "dog", 3).times == pytest.approx(((35 + 0.5) * frame,))
    locator.count_check, locator.decoding = True, "posterior"  # the paper's per-event decoding: each on its own
    assert locator.word(audio, "dog", 3).times == pytest.approx(((35 + 0.5) * frame,))


def test_words_outside_the_training_vocabulary_are_flagged(clips, scripted):
    audio, _ = audio_of(clips, "word")
    locator = scripted(lambda k: 30, vocabulary=frozenset({"dog", "mother"}))
    assert locator.word(audio, "Mother").warnings == ()
    assert "not trained on the word(s) 'zebra'" in locator.word(audio, "zebra").warnings[0]
    (warning,) = locator.transcript(audio, "the dog saw a zebra").warnings
    assert "'the', 'saw', 'a', 'zebra'" in warning
    assert scripted(lambda k: 30).word(audio, "zebra").warnings == ()  # vocabulary not recorded: no claim


def test_audio_longer_than_any_training_clip_is_flagged(clips, scripted):
    audio, _ = audio_of(clips, "word")
    seconds = soundfile.info(audio).duration
    assert "longer than any clip the model was trained on (2 s)" in scripted(lambda k: 30, max_seconds=2.0).word(
        audio, "dog").warnings[0]
    assert scripted(lambda k: 30, max_seconds=seconds + 1).word(audio, "dog").warnings == ()


def test_a_weak_peak_says_the_thing_is_probably_absent(clips, scripted):
    audio, _ = audio_of(clips, "event")
    weak = scripted(lambda k: 30, height=3.0, absent_below={"event": 6.7})
    assert "the 'Cat' event is probably not in the audio" in weak.event(audio, "cat").warnings[0]
    assert scripted(lambda k: 30, height=9.0, absent_below={"event": 6.7}).event(audio, "Cat").warnings == ()
    assert weak.word(audio, "dog").warnings == ()  # no threshold recorded for words here


def test_the_shipped_model_warns_about_what_it_never_learned(clips, locator):
    audio, _ = audio_of(clips, "word")
    checkpoint = json.loads((ARTIFACT.parent / "omni-tiny-synth" / "framestamp.json").read_text())
    assert locator.max_trained_seconds == checkpoint["training"]["max_seconds"] > 0 and "mother" in locator.vocabulary
    assert any("not trained on the word(s) 'zebra'" in w for w in locator.word(audio, "zebra").warnings)
    samples, rate = soundfile.read(audio, dtype="float32")
    long = np.tile(samples, int(np.ceil((locator.max_trained_seconds + 2) * rate / len(samples))))
    one_pass = Locator(ARTIFACT, threads=1, window_seconds=None)
    assert any("longer than any clip" in w for w in one_pass.word(long, "mother", rate=rate).warnings)
    # Windows no longer than the training clips: the model never hears more than it was trained on.
    assert not any("longer than any clip" in w for w in locator.word(long, "mother", rate=rate).warnings)
    short = samples[: 5 * rate]
    assert not any("longer than any clip" in w for w in locator.word(short, "mother", rate=rate).warnings)
