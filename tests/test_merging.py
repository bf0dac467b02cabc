"""Audio-token merging (runtime/merging.py): plans against direct computations, prompts against the
prompt builder. Parity of the merged decoder graph with PyTorch is in test_export.py."""

import numpy as np
import pytest

from framestamp.runtime import InputError
from framestamp.runtime.merging import (check_merging, head_places, merge_batch, merged_length, plan_merge,
                                        shorten_prompts)
from framestamp.runtime.prompts import pad_prompts, prompt_ids, render_prompt


@pytest.mark.parametrize("kind", ["local", "global"])
def test_plans_merge_the_asked_share_into_means_of_their_frames(kind):
    rng = np.random.default_rng(0)
    for _ in range(40):
        frames = int(rng.integers(1, 120))
        ratio = float(rng.choice([0.0, 0.2, 0.4, 0.6, 0.9]))
        embeddings = rng.normal(size=(frames, 8)).astype(np.float32)
        plan = plan_merge(embeddings, ratio, kind)
        assert plan.tokens == merged_length(frames, ratio) == max(1, frames - int(np.floor(ratio * frames + 1e-9)))
        assert sorted(set(plan.group.tolist())) == list(range(plan.tokens))
        np.testing.assert_array_equal(plan.sizes, np.bincount(plan.group))
        merged = plan.merge(embeddings)
        for token in range(plan.tokens):
            held = np.flatnonzero(plan.group == token)
            np.testing.assert_allclose(merged[token], embeddings[held].mean(axis=0), rtol=1e-5, atol=1e-6)
            assert plan.positions("first")[token] == held[0]
            assert plan.positions("mean")[token] == pytest.approx(held.mean())
        np.testing.assert_array_equal(plan.spread(np.arange(plan.tokens)), plan.group)
        if kind == "local":  # tokens are runs of consecutive frames, in order
            assert plan.group[0] == 0 and set(np.diff(plan.group).tolist()) <= {0, 1}
            np.testing.assert_array_equal(plan.widths, plan.sizes)
        else:
            assert plan.widths is None


def test_local_merging_joins_the_most_similar_neighbours_first():
    """Pairs of equal frames among unlike ones: while no more than a round's worth are merged away,
    every merged token holds equal frames only."""
    rng = np.random.default_rng(1)
    for _ in range(30):
        runs = rng.integers(1, 3, int(rng.integers(4, 30))) * 2  # runs of 2 or 4 equal frames, from even frames
        embeddings = np.repeat(rng.normal(size=(runs.size, 16)), runs, axis=0)
        run_of = np.repeat(np.arange(runs.size), runs)
        ratio = int(rng.integers(1, runs.sum() // 4 + 1)) / runs.sum()
        plan = plan_merge(embeddings, ratio, "local")
        for token in range(plan.tokens):
            assert np.unique(run_of[plan.group == token]).size == 1


def test_global_merging_joins_repeats_that_are_far_apart_and_local_merging_never_does():
    a, b = np.eye(2)
    embeddings = np.stack([a, b, a, a])
    np.testing.assert_array_equal(plan_merge(embeddings, 0.5, "global").group, [1, 0, 1, 1])
    local = plan_merge(embeddings, 0.5, "local").group
    assert set(np.diff(local).tolist()) <= {0, 1}


def test_the_head_reads_each_frame_or_each_segment():
    rng = np.random.default_rng(2)
    audio = rng.normal(size=(2, 30, 4)).astype(np.float32)
    merged, counts, positions, places, plans = merge_batch(audio, np.array([30, 11]), 0.4)
    assert counts.tolist() == [18, 7] and merged.shape == (2, 18, 4)
    np.testing.assert_array_equal(places[0], plans[0].group)
    np.testing.assert_array_equal(places[1], np.concatenate((plans[1].group, np.full(19, -1))))
    np.testing.assert_array_equal(positions[1, :7], plans[1].positions("first"))
    np.testing.assert_array_equal(head_places(plans, "segments")[1], np.r_[np.arange(7), np.full(11, -1)])


def test_shortened_prompts_are_the_prompts_built_for_the_merged_tokens():
    from tokenizers import Tokenizer

    from framestamp.runtime.artifact import SHIPPED, artifact_folder
    from framestamp.runtime.prompts import PAD_TOKEN, special_token_id

    tokenizer = Tokenizer.from_file(str(artifact_folder(SHIPPED) / "tokenizer.json"))
    pad_id = special_token_id(tokenizer, PAD_TOKEN)
    questions = [render_prompt("word", {"word": "time", "occurrence": 2}),
                 render_prompt("transcript", {"transcript": "the quick brown fox"}), render_prompt("speaker", {"occurrence": 1})]
    frames, tokens = np.array([40, 9, 25]), np.array([16, 9, 1])
    built = pad_prompts([prompt_ids(tokenizer, q, int(f)) for q, f in zip(questions, frames)], pad_id)
    expected = pad_prompts([prompt_ids(tokenizer, q, int(t)) for q, t in zip(questions, tokens)], pad_id)
    input_ids, attention_mask = shorten_prompts(*built, frames, tokens, pad_id)
    np.testing.assert_array_equal(input_ids, expected[0])
    np.testing.assert_array_equal(attention_mask, expected[1])


def test_settings_that_do_not_exist_are_refused():
    for ratio in (-0.1, 1.0, 1.5, True, "0.3", float("nan")):
        with pytest.raises(InputError, match="merge ratio"):
            check_merging(ratio, "local", "first", "frames")
    for kind, positions, head, named in (("nearby", "first", "frames", "merging"), ("local", "last", "frames", "positions"),
                                         ("local", "first", "tokens", "places")):
        with pytest.raises(InputError, match=named):
            check_merging(0.3, kind, positions, head)
