"""Evaluation: greedy generation against a full forward pass, and decoding per objective."""

import numpy as np
import pytest
import soundfile
import torch

from framestamp.data.manifest import Example, write_manifest
from framestamp.runtime import InputError
from framestamp.runtime.decoding import binary_top_k, ordered_map, posterior_mode, subframe_times
from framestamp.training.batches import AudioCache, collate
from framestamp.training.checkpoint import build_model
from framestamp.training.evaluate import evaluate, generate_token_ids, predict
from framestamp.training.model import HeadConfig


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    examples = []
    for i, seconds in enumerate([1.3, 2.2, 0.9]):
        soundfile.write(folder / f"c{i}.wav", (0.1 * rng.standard_normal(int(16000 * seconds))).astype(np.float32), 16000)
        examples.append(Example(id=f"w{i}", task="word", prompt={"word": "late", "occurrence": 1}, times=(0.4,),
                                duration=seconds, audio=f"c{i}.wav"))
    examples.append(Example(id="t", task="transcript", prompt={"transcript": "late dance doctor"},
                            times=(0.1, 0.3, 0.7), duration=1.3, audio="c0.wav"))
    write_manifest(folder / "m.jsonl", examples)
    return folder, examples


def test_greedy_generation_matches_a_full_forward(clips):
    folder, examples = clips
    torch.manual_seed(0)
    model = build_model("omni-tiny", HeadConfig(objective="tokens")).eval()
    batch = collate(examples, AudioCache(folder), model.prompt_ids, model.pad_id)
    answers = generate_token_ids(model, batch, max_new_tokens=12)
    for b, example in enumerate(examples):
        # Teacher-force prompt + generated answer in one pass: each token must be the argmax.
        generated = answers[b]
        one = collate([example], AudioCache(folder), lambda e, n: model.prompt_ids(e, n, with_answer=False), model.pad_id)
        ids = torch.cat((one.input_ids, torch.tensor([generated])), dim=1)
        mask = torch.ones_like(ids)
        with torch.no_grad():
            output = model(ids, mask, one.audio_start, one.mel, one.mel_lengths)
            logits = model.backbone.lm_head(output.hidden)
        prompt_length = one.input_ids.shape[1]
        expected = logits[0, prompt_length - 1: prompt_length - 1 + len(generated)].argmax(-1).tolist()
        assert generated == expected[: len(generated)]


def placed(scores, count):
    """Ordered decoding's frames, each time placed inside its frame (``subframe_times``)."""
    return subframe_times(scores, ordered_map(scores, count))


@pytest.mark.parametrize("objective, decoding, decode", [
    ("poisson", None, placed),  # None: the default, ordered
    ("poisson", "posterior", posterior_mode),
    ("binary", None, placed),  # on the logits
    ("binary", "posterior", lambda logits, count: binary_top_k(1 / (1 + np.exp(-logits)), count)),
])
def test_frame_predictions_decode_each_examples_valid_frames(clips, objective, decoding, decode):
    folder, examples = clips
    model = build_model("omni-tiny", HeadConfig(objective=objective)).eval()
    batch = collate(examples, AudioCache(folder), model.prompt_ids, model.pad_id)
    predictions = predict(model, batch, objective) if decoding is None else predict(model, batch, objective, decoding)
    with torch.no_grad():
        for b, example in enumerate(examples):
            alone = collate([example], AudioCache(folder), model.prompt_ids, model.pad_id)
            output = model.run_batch(alone)
            scores = output.scores[0, output.frame_mask[0], 0].double()
            np.testing.assert_allclose(predictions[b], decode(scores.numpy(), len(example.times)), atol=1e-6)
            if decoding is None:  # the transcript's words land on distinct frames
                assert len(set(np.floor(predictions[b] / 0.04))) == len(example.times)


def test_evaluate_decodes_frame_heads_in_order_by_default(clips):
    folder, examples = clips
    model = build_model("omni-tiny", HeadConfig(objective="poisson"))
    result = evaluate(model, examples, AudioCache(folder), batch_size=4, progress=False)
    assert result.decoding == "ordered" and result.as_dict()["decoding"] == "ordered"
    assert result.table().startswith("method: poisson (ordered decoding)")
    with pytest.raises(InputError, match="decoding must be one of"):
        evaluate(model, examples, AudioCache(folder), decoding="joint", progress=False)


def test_evaluate_reports_per_task_and_counts_malformed_answers(clips):
    folder, examples = clips
    model = build_model("omni-tiny", HeadConfig(objective="tokens"))
    result = evaluate(model, examples, AudioCache(folder), batch_size=2, progress=False)
    assert set(result.tasks) == {"word", "transcript"}
    assert result.tasks["word"].count == 3 and result.tasks["transcript"].count == 3
    # An untrained model writes no valid JSON: every question is malformed and every time a miss.
    assert result.malformed == {"word": 3, "transcript": 1}
    assert result.decoding is None  # generated answers are not decoded from frames
    assert result.tasks["word"].missing == 3


def test_a_head_with_an_inside_channel_is_scored_on_interval_ends_too(tmp_path):
    from framestamp.runtime.decoding import interval_ends
    from framestamp.runtime.metrics import timestamp_scores

    rng = np.random.default_rng(1)
    soundfile.write(tmp_path / "c.wav", (0.1 * rng.standard_normal(32000)).astype(np.float32), 16000)
    examples = [Example(id="t", task="transcript", prompt={"transcript": "late dance doctor"}, times=(0.1, 0.6, 1.2),
                        ends=(0.5, 1.0, 1.5), duration=2.0, audio="c.wav"),
                Example(id="w", task="word", prompt={"word": "dance", "occurrence": 1}, times=(0.6,), ends=(1.0,),
                        duration=2.0, audio="c.wav"),
                Example(id="s", task="speaker", prompt={"occurrence": 1}, times=(0.3,), duration=2.0, audio="c.wav")]
    torch.manual_seed(0)
    model = build_model("omni-tiny", HeadConfig(lookahead=1, channels=("onset", "inside"))).eval()
    result = evaluate(model, examples, AudioCache(tmp_path), progress=False)
    assert set(result.ends) == {"transcript", "word"}  # speakers have no ends in the manifest
    predicted = []
    with torch.no_grad():
        for example in examples[:2]:
            output = model.run_batch(collate([example], AudioCache(tmp_path), model.prompt_ids, model.pad_id))
            scores = output.scores[0, output.frame_mask[0]].double().numpy()
            times = ordered_map(scores[:, 0], len(example.times))
            predicted.append(interval_ends(scores[:, 1], times, bounded_by_next=example.task == "transcript"))
    for task, ends, example in zip(("transcript", "word"), predicted, examples):
        expected = timestamp_scores(ends, example.ends)
        assert result.ends[task].accuracy == expected.accuracy
    assert "transcript end" in result.table() and "miou" in result.as_dict()["tasks"]["word end"]


def test_scores_by_occurrence_partition_each_tasks_questions(clips):
    from dataclasses import replace

    folder, examples = clips
    words = [e for e in examples if e.task == "word"]
    examples = examples + [replace(e, id=f"{e.id}-k{k}", prompt={**e.prompt, "occurrence": k})
                           for k in (2, 7) for e in words]  # k = 7 counts in the "5+" row
    torch.manual_seed(0)
    model = build_model("omni-tiny", HeadConfig(lookahead=1)).eval()
    result = evaluate(model, examples, AudioCache(folder), progress=False)
    for task, scores in result.tasks.items():
        rows = {key: part for key, part in result.occurrences.items() if key.startswith(task + " #")}
        if task == "transcript":
            assert not rows
            continue
        asked = [min(int(e.prompt.get("occurrence", 1)), 5) for e in examples if e.task == task]
        assert {int(key.split("#")[1].rstrip("+")) for key in rows} == set(asked)
        # The rows split the task's questions: counts and hits add up to the task's own.
        assert sum(part.count for part in rows.values()) == scores.count
        hits = sum(round(part.accuracy[0.04] * part.count) for part in rows.values())
        assert hits == round(scores.accuracy[0.04] * scores.count)
    assert "asked" in result.occurrence_table() and "occurrences" in result.as_dict()


def test_ordered_decoding_answers_the_kth_occurrence_with_the_earlier_ones(clips):
    """The k-th occurrence, decoded with occurrences 1..k-1 each asked alone (an independent
    computation through single-example passes), is what evaluate scores; alone it would differ."""
    from dataclasses import replace

    folder, examples = clips
    torch.manual_seed(0)
    model = build_model("omni-tiny", HeadConfig(lookahead=1)).eval()
    differ = 0
    for example in [e for e in examples if e.task == "word"]:
        asked = replace(example, prompt={**example.prompt, "occurrence": 3})
        tracks = []
        with torch.no_grad():
            for k in (1, 2, 3):
                alone = collate([replace(example, prompt={**example.prompt, "occurrence": k})], AudioCache(folder),
                                model.prompt_ids, model.pad_id)
                output = model.run_batch(alone)
                tracks.append(output.scores[0, output.frame_mask[0], 0].double().numpy())
        joint = ordered_map(np.stack(tracks), 3)[-1]
        differ += abs(joint - ordered_map(tracks[-1], 1)[0]) > 0.04
        joint = subframe_times(tracks[-1], [joint])[0]  # placed inside its frame on the 3rd's own track
        scored = evaluate(model, [replace(asked, times=(joint,))], AudioCache(folder), progress=False)
        assert scored.tasks["word"].mad == pytest.approx(0, abs=1e-9)
        paper = evaluate(model, [replace(asked, times=(joint,))], AudioCache(folder), progress=False,
                         decoding="posterior")  # per event: the 3rd's own track only
        assert paper.tasks["word"].mad == pytest.approx(abs(posterior_mode(tracks[-1], 1)[0] - joint), abs=1e-6)
    assert differ  # the case where joint decoding changes the answer is covered


def test_a_head_of_every_occurrence_answers_the_kth_by_counting_its_one_track(clips):
    """occurrences="every": the k-th is ``kth_of_every`` of the k-th question's own track, computed here
    through a single-example pass; the earlier occurrences' questions are not asked."""
    from dataclasses import replace

    from framestamp.runtime.decoding import kth_of_every

    folder, examples = clips
    torch.manual_seed(0)
    model = build_model("omni-tiny", HeadConfig(lookahead=1, count_term=True, occurrences="every")).eval()
    with torch.no_grad():
        model.head.projection.bias[0] += 3.0  # Lambda(T) of a few events, so that counting matters
    differ = 0
    for example in [e for e in examples if e.task == "word"]:
        asked = replace(example, prompt={**example.prompt, "occurrence": 2})
        with torch.no_grad():
            output = model.run_batch(collate([asked], AudioCache(folder), model.prompt_ids, model.pad_id))
        track = output.scores[0, output.frame_mask[0], 0].double().numpy()
        expected = kth_of_every(track, 2)[0]
        scored = evaluate(model, [replace(asked, times=(expected,))], AudioCache(folder), progress=False)
        assert scored.tasks["word"].mad == pytest.approx(0, abs=1e-9)
        differ += abs(expected - ordered_map(track, 1)[0]) > 0.04  # what a head of the asked occurrence answers
    assert differ


def test_every_occurrence_needs_the_count_term():
    with pytest.raises(InputError, match="count term"):
        HeadConfig(occurrences="every")
    with pytest.raises(InputError, match="occurrences must be one of"):
        HeadConfig(occurrences="all", count_term=True)
