"""A bounded decoder span: an audio frame's state depends on a bounded stretch of audio, so a long
recording answered in windows gives exactly the one-pass answer; the graphs keep parity with PyTorch;
the position-shift aid moves audio positions and nothing else."""

import numpy as np
import pytest
import torch

from framestamp.cli import main
from framestamp.export.artifact import export_fp32
from framestamp.export.parity import check_parity
from framestamp.runtime import InputError, Locator, Query
from framestamp.runtime.artifact import read_manifest
from framestamp.runtime.features import DEFAULT_SETTINGS
from framestamp.runtime.windows import span_windows
from framestamp.training.aids import Aids
from framestamp.training.checkpoint import build_model, save_checkpoint
from framestamp.training.model import HeadConfig

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning", "ignore::FutureWarning", "ignore::DeprecationWarning")
SPAN, LOOKAHEAD, LAYERS = 10, 2, 3  # omni-tiny has 3 decoder layers
RATE = 16_000


def decoder_inputs(model, frames: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    question = 4
    input_ids = torch.randint(10, 100, (2, question + frames + 2), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, -3:] = 0  # the second row is padded: its audio is 3 frames shorter
    audio = torch.randn(2, frames, model.info.hidden_size, generator=generator)
    return input_ids, attention_mask, torch.tensor([question, question]), audio, torch.tensor([frames, frames - 3])


def scores(model, inputs, audio=None, positions=None):
    input_ids, attention_mask, audio_start, original, frame_counts = inputs
    with torch.no_grad():
        return model.frame_scores(input_ids, attention_mask, audio_start, original if audio is None else audio,
                                  frame_counts, positions).scores


def test_a_frame_depends_on_the_layers_times_the_span_before_it_and_the_look_ahead_after():
    model = build_model("omni-tiny", HeadConfig(lookahead=LOOKAHEAD, span=SPAN), seed=0).eval()
    assert model.backbone.config.get_text_config().num_hidden_layers == LAYERS
    input_ids, attention_mask, audio_start, audio, frame_counts = decoder_inputs(model, 60)
    audio.requires_grad_(True)
    for frame in (0, 30, 45):
        score = model.frame_scores(input_ids, attention_mask, audio_start, audio, frame_counts).scores[0, frame].sum()
        (gradient,) = torch.autograd.grad(score, audio)
        heard = np.flatnonzero(gradient[0].abs().sum(-1).numpy())  # the audio frames this frame's score depends on
        expected = np.arange(max(0, frame - LAYERS * (SPAN - 1)), frame + LOOKAHEAD + 1)
        assert np.array_equal(heard, expected)
        assert not gradient[1].any()  # nor on another row


def test_an_unbounded_span_is_the_paper_model_exactly():
    full = build_model("omni-tiny", HeadConfig(lookahead=LOOKAHEAD), seed=0).eval()
    wide = build_model("omni-tiny", HeadConfig(lookahead=LOOKAHEAD, span=10_000), seed=0).eval()
    inputs = decoder_inputs(full, 40)
    assert torch.equal(scores(full, inputs), scores(wide, inputs))
    narrow = build_model("omni-tiny", HeadConfig(lookahead=LOOKAHEAD, span=SPAN), seed=0).eval()
    assert not torch.allclose(scores(full, inputs), scores(narrow, inputs))  # past the span it differs


def test_shifting_audio_positions_together_keeps_audio_to_audio_distances():
    """Audio moved further from the question changes the scores (the question's distance is heard), but the
    question's own tokens and the shifted positions are all that change: shifting by 0 is the identity."""
    model = build_model("omni-tiny", HeadConfig(lookahead=LOOKAHEAD, span=SPAN), seed=0).eval()
    inputs = decoder_inputs(model, 30)
    plain = scores(model, inputs)
    at_zero = scores(model, inputs, positions=torch.arange(30, dtype=torch.float32)[None].expand(2, -1))
    assert torch.allclose(plain, at_zero, atol=1e-6)
    far = scores(model, inputs, positions=1000.0 + torch.arange(30, dtype=torch.float32)[None].expand(2, -1))
    assert not torch.allclose(plain, far, atol=1e-4)


def test_the_position_shift_aid_moves_half_the_rows_by_whole_frames_within_its_range():
    model = build_model("omni-tiny", HeadConfig(), seed=0)
    assert model.shifted_positions(None, 4, 10, "cpu") is None  # off: positions as in one pass
    model.aids = Aids(position_shift=50)
    torch.manual_seed(0)
    positions = model.shifted_positions(None, 400, 10, "cpu")
    offsets = positions - torch.arange(10, dtype=torch.float32)
    assert (offsets == offsets[:, :1]).all()  # a row moves as a whole
    moved = offsets[:, 0]
    assert torch.equal(moved, moved.round()) and moved.min() == 0 and moved.max() <= 50
    assert 0.35 < (moved > 0).float().mean() < 0.65 and moved.max() >= 45
    with pytest.raises(InputError):
        Aids(position_shift=-1)
    with pytest.raises(InputError):
        HeadConfig(span=-3)


def test_span_windows_own_every_frame_once_and_hear_what_it_depends_on():
    for frames, own, context, lookahead in [(1, 5, 9, 2), (100, 7, 27, 2), (101, 25, 0, 0), (640, 100, 600, 12)]:
        windows = span_windows(frames, own, context, lookahead)
        owned = np.concatenate([np.arange(w.own_start, w.own_stop) for w in windows])
        assert np.array_equal(owned, np.arange(frames))
        for window in windows:
            assert window.start == max(0, window.own_start - context)
            assert window.stop == min(frames, window.own_stop + lookahead)
    with pytest.raises(InputError):
        span_windows(10, 0, 3, 1)


@pytest.fixture(scope="module")
def span_artifact(tmp_path_factory):
    """A random-init tiny Omni model with a bounded span, trained (as recorded) with shifted positions."""
    folder = tmp_path_factory.mktemp("span")
    model = build_model("omni-tiny", HeadConfig(lookahead=LOOKAHEAD, span=SPAN, channels=("onset", "end")), seed=0)
    checkpoint = save_checkpoint(model, folder / "checkpoint", features=DEFAULT_SETTINGS.to_json(),
                                 training={"aids": {"position_shift": 2500}, "max_seconds": 8.0})
    export_fp32(checkpoint, folder / "fp32")
    return checkpoint, folder / "fp32"


@pytest.fixture(scope="module")
def speech(tmp_path_factory):
    folder = tmp_path_factory.mktemp("speech")
    assert main(["synth", str(folder), "--tasks", "words", "--count", "3", "--seed", "7",
                 "--min-seconds", "2", "--max-seconds", "5"]) == 0
    return folder / "manifest.jsonl"


def test_the_artifact_records_the_span_its_layers_and_the_shift(span_artifact):
    manifest = read_manifest(span_artifact[1])
    assert manifest["head"]["span"] == SPAN
    assert manifest["limits"]["decoder_layers"] == LAYERS
    assert manifest["trained_on"]["position_shift_seconds"] == pytest.approx(100.0)
    locator = Locator(span_artifact[1], window_seconds=3.0, overlap_seconds=1.0)
    assert locator.span_context == LAYERS * (SPAN - 1)
    assert locator.max_seconds == pytest.approx(108.0)  # as far as training shifted the audio, plus its clips
    assert locator.span_own == 75  # a window owns its 3 s
    third = -(-LAYERS * (SPAN - 1) // 3)
    assert third > 0.2 * 25  # longer than a 0.2 s window's 5 frames
    assert Locator(span_artifact[1], window_seconds=0.2, overlap_seconds=0.05).span_own == third  # or a third of its context


def test_span_graphs_equal_pytorch_past_the_span(span_artifact, speech):
    checkpoint, artifact = span_artifact
    report = check_parity(checkpoint, artifact, speech, batch_sizes=(1, 3), seconds=(0.5, 20.0), progress=False)
    assert report.end_to_end.max_abs <= 1e-4 and not report.failures()


def mixture(seconds: float, seed: int) -> np.ndarray:
    """Noise with tone bursts: something for a random model's tracks to differ on."""
    rng = np.random.default_rng(seed)
    audio = 0.05 * rng.standard_normal(int(seconds * RATE))
    for start in rng.uniform(0, seconds - 0.3, size=int(seconds)):
        at = int(start * RATE)
        audio[at: at + 4000] += 0.5 * np.sin(2 * np.pi * rng.uniform(200, 3000) * np.arange(4000) / RATE)
    return audio.astype(np.float32)


def test_past_its_one_pass_a_span_model_answers_in_the_windows_every_model_gets(span_artifact):
    """Audio longer than the model's one pass reaches (as far as training shifted its audio, plus its clips:
    108 s here) is not refused: each window is heard as a recording of its own, as windows are for a model
    without a span, and the answers keep their order over the whole recording."""
    windowed = Locator(span_artifact[1], window_seconds=3.0, overlap_seconds=1.0)
    without_span = Locator(span_artifact[1], window_seconds=3.0, overlap_seconds=1.0)
    without_span.span_context = None  # the windows any model gets
    audio = mixture(windowed.max_seconds + 6.0, seed=5)
    assert windowed.max_seconds == pytest.approx(108.0) and not windowed._span_pass(len(audio) / RATE)
    queries = [Query(audio, "word", {"word": "dog", "occurrence": k}, rate=RATE) for k in (1, 2, 3)]
    queries += [Query(audio, "event", {"event": "dog", "occurrence": 1}, rate=RATE),
                Query(audio, "speaker", {"occurrence": 2}, rate=RATE),
                Query(audio, "transcript", {"transcript": "dog cat dog bird"}, rate=RATE)]
    answers = windowed.run(queries)
    for expected, answer in zip(without_span.run(queries), answers):
        assert answer.times == pytest.approx(expected.times, abs=1e-9)
    seconds = len(audio) / RATE
    words = [answer.times[0] for answer in answers[:3]]
    assert words == sorted(words) and len(set(words)) == 3 and 0 <= words[0] and words[-1] < seconds
    transcript = answers[-1].times
    assert len(transcript) == 4 and all(a < b for a, b in zip(transcript, transcript[1:])) and transcript[-1] < seconds


@pytest.mark.parametrize("window, overlap", [(3.0, 1.0), (7.0, 2.0), (0.2, 0.05)])
def test_windows_give_exactly_the_one_pass_answer(span_artifact, window, overlap):
    """Scores equal one pass's frame for frame over 30 s (windows of 3 and 7 s, each hearing 1.08 s of context,
    and windows owning a third of it), and so do the answers: a word's k-th occurrence (decoded with 1..k-1,
    chained past 8 s), an event's, a k-th speaker, a question of one's own wording asked for three times."""
    one_pass = Locator(span_artifact[1], window_seconds=None)
    windowed = Locator(span_artifact[1], window_seconds=window, overlap_seconds=overlap)
    audio = mixture(30.0, seed=3)
    asked = windowed._prepare(Query(audio, "word", {"word": "dog", "occurrence": 1}, rate=RATE))
    assert asked.frames > windowed.span_own + windowed.span_context  # answered a window at a time
    assert np.abs(one_pass._forward([asked])[0] - windowed._forward([asked])[0]).max() <= 1e-4
    queries = [Query(audio, "word", {"word": "dog", "occurrence": 3}, rate=RATE),
               Query(audio, "event", {"event": "dog", "occurrence": 2}, rate=RATE),
               Query(audio, "speaker", {"occurrence": 4}, rate=RATE),
               Query(audio, "raw", count=3, rate=RATE, question="When do the tones start?")]
    for expected, answer in zip(one_pass.run(queries), windowed.run(queries)):
        assert np.allclose(expected.times, answer.times, atol=1e-3)
        assert np.allclose(expected.ends, answer.ends, atol=1e-3)
        # 30 s heard at once is past the 8 s training clips; a span model hears at most its span at once
        assert any("longer than any clip" in w for w in expected.warnings)
        assert not any("longer than any clip" in w for w in answer.warnings)
    short = mixture(2.0, seed=4)  # short clips beside a long one in one run: each in its own way
    both = [Query(short, "word", {"word": "cat", "occurrence": 1}, rate=RATE),
            Query(audio, "word", {"word": "cat", "occurrence": 1}, rate=RATE)]
    for expected, answer in zip(one_pass.run(both), windowed.run(both)):
        assert np.allclose(expected.times, answer.times, atol=1e-3)
