"""The frame-head model on tiny presets: prompts, padding invariance, losses, checkpoints."""

import json
import types

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from framestamp.runtime import InputError
from framestamp.runtime.frames import audio_frames_for_mel
from framestamp.runtime.prompts import AUDIO_TOKEN, answer_text, parse_answer, prompt_ids, render_prompt
from framestamp.training.checkpoint import build_model, load_checkpoint, save_checkpoint
from framestamp.training.losses import poisson_nll
from framestamp.training.model import HeadConfig, Merging
from framestamp.training.tokenizer import build_preset_tokenizer, preset_tokenizer

QUESTIONS = [
    ("word", {"word": "journey", "occurrence": 2}, [1.5]),
    ("transcript", {"transcript": "late dance doctor"}, [0.1, 0.5, 1.9]),
    ("speaker", {"occurrence": 1}, [0.25]),
]


def example(task, prompt, times):
    return types.SimpleNamespace(task=task, prompt=prompt, times=times, question=render_prompt(task, prompt))


def make_batch(model, mel, mel_lengths, questions, audio_tokens=None):
    """A right-padded batch built by hand (independent of the training collation); ``audio_tokens``
    (frames -> placeholders) for merged audio."""
    frames = audio_frames_for_mel(mel_lengths)
    rows = [model.prompt_ids(example(*q), int(f) if audio_tokens is None else audio_tokens(int(f)))
            for q, f in zip(questions, frames)]
    width = max(len(ids) for ids, _ in rows)
    input_ids = torch.full((len(rows), width), model.pad_id)
    attention_mask = torch.zeros(len(rows), width, dtype=torch.long)
    for b, (ids, _) in enumerate(rows):
        input_ids[b, : len(ids)] = torch.tensor(ids)
        attention_mask[b, : len(ids)] = 1
    slots = max(len(q[2]) for q in questions)
    times = torch.zeros(len(rows), slots, dtype=torch.float64)
    used = torch.zeros(len(rows), slots, dtype=torch.bool)
    for b, q in enumerate(questions):
        times[b, : len(q[2])] = torch.tensor(q[2])
        used[b, : len(q[2])] = True
    return types.SimpleNamespace(input_ids=input_ids, attention_mask=attention_mask,
                                 audio_start=torch.tensor([s for _, s in rows]), mel=mel, mel_lengths=mel_lengths,
                                 num_audio_frames=frames, event_times=times, event_mask=used)


def test_shipped_tokenizer_is_reproducible_and_prompts_lay_out_audio():
    tokenizer = preset_tokenizer()
    assert build_preset_tokenizer().to_str() == tokenizer.to_str()
    ids, audio_start = prompt_ids(tokenizer, "When does the 1st speaker start speaking?", 7)
    audio_id = tokenizer.token_to_id(AUDIO_TOKEN)
    assert ids[audio_start: audio_start + 7] == [audio_id] * 7
    assert ids.count(audio_id) == 7
    assert tokenizer.decode(ids[:audio_start - 1]).endswith("speaking?\n")


def test_answers_round_trip_and_malformed_answers_are_none():
    for task, prompt, times in QUESTIONS:
        text = answer_text(task, prompt, times)
        assert parse_answer(text, task) == pytest.approx(times, abs=0.005)
    assert parse_answer("```json\n[{\"word\": \"x\", \"start\": \"soon\"}]\n```", "word") is None
    assert parse_answer("the answer is 1.5", "word") is None
    assert parse_answer("```json\n[]\n```", "transcript") is None


@pytest.mark.parametrize("backbone", ["omni-tiny", "qwen2-audio-tiny"])
def test_padding_never_changes_an_examples_scores(backbone):
    torch.manual_seed(0)
    model = build_model(backbone, HeadConfig(lookahead=2)).eval()
    mel_lengths = torch.tensor([530, 260, 111])
    mel = torch.randn(3, 128, 530)
    batch = make_batch(model, mel, mel_lengths, QUESTIONS)
    with torch.no_grad():
        together = model.run_batch(batch)
        for b in range(3):
            alone = make_batch(model, mel[b:b + 1, :, : mel_lengths[b]], mel_lengths[b:b + 1], QUESTIONS[b:b + 1])
            single = model.run_batch(alone)
            frames = int(batch.num_audio_frames[b])
            assert together.frame_mask[b].sum() == frames
            diff = (single.scores[0, :frames] - together.scores[b, :frames]).abs().max()
            assert diff < 1e-4, (b, diff)


def test_questions_sharing_a_clip_score_and_learn_as_if_each_had_its_own_copy():
    """A batch holding each clip once (clip_of) gives the scores, loss and gradients of the same batch with
    the clip's mel repeated per question."""
    torch.manual_seed(4)
    model = build_model("omni-tiny", HeadConfig(lookahead=2), seed=4)
    mel, lengths = torch.randn(2, 128, 420), torch.tensor([420, 270])
    clip_of = torch.tensor([1, 0, 1])  # two questions about clip 1, one about clip 0
    repeated = make_batch(model, mel[clip_of], lengths[clip_of], QUESTIONS)
    shared = types.SimpleNamespace(**{**vars(repeated), "mel": mel, "mel_lengths": lengths, "clip_of": clip_of})
    losses, grads = [], []
    for batch in (repeated, shared):
        model.zero_grad()
        loss, _ = model.training_loss(batch)
        loss.backward()
        losses.append(loss.item())
        grads.append(model.backbone.model.audio_tower.conv1.weight.grad.clone())
        with torch.no_grad():
            output = model.run_batch(batch)
        frames = repeated.num_audio_frames
        assert output.frame_mask.sum(1).tolist() == frames.tolist()
        if batch is repeated:
            reference = output.scores
        else:
            for b, count in enumerate(frames.tolist()):
                assert (output.scores[b, :count] - reference[b, :count]).abs().max() < 1e-5
    assert losses[1] == pytest.approx(losses[0], rel=1e-5)
    torch.testing.assert_close(grads[1], grads[0], rtol=1e-4, atol=1e-6)


def test_token_loss_counts_only_answer_tokens():
    torch.manual_seed(1)
    model = build_model("omni-tiny", HeadConfig(objective="tokens")).eval()
    mel_lengths = torch.tensor([300, 200])
    batch = make_batch(model, torch.randn(2, 128, 300), mel_lengths, QUESTIONS[:2])
    with torch.no_grad():
        output = model.run_batch(batch)
        loss = model.token_loss(batch, output.hidden)
        # Independently: the answer is the tokens of answer_text + <|im_end|> at the end of each prompt.
        logits = model.backbone.lm_head(output.hidden).float()
        terms = []
        for b, q in enumerate(QUESTIONS[:2]):
            answer = model.tokenizer.encode(answer_text(*q) + "<|im_end|>", add_special_tokens=False).ids
            end = int(batch.attention_mask[b].sum())
            for position in range(end - len(answer), end):
                terms.append(F.cross_entropy(logits[b, position - 1][None], batch.input_ids[b, position][None]))
        assert loss.item() == pytest.approx(torch.stack(terms).mean().item(), rel=1e-5)


@pytest.mark.parametrize("objective", ["poisson", "binary", "interpolated"])
def test_training_loss_has_gradient_for_the_head_and_backbone(objective):
    model = build_model("omni-tiny", HeadConfig(objective=objective))
    batch = make_batch(model, torch.randn(2, 128, 300), torch.tensor([300, 250]), QUESTIONS[:2])
    loss, metrics = model.training_loss(batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert model.head.projection.weight.grad.abs().sum() > 0
    assert model.backbone.model.audio_tower.conv1.weight.grad.abs().sum() > 0


def test_merge_aware_training_scores_what_merged_evaluation_scores():
    """A merged batch's training loss is the Poisson NLL of the merged evaluation path's per-frame scores."""
    model = build_model("omni-tiny", HeadConfig(lookahead=1), seed=3)
    merging = Merging(0.4)
    mel, lengths = torch.randn(2, 128, 400), torch.tensor([400, 330])
    batch = make_batch(model, mel, lengths, QUESTIONS[:2], audio_tokens=merging.tokens)
    batch.merging = merging
    loss, metrics = model.training_loss(batch)
    with torch.no_grad():
        output = model.run_batch(batch, merging)
    per_example = poisson_nll(output.scores[..., 0], batch.event_times, batch.event_mask, output.frame_mask,
                              reduction="none")
    expected = (per_example / batch.event_mask.sum(-1)).mean()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    assert output.frame_mask.sum(1).tolist() == audio_frames_for_mel(lengths).tolist()  # every 40 ms frame scored
    unmerged = make_batch(model, mel, lengths, QUESTIONS[:2])
    assert abs(model.training_loss(unmerged)[0].item() - loss.item()) > 1e-4  # the decoder heard fewer tokens
    loss.backward()
    assert model.backbone.model.audio_tower.conv1.weight.grad.abs().sum() > 0  # gradients flow through the means


def test_checkpoint_round_trip_and_refusals(tmp_path):
    torch.manual_seed(2)
    model = build_model("omni-tiny", HeadConfig(objective="binary", lookahead=1)).eval()
    batch = make_batch(model, torch.randn(2, 128, 300), torch.tensor([300, 250]), QUESTIONS[:2])
    save_checkpoint(model, tmp_path / "ckpt", features={"num_mel_bins": 128}, training={"steps": 0})
    loaded, description = load_checkpoint(tmp_path / "ckpt")
    with torch.no_grad():
        assert torch.equal(loaded.eval().run_batch(batch).scores, model.run_batch(batch).scores)
    assert description["head"]["objective"] == "binary" and loaded.head_config.lookahead == 1
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir()) == \
        ["backbone", "framestamp.json", "head.safetensors", "tokenizer.json"]
    path = tmp_path / "ckpt" / "framestamp.json"
    altered = json.loads(path.read_text())
    altered["prompts"]["templates"]["word"] = "Where is '{word}'?"
    path.write_text(json.dumps(altered))
    with pytest.raises(InputError, match="other prompt templates"):
        load_checkpoint(tmp_path / "ckpt")
    with pytest.raises(InputError, match="not a framestamp checkpoint"):
        load_checkpoint(tmp_path)


def test_a_bf16_model_runs_its_head_in_bf16_too():
    model = build_model("omni-tiny", HeadConfig(lookahead=2), dtype=torch.bfloat16)
    assert model.head.projection.weight.dtype == torch.bfloat16
    mel = torch.randn(1, 128, 200)
    batch = make_batch(model, mel, torch.tensor([200]), QUESTIONS[:1])
    with torch.no_grad():
        scores = model.run_batch(batch).scores
    assert scores.dtype == torch.float32 and torch.isfinite(scores).all()  # scores leave as float32 for decoding


def test_init_from_takes_the_backbone_and_shared_head_channels_of_a_checkpoint(tmp_path):
    from framestamp.training.checkpoint import init_from

    trained = build_model("omni-tiny", HeadConfig(lookahead=1), seed=3)
    save_checkpoint(trained, tmp_path / "ckpt", features={})
    fresh = build_model("omni-tiny", HeadConfig(lookahead=1, channels=("onset", "inside")), seed=4)
    inside_before = fresh.head.projection.weight[1].clone()
    taken = init_from(fresh, tmp_path / "ckpt")
    assert taken["head_channels"] == ["onset"]
    for (name, ours), theirs in zip(fresh.backbone.state_dict().items(), trained.backbone.state_dict().values()):
        assert torch.equal(ours, theirs), name
    assert torch.equal(fresh.head.projection.weight[0], trained.head.projection.weight[0])
    assert torch.equal(fresh.head.projection.weight[1], inside_before)  # a new channel starts fresh
    with pytest.raises(InputError, match="lookahead"):
        init_from(build_model("omni-tiny", HeadConfig(lookahead=0)), tmp_path / "ckpt")


def test_init_from_a_shorter_lookahead_first_computes_what_the_checkpoint_did(tmp_path):
    """The added frames start at weight 0: same scores on every frame, the last frames included, and they learn."""
    from framestamp.training.checkpoint import init_from

    trained = build_model("omni-tiny", HeadConfig(lookahead=1, channels=("onset", "end")), seed=3)
    with torch.no_grad():
        trained.head.projection.weight.normal_()
    save_checkpoint(trained, tmp_path / "ckpt", features={})
    longer = build_model("omni-tiny", HeadConfig(lookahead=4, channels=("onset", "end")), seed=4)
    assert init_from(longer, tmp_path / "ckpt")["lookahead_from"] == 1
    batch = make_batch(trained, torch.randn(2, 128, 300), torch.tensor([300, 220]), QUESTIONS[:2])
    trained.eval(), longer.eval()
    with torch.no_grad():
        before, after = trained.run_batch(batch), longer.run_batch(batch)
    assert before.scores.std() > 0.1
    valid = before.frame_mask
    torch.testing.assert_close(after.scores[valid], before.scores[valid], rtol=1e-5, atol=1e-5)
    longer.train()
    loss, _ = longer.training_loss(batch)
    loss.backward()
    assert longer.head.projection.weight.grad[:, :, 2:].abs().sum() > 0  # the new frames' weights learn


GROWN = {"omni-tiny-deep": ("model.language_model.layers", "mlp.down_proj", "mlp.up_proj"),
         "omni-tiny-deep-encoder": ("model.audio_tower.layers", "fc2", "fc1")}


@pytest.mark.parametrize("preset", sorted(GROWN))
def test_init_from_grows_a_deeper_preset_that_first_computes_what_the_checkpoint_did(tmp_path, preset):
    from framestamp.training.checkpoint import init_from

    stack, zeroed, kept = GROWN[preset]

    trained = build_model("omni-tiny", HeadConfig(lookahead=1), seed=3)
    with torch.no_grad():  # a trained-looking head: random weights, so the scores vary frame to frame
        trained.head.projection.weight.normal_()
    save_checkpoint(trained, tmp_path / "ckpt", features={})
    deeper = build_model(preset, HeadConfig(lookahead=1), seed=4)
    taken = init_from(deeper, tmp_path / "ckpt")
    assert taken["grown_layers"] == [f"{stack}.3", f"{stack}.4"]
    mel = torch.randn(2, 128, 300)
    batch = make_batch(trained, mel, torch.tensor([300, 220]), QUESTIONS[:2])
    trained.eval(), deeper.eval()
    with torch.no_grad():
        before, after = trained.run_batch(batch).scores, deeper.run_batch(batch).scores
    assert before.std() > 0.1
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-5)
    # identity through zeroed output projections only: the layers' other weights are random, so they learn
    modules = dict(deeper.backbone.named_modules())
    assert modules[f"{stack}.4.{zeroed}"].weight.abs().max() == 0 and modules[f"{stack}.4.{kept}"].weight.abs().max() > 0
    # shallower than the checkpoint, or another width: refused, naming what differs
    save_checkpoint(deeper, tmp_path / "deep", features={})
    with pytest.raises(InputError, match=f"{stack}.3"):
        init_from(build_model("omni-tiny", HeadConfig(lookahead=1)), tmp_path / "deep")
    with pytest.raises(InputError, match="same --backbone shape"):
        init_from(build_model("qwen2-audio-tiny", HeadConfig(lookahead=1)), tmp_path / "ckpt")
