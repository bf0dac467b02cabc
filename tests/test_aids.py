"""Training aids: frame labels from transcript lines, and a word-identity loss that adds no weights."""

import types

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from framestamp.runtime import InputError
from framestamp.runtime.frames import FRAME_SECONDS
from framestamp.training.aids import IGNORE, Aids, WordFrameLabels, clip_word_spans
from framestamp.training.checkpoint import build_model
from framestamp.training.tokenizer import preset_tokenizer
from test_model import make_batch

WORDS = (("kitchen", 0.10, 0.42), ("budget", 0.60, 1.13), ("dog", 1.30, 1.55))


def transcript_line(audio="clip.flac", words=WORDS):
    return types.SimpleNamespace(task="transcript", audio=audio, prompt={"transcript": " ".join(w for w, _, _ in words)},
                                 times=tuple(s for _, s, _ in words), ends=tuple(e for _, _, e in words))


def test_labels_name_each_frame_inside_a_word_by_its_tokens_in_order():
    tokenizer = preset_tokenizer()
    labels = WordFrameLabels(clip_word_spans([transcript_line()]), tokenizer)
    frames = 45
    got = labels(types.SimpleNamespace(audio="clip.flac"), frames)
    expected = [IGNORE] * frames  # by hand: a frame belongs to the word its centre falls in
    for word, start, end in WORDS:
        ids = tokenizer.encode(word, add_special_tokens=False).ids
        for frame in range(frames):
            centre = (frame + 0.5) * FRAME_SECONDS
            if start <= centre < end:
                expected[frame] = ids[min(int((centre - start) / ((end - start) / len(ids))), len(ids) - 1)]
    assert got.tolist() == expected
    assert len(tokenizer.encode("budget", add_special_tokens=False).ids) > 1  # the split path is exercised
    # A clip with no transcript line gets no labels; word questions of a labelled clip share its labels.
    assert (labels(types.SimpleNamespace(audio="other.flac"), frames) == IGNORE).all()


def test_spans_skip_lines_without_ends_or_with_mismatched_words():
    no_ends = transcript_line("a.flac")
    no_ends.ends = None
    short = transcript_line("b.flac")
    short.times = short.times[:2]
    word = types.SimpleNamespace(task="word", audio="c.flac", ends=(1.0,), times=(0.5,), prompt={"word": "dog"})
    assert clip_word_spans([no_ends, short, word, transcript_line("d.flac")]) == {"d.flac": WORDS}


def test_aid_settings_are_checked():
    with pytest.raises(InputError, match="word_identity"):
        Aids(word_identity=-1.0)
    with pytest.raises(InputError, match="audio, decoder"):
        Aids(word_identity=1.0, word_identity_at="head")


@pytest.mark.parametrize("where", ["audio", "decoder"])
def test_word_identity_loss_is_the_tied_embedding_cross_entropy_and_adds_no_weights(where):
    torch.manual_seed(0)
    model = build_model("omni-tiny", seed=0)
    weights_before = set(model.state_dict())
    mel = torch.randn(2, 128, 300)
    mel_lengths = torch.tensor([300, 240])
    batch = make_batch(model, mel, mel_lengths, [("word", {"word": "dog", "occurrence": 1}, [0.5]),
                                                  ("speaker", {"occurrence": 1}, [0.25])])
    frames = int(batch.num_audio_frames.max())
    batch.frame_labels = torch.full((2, frames), IGNORE)
    batch.frame_labels[0, 3:9] = 1234
    batch.frame_labels[1, 0:2] = 77
    plain, plain_metrics = model.training_loss(batch)
    model.aids = Aids(word_identity=0.5, word_identity_at=where)
    loss, metrics = model.training_loss(batch)
    assert set(model.state_dict()) == weights_before  # nothing new to export
    assert "word_identity" not in plain_metrics

    # Independently: the states at the labelled frames against the embedding table.
    with torch.no_grad():
        audio, counts = model.encode_audio(mel, mel_lengths)
        if where == "audio":
            states = audio
        else:
            hidden = model.decoder_states(batch.input_ids, batch.attention_mask, batch.audio_start, audio, counts)
            states = [hidden[b, batch.audio_start[b]:] for b in range(2)]
        rows = torch.cat([states[0][3:9], states[1][0:2]])
        targets = torch.tensor([1234] * 6 + [77] * 2)
        expected = F.cross_entropy(rows @ model.language_model.embed_tokens.weight.T, targets)
    assert metrics["word_identity"] == pytest.approx(expected.item(), rel=1e-5)
    assert loss.item() == pytest.approx(plain.item() + 0.5 * expected.item(), rel=1e-5)
    loss.backward()
    assert model.backbone.model.audio_tower.conv1.weight.grad.abs().sum() > 0
