"""Training aids: frame labels from transcript lines, and a word-identity loss that adds no weights."""

import itertools
import types

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from framestamp.runtime import InputError
from framestamp.runtime.frames import FRAME_SECONDS
from framestamp.training.aids import BLANK, IGNORE, LETTERS, Aids, Spellings, WordFrameLabels, clip_word_spans
from framestamp.training.checkpoint import build_model
from framestamp.training.model import HeadConfig
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
    question = types.SimpleNamespace(audio="clip.flac", task="word", prompt={"word": "Budget", "occurrence": 1})
    got = labels(question, frames)
    expected = [IGNORE] * frames  # by hand: a frame belongs to the word its centre falls in
    inside = [0] * frames
    for word, start, end in WORDS:
        ids = tokenizer.encode(word, add_special_tokens=False).ids
        for frame in range(frames):
            centre = (frame + 0.5) * FRAME_SECONDS
            if start <= centre < end:
                expected[frame] = ids[min(int((centre - start) / ((end - start) / len(ids))), len(ids) - 1)]
                inside[frame] = int(word == "budget")
    assert got[0].tolist() == expected
    assert got[1].tolist() == inside and sum(inside) > 0  # the asked word, case-blind
    assert len(tokenizer.encode("budget", add_special_tokens=False).ids) > 1  # the split path is exercised
    # Transcripts: inside every word; other tasks: unknown; unlabelled clips: nothing.
    transcript = labels(types.SimpleNamespace(audio="clip.flac", task="transcript", prompt={}), frames)
    assert ((transcript[1] == 1) == (transcript[0] != IGNORE)).all()
    speaker = labels(types.SimpleNamespace(audio="clip.flac", task="speaker", prompt={}), frames)
    assert (speaker[1] == IGNORE).all() and (speaker[0] == got[0]).all()
    assert (labels(types.SimpleNamespace(audio="other.flac", task="word", prompt={"word": "dog"}), frames) == IGNORE).all()


def test_speaker_questions_are_labelled_inside_from_the_asked_speakers_onset_on():
    labels = WordFrameLabels(clip_word_spans([transcript_line()]), preset_tokenizer(), speakers=True)
    frames = 45
    for k, onset in ((1, 0.0), (3, 0.61), (5, 1.5)):
        question = types.SimpleNamespace(audio="mix.wav", task="speaker", prompt={"occurrence": k}, times=(onset,))
        got = labels(question, frames)
        started = [int((frame + 0.5) * FRAME_SECONDS >= onset) for frame in range(frames)]  # by hand, frame centres
        assert got[1].tolist() == started and (got[0] == IGNORE).all()
    assert started.index(1) == 37  # 1.5 s: frame 37 (1.48-1.52 s) is the first whose centre is at the onset
    plain = WordFrameLabels(clip_word_spans([transcript_line()]), preset_tokenizer())
    assert (plain(question, frames)[1] == IGNORE).all()  # off by default: the shipped recipe's labels


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
    with pytest.raises(InputError, match="inside"):
        Aids(inside=-0.5)
    with pytest.raises(InputError, match="spelling=-1"):
        Aids(spelling=-1.0)
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
    batch.frame_labels = torch.full((2, 2, frames), IGNORE)
    batch.frame_labels[0, 0, 3:9] = 1234
    batch.frame_labels[1, 0, 0:2] = 77
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


def test_inside_loss_is_bce_on_the_inside_channel_at_labelled_frames_only():
    torch.manual_seed(0)
    model = build_model("omni-tiny", HeadConfig(lookahead=1, channels=("onset", "inside")), seed=0)
    mel = torch.randn(2, 128, 300)
    batch = make_batch(model, mel, torch.tensor([300, 200]), [("word", {"word": "dog", "occurrence": 1}, [0.5]),
                                                               ("speaker", {"occurrence": 1}, [0.25])])
    frames = int(batch.num_audio_frames.max())
    batch.frame_labels = torch.full((2, 2, frames), IGNORE)
    batch.frame_labels[0, 1, :20] = 0
    batch.frame_labels[0, 1, 5:9] = 1
    model.aids = Aids(inside=2.0)
    loss, metrics = model.training_loss(batch)
    with torch.no_grad():
        scores = model.run_batch(batch).scores[0, :20, 1]
        expected = F.binary_cross_entropy_with_logits(scores, ((torch.arange(20) >= 5) & (torch.arange(20) < 9)).float()).item()
    assert metrics["inside"] == pytest.approx(expected, rel=1e-5)
    plain = build_model("omni-tiny", HeadConfig(lookahead=1), seed=0)
    plain.aids = Aids(inside=1.0)
    with pytest.raises(InputError, match="inside"):
        plain.training_loss(batch)


def test_end_loss_is_the_ihp_likelihood_of_the_ends_on_the_end_channel_only():
    torch.manual_seed(0)
    model = build_model("omni-tiny", HeadConfig(lookahead=1, channels=("onset", "inside", "end")), seed=0)
    mel = torch.randn(2, 128, 300)
    batch = make_batch(model, mel, torch.tensor([300, 200]), [("word", {"word": "dog", "occurrence": 1}, [0.5]),
                                                               ("speaker", {"occurrence": 1}, [0.25])])
    batch.event_ends = torch.tensor([[0.93], [0.0]], dtype=torch.float64)
    batch.ends_mask = torch.tensor([[True], [False]])  # a speaker question has no end
    model.aids = Aids(end=0.5)
    loss, metrics = model.training_loss(batch)
    with torch.no_grad():
        output = model.run_batch(batch)
        frames = int(batch.num_audio_frames[0])
        end_scores = output.scores[0, :frames, 2].double()
        # One event at 0.93 s: frame 23 of 40 ms; eq. 5 for one event is -log softmax at that frame.
        expected = -(end_scores[23] - torch.logsumexp(end_scores, 0)).item()
    assert metrics["end"] == pytest.approx(expected, rel=1e-5)
    without = Aids()
    model.aids = without
    plain_loss, _ = model.training_loss(batch)
    assert loss.item() == pytest.approx(plain_loss.item() + 0.5 * expected, rel=1e-5)
    # Only the end channel's weights learn from it.
    model.aids = Aids(end=1.0)
    model.zero_grad()
    model.end_loss(batch, model.run_batch(batch)).backward()
    grad = model.head.projection.weight.grad
    assert grad[2].abs().sum() > 0 and grad[:2].abs().sum() == 0
    onset_only = build_model("omni-tiny", HeadConfig(lookahead=1), seed=0)
    onset_only.aids = Aids(end=1.0)
    with pytest.raises(InputError, match="end"):
        onset_only.training_loss(batch)


def test_word_identity_at_the_decoder_reads_the_merged_token_over_each_frame():
    """Merge-aware batches: a labelled frame is named by the final state of the merged token that covers it."""
    from framestamp.runtime.merging import plan_merge
    from framestamp.training.model import Merging

    torch.manual_seed(0)
    model = build_model("omni-tiny", seed=0)
    merging = Merging(0.4)
    mel, mel_lengths = torch.randn(2, 128, 300), torch.tensor([300, 240])
    batch = make_batch(model, mel, mel_lengths, [("word", {"word": "dog", "occurrence": 1}, [0.5]),
                                                  ("speaker", {"occurrence": 1}, [0.25])],
                       audio_tokens=merging.tokens)
    batch.merging = merging
    frames = int(batch.num_audio_frames.max())
    batch.frame_labels = torch.full((2, 2, frames), IGNORE)
    batch.frame_labels[0, 0, 3:12] = 1234
    batch.frame_labels[1, 0, 20:26] = 77
    model.aids = Aids(word_identity=0.5, word_identity_at="decoder")
    _, metrics = model.training_loss(batch)

    with torch.no_grad():
        audio, counts = model.encode_audio(mel, mel_lengths)
        hidden = model.run_batch(batch, merging).hidden
    rows = []
    for b, span in ((0, range(3, 12)), (1, range(20, 26))):
        group = plan_merge(audio[b, : int(counts[b])].numpy(), 0.4, "local").group  # frame -> merged token
        assert group.max() + 1 < int(counts[b])  # tokens were merged
        rows += [hidden[b, int(batch.audio_start[b]) + int(group[f])] for f in span]
    targets = torch.tensor([1234] * 9 + [77] * 6)
    expected = F.cross_entropy(torch.stack(rows) @ model.language_model.embed_tokens.weight.T, targets)
    assert metrics["word_identity"] == pytest.approx(expected.item(), rel=1e-5)


def test_every_loss_is_the_full_ihp_likelihood_of_every_occurrence_on_the_every_channel_only():
    torch.manual_seed(0)
    model = build_model("omni-tiny", HeadConfig(lookahead=1, channels=("onset", "every")), seed=0)
    mel = torch.randn(2, 128, 300)
    batch = make_batch(model, mel, torch.tensor([300, 200]), [("word", {"word": "dog", "occurrence": 2}, [0.5]),
                                                               ("transcript", {"transcript": "dog"}, [0.25])])
    batch.every_times = torch.tensor([[0.13, 0.5, 0.93], [0.0, 0.0, 0.0]], dtype=torch.float64)
    batch.every_mask = torch.tensor([[True, True, True], [False, False, False]])  # a transcript has none
    model.aids = Aids(every=0.5)
    loss, metrics = model.training_loss(batch)
    with torch.no_grad():
        output = model.run_batch(batch)
        frames = int(batch.num_audio_frames[0])
        every = output.scores[0, :frames, 1].double()
        # Events in frames 3, 12 and 23 of 40 ms; the full IHP NLL -sum log lambda + Lambda(T), per event.
        expected = (-(every[3] + every[12] + every[23]) + every.exp().sum()).item() / 3
    assert metrics["every"] == pytest.approx(expected, rel=1e-5)
    model.aids = Aids()
    plain_loss, _ = model.training_loss(batch)
    assert loss.item() == pytest.approx(plain_loss.item() + 0.5 * expected, rel=1e-5)
    model.aids = Aids(every=1.0)
    model.zero_grad()
    model.every_loss(batch, model.run_batch(batch)).backward()
    grad = model.head.projection.weight.grad
    assert grad[1].abs().sum() > 0 and grad[0].abs().sum() == 0
    onset_only = build_model("omni-tiny", HeadConfig(lookahead=1), seed=0)
    onset_only.aids = Aids(every=1.0)
    with pytest.raises(InputError, match="every"):
        onset_only.training_loss(batch)


def brute_force_ctc(log_probs: torch.Tensor, target: list[int]) -> float:
    """-log P(target) summed over every frame labelling (over blank and the target's classes) that
    collapses to it: repeats merged, then blanks dropped."""
    classes = sorted({0, *target})
    total = []
    for path in itertools.product(classes, repeat=log_probs.shape[0]):
        collapsed = [c for i, c in enumerate(path) if c != 0 and (i == 0 or path[i - 1] != c)]
        if collapsed == target:
            total.append(sum(log_probs[t, c].item() for t, c in enumerate(path)))
    return -torch.logsumexp(torch.tensor(total, dtype=torch.float64), 0).item()


def test_spellings_are_the_clips_letters_as_single_letter_tokens():
    tokenizer = preset_tokenizer()
    words = (("Don't", 0.1, 0.4), ("go", 0.5, 0.7))
    spellings = Spellings(clip_word_spans([transcript_line("a.flac", words)]), tokenizer)
    assert spellings("a.flac").tolist() == [LETTERS.index(c) + 1 for c in "dontgo"]
    assert spellings("other.flac") is None and len(spellings) == 1
    ids = spellings.token_ids.tolist()
    assert ids[0] == tokenizer.token_to_id(BLANK)
    assert [tokenizer.decode([i]) for i in ids[1:]] == list(LETTERS)


def test_spelling_loss_is_ctc_through_the_tied_letter_embeddings_once_per_clip_and_adds_no_weights():
    torch.manual_seed(0)
    model = build_model("omni-tiny", seed=0)
    weights_before = set(model.state_dict())
    model.spellings = Spellings(clip_word_spans([transcript_line("a.flac", (("dog", 0.0, 0.2),)),
                                                 transcript_line("b.flac", (("too", 0.0, 0.2),))]),
                                preset_tokenizer())
    audio = torch.randn(4, 7, model.info.hidden_size, requires_grad=True)
    counts = torch.tensor([6, 6, 5, 7])  # rows 0 and 1 ask about one clip; row 3's clip has no transcript
    batch = types.SimpleNamespace(examples=[types.SimpleNamespace(audio=a) for a in ("a.flac", "a.flac", "b.flac", "c.flac")])
    loss = model.spelling_loss(batch, audio, counts)
    assert set(model.state_dict()) == weights_before  # nothing new to export

    table = model.language_model.embed_tokens.weight.detach()[torch.from_numpy(model.spellings.token_ids)]
    expected = []
    for row, word in ((0, "dog"), (2, "too")):  # "too": a blank must part the two o's
        log_probs = (audio[row, :counts[row]].detach() @ table.T).log_softmax(-1)
        target = [LETTERS.index(c) + 1 for c in word]
        expected.append(brute_force_ctc(log_probs, target) / len(target))
    assert loss.item() == pytest.approx(sum(expected) / 2, rel=1e-4)
    loss.backward()
    assert audio.grad[1].abs().sum() == 0 and audio.grad[3].abs().sum() == 0  # the clip once; no letters, no loss
    assert audio.grad[0, 6].abs().sum() == 0  # past the clip's frames
    assert model.language_model.embed_tokens.weight.grad is not None
