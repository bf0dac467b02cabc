"""The chained k-th occurrence (runtime/chain.py), against occurrences laid out by hand."""

import numpy as np
import pytest

from framestamp.runtime.chain import (MIN_LINK_SECONDS, MIN_STEP_SECONDS, chain_from, chain_occurrences,
                                      check_chain_seconds, joint_occurrences, link_audio, link_start)
from framestamp.runtime.decoding import after_earlier, decode_events, interval_ends_for
from framestamp.runtime.errors import InputError

# Where a word is heard in a made-up clip: (start, end) seconds.
HEARD = [(0.5, 0.9), (3.0, 3.4), (9.0, 9.5), (9.5, 9.9), (14.0, 14.3), (20.0, 20.6)]


def first_after(offset):
    """A perfect link: the first occurrence starting at or after ``offset``, and the offsets it was asked at."""
    asked.append(offset)
    later = [(start, end) for start, end in HEARD if start >= offset]
    return None if not later else (*later[0], offset)


asked: list[float] = []


@pytest.fixture(autouse=True)
def fresh():
    asked.clear()


def test_joint_answers_up_to_the_chain_time_stand():
    joint = [(0.5, 0.9), (3.0, 3.4), (7.9, 8.2)]
    assert chain_from([start for start, _ in joint], 8.0) is None
    assert chain_occurrences(joint, first_after, 8.0) == (None, [])
    assert asked == []  # no link was asked
    assert chain_occurrences([(9.0, 9.5), (12.0, 12.5)][:1], first_after, 8.0) == (None, [])  # one occurrence: nothing to chain


def test_past_the_chain_time_each_occurrence_is_the_first_after_the_previous_end():
    # The joint answers lose count past 8 s: the 3rd lands on the 5th heard, the 5th on the 6th.
    joint = [HEARD[0], HEARD[1], HEARD[4], HEARD[5], HEARD[5]]
    index, links = chain_occurrences(joint, first_after, 8.0)
    assert index == 2  # the 3rd occurrence is the first past 8 s
    assert [link[:2] for link in links] == HEARD[2:5]  # 3rd, 4th and 5th heard, in order
    # Each link heard the audio from the previous occurrence's end (or two frames after its start), at a frame edge.
    assert asked == pytest.approx([3.4, 9.48, 9.88])


def test_the_first_occurrence_never_chains_and_ends_may_be_missing():
    assert chain_from([12.0, 13.0], 8.0) == 1  # the 1st past 8 s is still the first heard: only later ones chain
    index, links = chain_occurrences([(3.0, None), (20.0, None)], first_after, 8.0)
    assert index == 1 and asked == pytest.approx([3.0 + MIN_STEP_SECONDS]) and links[0][:2] == HEARD[2]


def test_a_link_that_hears_nothing_leaves_the_joint_answer():
    joint = [HEARD[4], HEARD[5], (20.5, 20.7)]  # asks for a 3rd after the last heard
    assert chain_occurrences(joint, first_after, 8.0) == (None, [])
    assert chain_from([1.0, 9.0], None) is None


def test_link_start_and_audio():
    assert link_start(1.0, 1.5) == pytest.approx(1.48)  # the frame edge before the end
    assert link_start(1.0, 1.48) == pytest.approx(1.48)  # an end on an edge stays
    assert link_start(1.0, 1.02) == pytest.approx(1.0 + MIN_STEP_SECONDS)  # an end at the start: still moves on
    assert link_start(1.01, None) == pytest.approx(1.08)
    for start, end in np.random.default_rng(1).uniform(0, 30, (200, 2)):
        edge, after = link_start(start, end), max(start + MIN_STEP_SECONDS, end)
        assert after - 0.04 < edge <= after + 1e-9 and edge > start  # never at or before the start it follows
        assert abs(edge / 0.04 - round(edge / 0.04)) < 1e-6
    rate = 16000
    rng = np.random.default_rng(0)
    samples = np.concatenate([rng.normal(0, 0.1, 2 * rate), np.zeros(rate)]).astype(np.float32)
    part = link_audio(samples, 0.5, rate)
    assert len(part) == int(2.5 * rate) and np.array_equal(part, samples[rate // 2:])
    assert link_audio(samples, 2.1, rate) is None  # only silence left
    assert link_audio(samples[: int(1.2 * rate)], 1.2 - MIN_LINK_SECONDS / 2, rate) is None  # too little left
    assert link_audio(samples + 0.5, 2.1, rate) is None  # a constant offset is no sound either


def test_chain_seconds_checked():
    assert check_chain_seconds(None) is None and check_chain_seconds(0) is None
    assert check_chain_seconds(8) == 8.0
    for wrong in (-1.0, True, "8", float("nan")):
        with pytest.raises(InputError, match="chain_seconds"):
            check_chain_seconds(wrong)


def test_joint_occurrences_are_ordered_decodings_answers():
    rng = np.random.default_rng(3)
    rows = [rng.normal(0, 3, (60, 3)) for _ in range(4)]
    channels = ("onset", "inside", "end")
    found = joint_occurrences(rows, "word", "poisson", channels, 0.04)
    for number, (start, end) in enumerate(found):
        if number:
            expected = after_earlier([r[:, 0] for r in rows[:number]], rows[number][:, 0], 0.04)
        else:
            expected = decode_events(rows[0][:, 0], 1, "poisson", "ordered", 0.04)
        assert start == pytest.approx(float(expected[0]))
        assert end == pytest.approx(float(interval_ends_for("word", rows[number], channels, expected, 0.04)[0]))
    assert [end for _, end in joint_occurrences(rows, "speaker", "poisson", channels, 0.04)] == [None] * 4
