"""Random bad input, to the Locator and to `framestamp locate`: every failure is one of framestamp's own
errors (runtime/errors.py) with a one-line message, never another exception; whatever is answered is
a well-formed answer (issue 12). Hypothesis draws the inputs, deterministically (derandomize), so CI
sees the same cases every run. To search further: FRAMESTAMP_PROPERTY_EXAMPLES=20000
FRAMESTAMP_PROPERTY_RANDOM=1 python -m pytest tests/test_bad_inputs_property.py --hypothesis-seed=N"""

import math
import os
from pathlib import Path

import numpy as np
import pytest
import soundfile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framestamp.cli import main
from framestamp.runtime import FramestampError, Locator, Query, Timestamps
from framestamp.runtime.artifact import SHIPPED_ARTIFACT

RATE = 16_000
EXAMPLES = int(os.environ.get("FRAMESTAMP_PROPERTY_EXAMPLES", 1000))  # calls; a sixteenth as many Locator options,
PROPERTY = settings(max_examples=EXAMPLES, deadline=None,  # and 15% as many command lines
                    derandomize="FRAMESTAMP_PROPERTY_RANDOM" not in os.environ, database=None,
                    suppress_health_check=list(HealthCheck))
TASKS = ("word", "speaker", "event", "transcript", "raw")

DTYPES = [np.float32, np.float64, np.float16, np.int16, np.int32, np.int8, np.uint8, np.uint16, np.int64, np.bool_,
          np.complex64, object, "<U1", "datetime64[ms]", [("left", "f4"), ("right", "f4")]]
LENGTHS = [0, 1, 100, 639, 640, 4_000, 16_000, 24_000]
SCALES = [0.0, 1e-6, 1e-4, 0.3, 1.0, 63.0, 64.0, 1e6, 1e30]
RATES = [16_000, 8_000, 44_100, 0, -16_000, 3_999, 384_001, 10**9, 16_000.0, 16_000.5, math.nan, True, None, "16000",
         np.int32(22_050), np.int64(16_000)]
ODD_VALUES = [None, 5, 1.5, True, b"dog", ["dog"], {"word": "dog"}, math.nan, object()]
ODD_WORDS = ["", " ", "--", "<|im_end|>", "<|AUDIO|>", "{word}", "{0}", "%s", "x" * 5_000, "the dog", "dog\x00",
             "do\ud800g", "\u202edog", "DOG!!", "'dog'", "ǅ", "İ", "\n", "dog " * 1_500]
OCCURRENCES = st.one_of(st.integers(-3, 40), st.sampled_from([0, True, False, 1.5, "2", None, 2**63, math.nan,
                                                               np.int64(3), [1]]))
TEXT = st.one_of(st.text(max_size=40), st.text(st.characters(exclude_categories=()), max_size=12),
                 st.sampled_from(ODD_WORDS), st.sampled_from(ODD_VALUES), st.sampled_from(["dog", "the", "Dog,"]))


@st.composite
def arrays(draw):
    """An audio array that is wrong in dtype, shape or values (or, now and then, fine)."""
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    length = draw(st.sampled_from(LENGTHS))
    layout = draw(st.sampled_from(["mono", "channels", "transposed", "no-channels", "scalar", "cube"]))
    t = np.arange(length) / RATE
    samples = np.sin(2 * np.pi * (200 + 300 * t) * t) * draw(st.sampled_from(SCALES))
    damage = draw(st.sampled_from(["none", "nan", "inf", "dc", "noise", "sparse"]))
    if damage in ("nan", "inf") and length:
        samples[rng.integers(length)] = np.nan if damage == "nan" else -np.inf
    elif damage == "dc":
        samples = np.full(length, draw(st.sampled_from([0.0, 0.5, -1.0, 1e-5])))
    elif damage == "noise":
        samples = rng.normal(scale=draw(st.sampled_from(SCALES)), size=length)
    elif damage == "sparse":
        samples = np.zeros(length)
        samples[:: max(1, length // 3)] = 0.9
    if layout == "channels":
        samples = np.stack([samples] * draw(st.sampled_from([1, 2, 7])), axis=1)
    elif layout == "transposed":
        samples = np.stack([samples, samples])
    elif layout == "no-channels":
        samples = np.zeros((length, 0))
    elif layout == "scalar":
        samples = np.array(samples[0] if length else 0.0)
    elif layout == "cube":
        samples = samples[: length - length % 4].reshape(2, 2, -1) if length >= 4 else samples.reshape(1, 1, -1)
    dtype = draw(st.sampled_from(DTYPES))
    try:
        with np.errstate(all="ignore"):
            if dtype == "datetime64[ms]":
                return samples.astype(np.int64).astype(dtype)
            if isinstance(dtype, list):
                return np.zeros(samples.shape, dtype=dtype)
            if np.dtype(dtype).kind in "iu":
                info = np.iinfo(dtype)
                return np.clip(samples * info.max, info.min, info.max).astype(dtype)
            return samples.astype(dtype)
    except (ValueError, TypeError, OverflowError):
        return samples


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict:
    """Audio paths that are bad in every way a path can be, and one good clip."""
    folder = tmp_path_factory.mktemp("bad-files")
    t = np.arange(RATE) / RATE
    good = folder / "good.wav"
    soundfile.write(str(good), (0.3 * np.sin(2 * np.pi * (200 + 300 * t) * t)).astype(np.float32), RATE)
    cut = folder / "cut.wav"
    cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    text = folder / "text.wav"
    text.write_text("not audio")
    empty = folder / "empty.flac"
    empty.write_bytes(b"")
    return {"good": good, "cut": cut, "text": text, "empty": empty, "folder": folder, "missing": folder / "gone.wav",
            "long name": folder / ("a" * 300 + ".wav"), "nul": str(folder / "a\x00.wav"), "blank": ""}


@pytest.fixture(scope="module")
def locator():
    return Locator("shipped", threads=1)


def audio_inputs(files: dict):
    return st.one_of(arrays(), arrays(), arrays(), st.sampled_from(sorted(files.values(), key=str)),
                     st.sampled_from(ODD_VALUES + [list(np.zeros(800)), np.zeros(800).tobytes()]))


def check_answer(answer) -> None:
    """What an answer must look like, whatever was asked."""
    assert isinstance(answer, Timestamps)
    times = np.asarray(answer.times, dtype=float)
    assert np.isfinite(times).all() and (times >= 0).all() and (times <= answer.duration + 0.04).all()
    assert len(answer.confidence) == len(times) and all(0.0 <= c <= 1.0 for c in answer.confidence)
    assert all(isinstance(w, str) and w for w in answer.warnings)


def check_refusal(error: BaseException) -> None:
    assert isinstance(error, FramestampError), f"{type(error).__name__}: {error}"
    message = str(error)
    assert message.strip() and "\n" not in message, f"not one line: {message!r}"


@st.composite
def calls(draw, files):
    """One call on the Locator's public surface, (method, arguments, keyword arguments), with bad parts."""
    audio = draw(audio_inputs(files))
    rate = draw(st.sampled_from(RATES))
    options = {"rate": rate, "with_intensity": draw(st.sampled_from([False, True, "yes", None]))}
    kind = draw(st.sampled_from(["word", "word+transcript", "speaker", "event", "transcript", "ask", "run"]))
    text, occurrence = draw(TEXT), draw(OCCURRENCES)
    if kind == "word":
        return "word", (audio, text, occurrence), options
    if kind == "word+transcript":
        return "word", (audio, text, occurrence), {**options, "transcript": draw(TEXT)}
    if kind == "speaker":
        return "speaker", (audio, occurrence), options
    if kind == "event":
        return "event", (audio, draw(st.one_of(TEXT, st.sampled_from(["Dog", "cat", "DOG", " dog "]))), occurrence), options
    if kind == "transcript":
        return "transcript", (audio, text), options
    if kind == "ask":
        return "ask", (audio, text), {**options, "count": occurrence}
    task = draw(st.one_of(st.sampled_from(TASKS), st.sampled_from(ODD_VALUES), TEXT))
    fields = draw(st.one_of(st.sampled_from([None, [], {}]), st.dictionaries(
        st.sampled_from(["word", "event", "transcript", "occurrence", "extra"]), st.one_of(TEXT, OCCURRENCES),
        max_size=3)))
    query = Query(audio, task, fields, count=draw(OCCURRENCES), rate=rate, question=draw(TEXT))
    batch = draw(st.sampled_from(["list", "bare", "tuple", "nested"]))
    return "run", ({"list": [query], "bare": query, "tuple": (query,), "nested": [[query]]}[batch],), {}


def test_random_bad_calls_get_framestamp_errors_or_well_formed_answers(locator, files):
    @PROPERTY
    @given(call=calls(files))
    def property_holds(call):
        method, arguments, options = call
        try:
            answers = getattr(locator, method)(*arguments, **options)
        except Exception as error:  # noqa: BLE001 (the property: every failure is framestamp's own)
            check_refusal(error)
            return
        for answer in answers if isinstance(answers, list) else [answers]:
            check_answer(answer)

    property_holds()


LOCATOR_OPTIONS = {
    "threads": [0, -1, True, 1.5, "2", None], "batch_size": [0, -1, True, 1.5, "2", None, 1],
    "max_seconds": [math.nan, math.inf, -1, 0, "10", True, None, 2.0], "max_prompt_tokens": [0, -1, "5", 1.5, True, None],
    "decoding": [None, 5, "POSTERIOR", "viterbi", "ordered"], "providers": [None, [""], ["Bogus"], "CPU",
                                                                           ("CPUExecutionProvider", 5), []],
    "backend": [None, 5, "TensorRT", "cuda"], "precision": ["fp32", 5, "int4", None],
    "artifact": [None, 5, "", "Shipped", b"shipped", "/nonexistent/artifact", SHIPPED_ARTIFACT / "manifest.json"],
}


def test_random_bad_locator_options_are_refused_in_one_line(files):
    @settings(PROPERTY, max_examples=EXAMPLES // 16)
    @given(options=st.fixed_dictionaries({}, optional={name: st.sampled_from(values)
                                                       for name, values in LOCATOR_OPTIONS.items()}))
    def property_holds(options):
        artifact = options.pop("artifact", "shipped")
        try:
            Locator(artifact, **options)
        except Exception as error:  # noqa: BLE001
            check_refusal(error)

    property_holds()


# ------------------------------------------------------------------------------------------------ the CLI
class OpenedOnce:
    """Locator as the CLI builds it, each distinct one opened once (opening hashes and loads the graphs)."""

    def __init__(self):
        self.opened = {}

    def __call__(self, artifact, **options):
        key = (str(artifact), tuple(sorted((name, str(value)) for name, value in options.items())))
        if key not in self.opened:
            self.opened[key] = Locator(artifact, **options)
        return self.opened[key]


ARGUMENT_VALUES = st.one_of(st.text(max_size=20), st.sampled_from(["dog", "Dog", "2", "0", "-1", "1e9", "nan", "inf",
                                                                   "99999999999999999999", "", "--word", "<|im_end|>"]))
FLAGS = ["--word", "--speaker", "--event", "--transcript", "--occurrence", "--artifact", "--backend", "--providers",
         "--precision", "--decoding", "--format", "--min-confidence", "--plot"]


def test_random_bad_command_lines_are_refused_in_one_line(files, tmp_path, monkeypatch, capsys):
    import framestamp.runtime.locator as locator_module

    monkeypatch.setattr(locator_module, "Locator", OpenedOnce())
    monkeypatch.chdir(tmp_path)  # where a --plot that is accepted lands

    @settings(PROPERTY, max_examples=EXAMPLES * 3 // 20)
    @given(audio=st.sampled_from(sorted(map(str, files.values()))),
           options=st.lists(st.tuples(st.sampled_from(FLAGS), ARGUMENT_VALUES), max_size=4))
    def property_holds(audio, options):
        argv = ["locate", audio] + [part for pair in options for part in pair]
        try:
            status = main(argv)
        except SystemExit as exit:  # argparse's own one-line usage error
            status = exit.code
        err = capsys.readouterr().err
        assert status in (0, 2), (argv, status, err)
        assert "Traceback" not in err
        if status == 2 and "usage:" not in err:
            assert err.strip().splitlines()[-1].startswith("framestamp locate: error: "), err

    property_holds()
