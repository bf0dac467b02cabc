"""posterior_mode and ordered_map against independent brute-force maximisers, and the binary decoding."""

import itertools

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framestamp.runtime import InputError, decoding
from framestamp.runtime.decoding import (
    align_word_tracks,
    aligned_confidence,
    binary_count,
    binary_top_k,
    decode_events,
    end_times,
    ended_tasks,
    estimate_count,
    expected_count,
    interval_ends_for,
    kth_of_every,
    ordered_map,
    posterior_mode,
    subframe_times,
)

FRAME = 0.04


def placed_by_hand(track, frame, share=0.5):
    """Where ``subframe_times`` should put an event decoded to ``frame``: the vertex of the parabola
    np.polyfit lays through the frame and its neighbours, clipped to half a frame, ``share`` of the way
    from the centre; the centre at a track's ends, beside a non-finite or equal score, or off a peak."""
    if frame == 0 or frame == len(track) - 1 or not np.all(np.isfinite(track[frame - 1:frame + 2])) or \
            track[frame] in (track[frame - 1], track[frame + 1]):
        return (frame + 0.5) * FRAME
    curve, slope, _ = np.polyfit([-1.0, 0.0, 1.0], track[frame - 1:frame + 2], 2)
    if curve >= 0:
        return (frame + 0.5) * FRAME
    return (frame + 0.5 + share * min(0.5, max(-0.5, -slope / (2 * curve)))) * FRAME


def brute_force_scores(log_intensity, count, order, mask, widths, segment, position):
    """log p(t) of eq. 8 for the ``order``-th of ``count`` events, at ``position`` in [0, 1] of ``segment``.

    Direct float64 sums of rescaled rates (the largest rate is 1), independent of the decoder's
    log-space formulation; constants that do not depend on t are dropped. Arguments broadcast.
    """
    top = log_intensity[mask].max()
    rate = np.where(mask, np.exp(log_intensity - top), 0.0)
    mass = rate * widths
    before = np.cumsum(mass) - mass  # mass of the segments left of each segment
    after = np.cumsum(mass[::-1])[::-1] - mass  # and right of it
    z = before[segment] + mass[segment] * position
    rest = after[segment] + mass[segment] * (1 - position)
    with np.errstate(divide="ignore", invalid="ignore"):
        score = np.where(order > 1, (order - 1) * np.log(z), 0.0)  # z^0 = 1, also at z = 0
        score = score + np.where(order < count, (count - order) * np.log(rest), 0.0)
    return np.where(mask[segment], score + log_intensity[segment] - top, -np.inf)


def brute_force_modes(log_intensity, count, orders, mask, widths, grid=48, rounds=4, keep=3):
    """For each order: the best score on a dense grid over every segment, then on zoomed grids
    around the best ``keep`` segments."""
    segments = np.flatnonzero(mask)
    position = np.linspace(0.0, 1.0, grid + 1)
    offsets = np.linspace(-1.0, 1.0, grid + 1)
    orders = np.asarray(orders)
    best = np.empty(len(orders))
    step = max(1, 2_000_000 // (len(segments) * (grid + 1)))
    for start in range(0, len(orders), step):
        order = orders[start:start + step, None, None]
        coarse = brute_force_scores(log_intensity, count, order, mask, widths, segments[None, :, None], position)
        chunk_best = coarse.max(axis=(1, 2))
        kept = np.argsort(-coarse.max(axis=2), axis=1)[:, :keep]  # (orders, keep)
        centre = position[np.take_along_axis(coarse.argmax(axis=2), kept, axis=1)]
        half = 1.0 / grid
        for _ in range(rounds):
            fine = np.clip(centre[..., None] + half * offsets, 0.0, 1.0)  # (orders, keep, grid+1)
            scores = brute_force_scores(log_intensity, count, order, mask, widths, segments[kept][..., None], fine)
            chunk_best = np.maximum(chunk_best, scores.max(axis=(1, 2)))
            centre = np.take_along_axis(fine, scores.argmax(axis=2)[..., None], axis=2)[..., 0]
            half *= 2.0 / grid
        best[start:start + step] = chunk_best
    return best


def score_at(times_seconds, log_intensity, count, orders, mask, widths):
    """The brute-force score of each order at its returned time; at a knot, the better of the
    two segments. Seconds -> frames conversion rounds, so within 1e-9 frames of a knot is the knot."""
    frames = np.asarray(times_seconds) / FRAME
    edges = np.concatenate(([0.0], np.cumsum(widths)))
    last = len(widths) - 1
    nearest = np.argmin(np.abs(edges[None, :] - frames[:, None]), axis=1)
    at_knot = np.abs(edges[nearest] - frames) <= 1e-9 * np.maximum(1.0, frames)
    inner = np.clip(np.searchsorted(edges, frames, side="right") - 1, 0, last)
    inner_position = np.clip((frames - edges[inner]) / widths[inner], 0.0, 1.0)
    # At a knot: the segment ending there (position 1) and the one starting there (position 0).
    ending, starting = np.clip(nearest - 1, 0, last), np.clip(nearest, 0, last)
    candidates = [
        (np.where(at_knot, ending, inner), np.where(at_knot, np.where(nearest > 0, 1.0, 0.0), inner_position)),
        (np.where(at_knot, starting, inner), np.where(at_knot, np.where(nearest <= last, 0.0, 1.0), inner_position)),
    ]
    return np.maximum(*(brute_force_scores(log_intensity, count, orders, mask, widths, segment, position)
                        for segment, position in candidates))


def check_against_brute_force(log_intensity, count, mask, widths, orders=None):
    times = posterior_mode(log_intensity, count, FRAME, mask=mask, widths=widths)
    mask_array = np.ones(len(log_intensity), bool) if mask is None else np.asarray(mask)
    width_array = np.ones(len(log_intensity)) if widths is None else np.asarray(widths, float)
    total = width_array.sum() * FRAME
    assert times.shape == (count,)
    assert np.isfinite(times).all()
    assert (np.diff(times) >= 0).all()
    assert times[0] >= 0 and times[-1] <= total * (1 + 1e-12)
    orders = np.arange(1, count + 1) if orders is None else np.asarray(orders)
    best = brute_force_modes(log_intensity, count, orders, mask_array, width_array)
    found = score_at(times[orders - 1], log_intensity, count, orders, mask_array, width_array)
    # The decoder must do at least as well as any grid point: it is the exact maximiser.
    shortfall = best - 1e-9 * (1 + np.abs(best)) - found
    assert (shortfall <= 0).all(), [(o, f, b) for o, f, b, s in zip(orders, found, best, shortfall) if s > 0]


@st.composite
def decoding_cases(draw):
    """Structure from hypothesis (sizes, style, masks, widths), values from a seeded generator:
    drawing thousands of floats one by one through hypothesis costs more than the check itself."""
    frames = draw(st.integers(1, 32))
    count = draw(st.integers(1, 40))
    style = draw(st.sampled_from(["uniform", "extremes", "spiky", "flat", "ramp"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if style == "uniform":
        values = rng.uniform(-80, 80, frames)
    elif style == "extremes":  # only the ends of the range: rates e^-80 next to e^80
        values = rng.choice([-80.0, 80.0, 0.0], frames)
    elif style == "spiky":  # a low floor with a few peaks: how trained heads look
        values = np.full(frames, rng.uniform(-80, 0))
        peaks = rng.integers(0, frames, rng.integers(0, 5))
        values[peaks] = rng.uniform(-10, 80, peaks.size)
    elif style == "flat":
        values = np.full(frames, rng.uniform(-80, 80))
    else:
        values = np.linspace(rng.uniform(-80, 80), rng.uniform(-80, 80), frames)
    mask = None
    if draw(st.booleans()):
        mask = rng.random(frames) < draw(st.sampled_from([0.3, 0.7, 0.95]))
        mask[rng.integers(0, frames)] = True
    widths = rng.uniform(0.05, 8, frames) if draw(st.booleans()) else None
    return values, count, mask, widths


@settings(max_examples=3_000, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(decoding_cases())
def test_posterior_mode_is_the_exact_maximiser(case):
    log_intensity, count, mask, widths = case
    check_against_brute_force(log_intensity, count, mask, widths)


def test_extreme_scale_large_count_and_long_audio():
    rng = np.random.default_rng(7)
    frames = 100_000
    log_intensity = rng.uniform(-80, 80, frames)
    log_intensity[rng.integers(0, frames, 50)] = 80.0  # ties at the top
    orders = [1, 2, 3, 250, 498, 499, 500] + list(rng.integers(1, 501, 5))
    check_against_brute_force(log_intensity, 500, None, None, orders=sorted(set(orders)))


def test_uniform_intensity_modes_are_the_beta_modes():
    # Lambda(t) = t: the i-th of n modes is (i-1)/(n-1) of the duration (eq. 6 with z = t).
    times = posterior_mode(np.zeros(250), 11)
    np.testing.assert_allclose(times, np.linspace(0, 250 * FRAME, 11), atol=1e-12)


def test_single_event_is_the_centre_of_the_strongest_segment():
    log_intensity = np.full(10, -3.0)
    log_intensity[6] = 2.0
    assert posterior_mode(log_intensity, 1) == pytest.approx([6.5 * FRAME])
    widths = np.array([1, 1, 1, 1, 1, 1, 3, 1, 1, 1.0])  # segment 6 spans frames 6..9
    assert posterior_mode(log_intensity, 1, widths=widths) == pytest.approx([7.5 * FRAME])


def test_padding_never_changes_the_times():
    rng = np.random.default_rng(3)
    log_intensity = rng.normal(0, 4, 60)
    padded = np.concatenate((log_intensity, rng.normal(50, 1, 40)))  # garbage at padded frames
    mask = np.arange(100) < 60
    np.testing.assert_array_equal(posterior_mode(log_intensity, 7), posterior_mode(padded, 7, mask=mask))


def test_merged_segments_match_repeated_frames():
    # A segment of width 3 with rate r is the same process as three frames of rate r.
    rng = np.random.default_rng(4)
    rates = rng.normal(0, 2, 8)
    widths = np.array([1, 3, 1, 2, 1, 1, 4, 1.0])
    expanded = np.repeat(rates, widths.astype(int))
    np.testing.assert_allclose(
        posterior_mode(rates, 9, widths=widths), posterior_mode(expanded, 9), atol=1e-9
    )


def test_bad_inputs_are_refused():
    with pytest.raises(InputError, match="count"):
        posterior_mode(np.zeros(5), 0)
    with pytest.raises(InputError, match="NaN"):
        posterior_mode(np.array([0.0, np.nan]), 1)
    with pytest.raises(InputError, match="masked"):
        posterior_mode(np.zeros(3), 1, mask=np.zeros(3, bool))
    with pytest.raises(InputError, match="widths"):
        posterior_mode(np.zeros(3), 1, widths=[1, 0, 1])
    with pytest.raises(InputError, match="1-D"):
        posterior_mode(np.zeros((2, 3)), 1)


def test_expected_count_and_estimate():
    log_intensity = np.log(np.full(100, 0.037))  # Lambda(T) = 3.7
    assert expected_count(log_intensity) == pytest.approx(3.7)
    assert estimate_count(log_intensity) == 3  # Poisson mode = floor(Lambda)
    mask = np.arange(100) < 50
    assert expected_count(log_intensity, mask=mask) == pytest.approx(1.85)
    assert expected_count(log_intensity, widths=np.full(100, 2.0)) == pytest.approx(7.4)


def test_binary_top_k_takes_the_most_probable_frame_centres():
    rng = np.random.default_rng(5)
    probabilities = rng.uniform(0, 0.4, 50)
    probabilities[[40, 3, 17]] = [0.9, 0.8, 0.95]
    np.testing.assert_allclose(binary_top_k(probabilities, 3), np.array([3.5, 17.5, 40.5]) * FRAME)
    mask = np.ones(50, bool)
    mask[17] = False
    assert 17.5 * FRAME not in binary_top_k(probabilities, 3, mask=mask)
    with pytest.raises(InputError, match="unmasked"):
        binary_top_k(probabilities[:2], 3)


def test_binary_count_counts_runs_above_threshold():
    probabilities = np.array([0.9, 0.8, 0.1, 0.6, 0.2, 0.7, 0.7, 0.7, 0.1])
    assert binary_count(probabilities) == 3
    assert binary_count(probabilities, threshold=0.85) == 1


def brute_force_ordered(log_intensity, count, mask, min_separation):
    """Every increasing ``count``-tuple of usable frames, at the widest separation <= ``min_separation``
    that any tuple meets; the first (lexicographic) tuple with the largest sum of log-intensities."""
    usable = [k for k in range(len(log_intensity)) if mask[k] and log_intensity[k] > -np.inf]
    for separation in range(min_separation, 0, -1):
        best, best_frames = -np.inf, None
        for frames in itertools.combinations(usable, count):
            if all(later - earlier >= separation for earlier, later in zip(frames, frames[1:])):
                total = sum(log_intensity[k] for k in frames)
                if best_frames is None or total > best:
                    best, best_frames = total, frames
        if best_frames is not None:
            return np.array(best_frames), separation
    raise AssertionError("count exceeds the usable frames: callers check first")


def random_ordered_case(rng, max_frames, max_count, whole_numbers):
    """Whole-number log-intensities tie often, and their sums are exact: the tie rule is checked too."""
    frames = int(rng.integers(1, max_frames + 1))
    if whole_numbers:
        log_intensity = rng.integers(-3, 4, frames).astype(float)
    else:
        log_intensity = rng.normal(0, 3, frames)
    log_intensity[rng.random(frames) < 0.1] = -np.inf  # a zero rate holds no event
    mask = rng.random(frames) < 0.8
    return log_intensity, int(rng.integers(1, max_count + 1)), mask, int(rng.integers(1, 4))


@pytest.mark.parametrize("chunk", [decoding._CHUNK_ELEMENTS, 1])  # 1: back-pointers in blocks, recomputed
@pytest.mark.parametrize("whole_numbers", [True, False])
def test_ordered_map_is_the_brute_force_maximiser(monkeypatch, chunk, whole_numbers):
    monkeypatch.setattr(decoding, "_CHUNK_ELEMENTS", chunk)
    rng = np.random.default_rng(11 + whole_numbers)
    checked = 0
    for max_frames, max_count in [(9, 4)] * 1500 + [(13, 7)] * 150:
        log_intensity, count, mask, min_separation = random_ordered_case(rng, max_frames, max_count, whole_numbers)
        usable = int((mask & (log_intensity > -np.inf)).sum())
        if not 1 <= count <= usable:
            continue
        times = ordered_map(log_intensity, count, FRAME, mask=mask, min_separation=min_separation)
        chosen = np.round(times / FRAME - 0.5).astype(int)
        expected, separation = brute_force_ordered(log_intensity, count, mask, min_separation)
        if whole_numbers:
            np.testing.assert_array_equal(chosen, expected)
        else:  # sums in another order: compare the objective, not the frames of a near-tie
            assert log_intensity[chosen].sum() == pytest.approx(log_intensity[expected].sum(), abs=1e-9)
        assert mask[chosen].all() and (log_intensity[chosen] > -np.inf).all()
        assert (np.diff(chosen) >= separation).all()
        checked += 1
    assert checked > 1000


@pytest.mark.parametrize("seed", range(4))
def test_kth_of_every_is_the_kth_of_the_brute_force_ordered_set_of_the_expected_count(seed):
    rng = np.random.default_rng(seed)
    for _ in range(40):
        frames = int(rng.integers(3, 11))
        log_intensity = rng.normal(-1.5, 2.0, frames)
        total = np.exp(log_intensity).sum()  # Lambda(T) by hand
        k = int(rng.integers(1, 4))
        count = min(frames, max(k, int(round(total))))
        if count > frames or k > frames:
            continue
        chosen, _ = brute_force_ordered(log_intensity, count, np.ones(frames, bool), 2)
        assert kth_of_every(log_intensity, k, FRAME) == pytest.approx([placed_by_hand(log_intensity, chosen[k - 1])])


def test_kth_of_every_counts_peaks_a_question_of_the_kth_alone_would_confuse():
    """Three equal peaks with Lambda(T) = 3: the 2nd is the middle one, however much stronger the others are."""
    log_intensity = np.full(60, -12.0)
    log_intensity[[10, 30, 50]] = np.log([0.2, 0.6, 2.2])  # the 2nd occurrence is not the strongest frame
    assert expected_count(log_intensity) == pytest.approx(3.0, abs=1e-3)
    assert kth_of_every(log_intensity, 2) == pytest.approx([30.5 * FRAME])
    assert kth_of_every(log_intensity, 3) == pytest.approx([50.5 * FRAME])
    # More than were heard: the missing ones after the last heard, in order (frames 52 and 54 at -12)
    assert kth_of_every(log_intensity, 4) == pytest.approx([52.5 * FRAME])
    assert kth_of_every(log_intensity, 5) == pytest.approx([54.5 * FRAME])
    log_intensity[57:] = -np.inf  # no room after the last heard for two more: all five placed jointly
    assert kth_of_every(log_intensity, 6)[0] == pytest.approx(56.5 * FRAME)
    with pytest.raises(InputError, match="integer >= 1"):
        kth_of_every(log_intensity, 0)


@pytest.mark.parametrize("chunk", [decoding._CHUNK_ELEMENTS, 1])
def test_ordered_map_with_a_row_per_event_is_the_brute_force_maximiser(monkeypatch, chunk):
    """Event i scored on row i (the k-th occurrence with the earlier ones): the best separated,
    increasing tuple by sum_i rows[i][f_i], over every tuple; whole numbers, so ties are exact."""
    monkeypatch.setattr(decoding, "_CHUNK_ELEMENTS", chunk)
    rng = np.random.default_rng(21)
    checked = 0
    for _ in range(800):
        frames, count, min_separation = int(rng.integers(1, 10)), int(rng.integers(1, 5)), int(rng.integers(1, 4))
        rows = rng.integers(-3, 4, (count, frames)).astype(float)
        rows[rng.random((count, frames)) < 0.05] = -np.inf
        mask = rng.random(frames) < 0.85
        usable = [k for k in range(frames) if mask[k] and (rows[:, k] > -np.inf).all()]
        if not 1 <= count <= len(usable):
            continue
        for separation in range(min_separation, 0, -1):
            tuples = [t for t in itertools.combinations(usable, count) if all(np.diff(t) >= separation)]
            if tuples:
                break
        totals = [rows[np.arange(count), list(t)].sum() for t in tuples]
        expected = tuples[int(np.argmax(totals))]  # the first best: lexicographic ties, as ordered_map
        times = ordered_map(rows, count, FRAME, mask=mask, min_separation=min_separation)
        np.testing.assert_array_equal(np.round(times / FRAME - 0.5).astype(int), expected)
        checked += 1
    assert checked > 400
    # One row for every event is the shared track: the same answer as the 1-D call.
    track = rng.normal(size=40)
    np.testing.assert_array_equal(ordered_map(np.tile(track, (3, 1)), 3, FRAME), ordered_map(track, 3, FRAME))
    with pytest.raises(InputError, match="one row per event"):
        ordered_map(np.zeros((2, 10)), 3, FRAME)


def test_ordered_map_with_widths_is_the_brute_force_maximiser_on_the_frame_grid():
    """Merged segments of whole frames: the best separated frames of the 40 ms grid each segment
    covers (brute force over every tuple of grid frames), placed inside their segments."""
    rng = np.random.default_rng(14)
    checked = 0
    for _ in range(600):
        segments = int(rng.integers(1, 7))
        widths = rng.integers(1, 4, segments)
        log_intensity = rng.integers(-3, 4, segments).astype(float)
        log_intensity[rng.random(segments) < 0.1] = -np.inf
        mask = rng.random(segments) < 0.85
        count, min_separation = int(rng.integers(1, 5)), int(rng.integers(1, 4))
        grid_score, grid_mask = np.repeat(log_intensity, widths), np.repeat(mask, widths)
        if not 1 <= count <= int((grid_mask & (grid_score > -np.inf)).sum()):
            continue
        expected, separation = brute_force_ordered(grid_score, count, grid_mask, min_separation)
        times = ordered_map(log_intensity, count, FRAME, mask=mask, widths=widths, min_separation=min_separation) / FRAME
        edges = np.concatenate(([0], np.cumsum(widths)))
        segment = np.searchsorted(edges, times, side="right") - 1
        assert log_intensity[segment].sum() == grid_score[expected].sum()  # whole numbers: exact
        assert mask[segment].all()
        assert (times >= edges[segment] + 0.5 - 1e-9).all() and (times <= edges[segment + 1] - 0.5 + 1e-9).all()
        assert (np.diff(times) >= separation - 1e-9).all()
        checked += 1
    assert checked > 300


def test_ordered_map_with_unit_widths_is_ordered_map_without():
    rng = np.random.default_rng(15)
    for _ in range(100):
        log_intensity, count, mask, min_separation = random_ordered_case(rng, 30, 6, whole_numbers=True)
        if not 1 <= count <= int((mask & (log_intensity > -np.inf)).sum()):
            continue
        np.testing.assert_array_equal(
            ordered_map(log_intensity, count, FRAME, mask=mask, widths=np.ones(log_intensity.size),
                        min_separation=min_separation),
            ordered_map(log_intensity, count, FRAME, mask=mask, min_separation=min_separation))


def test_one_event_is_the_strongest_frame_centre_as_posterior_mode():
    rng = np.random.default_rng(12)
    for _ in range(200):
        frames = int(rng.integers(1, 40))
        log_intensity = rng.integers(-5, 5, frames).astype(float)  # ties: both take the first
        mask = rng.random(frames) < 0.7
        mask[rng.integers(0, frames)] = True
        widths = rng.integers(1, 5, frames).astype(float)
        best = np.flatnonzero(mask)[np.argmax(log_intensity[mask])]
        centre = (widths[:best].sum() + widths[best] / 2) * FRAME
        found = ordered_map(log_intensity, 1, FRAME, mask=mask, widths=widths)
        assert found == pytest.approx([centre], abs=1e-12)
        assert found == pytest.approx(posterior_mode(log_intensity, 1, FRAME, mask=mask, widths=widths), abs=1e-12)


def test_ordered_events_keep_their_separation():
    rng = np.random.default_rng(13)
    for min_separation in (1, 2, 3, 5):
        log_intensity = rng.normal(0, 4, 300)
        log_intensity[[40, 41, 42, 200]] = 30.0  # strong neighbours would pull events together
        frames = np.round(ordered_map(log_intensity, 40, 1.0, min_separation=min_separation) - 0.5)
        assert (np.diff(frames) >= min_separation).all()


def test_widths_give_segment_centres_and_separation_counts_frames():
    log_intensity = np.array([0.0, 5.0, 4.0, 0.0, 3.0])
    widths = np.array([2.0, 1.0, 3.0, 1.0, 4.0])  # segments cover frames 0-1, 2, 3-5, 6, 7-10
    centres = (np.cumsum(widths) - widths / 2) * FRAME
    # Segment 2 starts one frame after segment 1 and is three frames wide: its centre is 2 frames on.
    np.testing.assert_allclose(ordered_map(log_intensity, 2, FRAME, widths=widths, min_separation=2), centres[[1, 2]])
    # Three frames apart: the second event goes to the first frame of segment 2 that is far enough.
    np.testing.assert_allclose(ordered_map(log_intensity, 2, FRAME, widths=widths, min_separation=3),
                               np.array([2.5, 5.5]) * FRAME)
    # A wide segment holds several events, centred together inside it.
    np.testing.assert_allclose(ordered_map(np.array([0.0, 2.0, 0.0]), 2, FRAME, widths=np.array([1, 6, 1]),
                                           min_separation=2), np.array([3.0, 5.0]) * FRAME)


def test_ordered_map_refuses_widths_of_part_frames():
    with pytest.raises(InputError, match="whole-frame widths"):
        ordered_map(np.zeros(3), 2, widths=np.array([1.0, 1.5, 2.0]))


def test_separation_is_lowered_to_the_widest_that_fits():
    # Three events in five frames fit two apart (0, 2, 4) but not three apart.
    np.testing.assert_allclose(ordered_map(np.zeros(5), 3, FRAME, min_separation=3), np.array([0.5, 2.5, 4.5]) * FRAME)
    # Only frames 0..2 are usable: three events must be adjacent.
    mask = np.array([True, True, True, False, False, False])
    np.testing.assert_allclose(ordered_map(np.zeros(6), 3, FRAME, mask=mask), np.array([0.5, 1.5, 2.5]) * FRAME)
    # Usable frames 0, 3, 4, 7: separation 3 fits only three; four events need separation 1.
    log_intensity = np.array([0, -np.inf, -np.inf, 0, 0, -np.inf, -np.inf, 0.0])
    np.testing.assert_allclose(ordered_map(log_intensity, 4, FRAME, min_separation=3),
                               np.array([0.5, 3.5, 4.5, 7.5]) * FRAME)


def test_ordered_map_refuses_what_it_cannot_do():
    mask = np.array([True, False, True, False, False])
    with pytest.raises(InputError, match="only 2 of 5 frames"):
        ordered_map(np.zeros(5), 3, mask=mask)
    with pytest.raises(InputError, match="only 1 of 3 frames"):
        ordered_map(np.array([0.0, -np.inf, -np.inf]), 2)
    for count in (0, -1, 1.5, True, "2"):
        with pytest.raises(InputError, match="count must be an integer"):
            ordered_map(np.zeros(5), count)
    for separation in (0, -2, 1.5, True, None):
        with pytest.raises(InputError, match="min_separation"):
            ordered_map(np.zeros(5), 2, min_separation=separation)
    with pytest.raises(InputError, match="masked"):
        ordered_map(np.zeros(3), 1, mask=np.zeros(3, bool))
    with pytest.raises(InputError, match="NaN"):
        ordered_map(np.array([0.0, np.nan]), 1)


def test_long_input_many_events_in_blocks(monkeypatch):
    rng = np.random.default_rng(14)
    log_intensity = rng.normal(0, 3, 20_000)
    log_intensity[rng.integers(0, 20_000, 500)] = 12.0
    times = ordered_map(log_intensity, 300)
    assert times.shape == (300,) and np.isfinite(times).all()
    assert (np.diff(times) >= 2 * FRAME - 1e-9).all()  # sorted, distinct, two frames apart
    # Back-pointers were kept in blocks and recomputed: the same frames as holding all at once.
    monkeypatch.setattr(decoding, "_CHUNK_ELEMENTS", 10**9)
    np.testing.assert_array_equal(times, ordered_map(log_intensity, 300))


def test_one_dominant_peak_stacks_posterior_modes_but_not_ordered_map():
    rng = np.random.default_rng(15)
    log_intensity = rng.normal(-6, 1, 100)
    peak = int(rng.integers(20, 80))
    log_intensity[peak] = 8.0  # nearly all of Lambda(T) in one frame
    count = 5
    per_event = posterior_mode(log_intensity, count, FRAME)
    # Every per-event mode falls inside the peak frame (its edges included): the events stack.
    assert (np.abs(per_event / FRAME - (peak + 0.5)) <= 0.5 + 1e-9).all()
    joint = ordered_map(log_intensity, count, FRAME)
    frames = np.round(joint / FRAME - 0.5).astype(int)
    assert peak in frames and len(set(frames)) == count and (np.diff(frames) >= 2).all()


def test_decode_events_picks_the_decoding_per_head():
    rng = np.random.default_rng(16)
    scores = rng.normal(0, 3, 50)
    placed = [placed_by_hand(scores, int(frame)) for frame in ordered_map(scores, 4) / FRAME]  # inside its frames
    np.testing.assert_allclose(decode_events(scores, 4, "poisson"), placed)
    np.testing.assert_array_equal(decode_events(scores, 4, "interpolated", "posterior"), posterior_mode(scores, 4))
    np.testing.assert_allclose(decode_events(scores, 4, "binary"), placed)  # logits
    np.testing.assert_array_equal(decode_events(scores, 4, "binary", "posterior"),
                                  binary_top_k(1 / (1 + np.exp(-scores)), 4))
    with pytest.raises(InputError, match="decoding must be one of ordered, posterior"):
        decode_events(scores, 4, "poisson", "viterbi")
    with pytest.raises(InputError, match="objective"):
        decode_events(scores, 4, "tokens")


def _ends_by_hand(logits, starts, frame_seconds, longest, bounded):
    """interval_ends written as a plain loop over frames, for comparison."""
    ends = []
    for i, start in enumerate(starts):
        first = min(int(start / frame_seconds), len(logits) - 1)
        limit = min(len(logits), first + longest)
        if bounded and i + 1 < len(starts):
            limit = min(limit, max(first + 1, int(round(starts[i + 1] / frame_seconds))))
        frame = first + 1
        while frame < limit and logits[frame] >= 0:
            frame += 1
        end = frame * frame_seconds
        if bounded and i + 1 < len(starts):
            end = min(end, max(starts[i + 1], start + frame_seconds))
        ends.append(end)
    return ends


def test_interval_ends_follow_the_inside_channel_from_each_start():
    from framestamp.runtime.decoding import interval_ends

    rng = np.random.default_rng(5)
    for _ in range(300):
        frames = int(rng.integers(1, 40))
        logits = rng.normal(0.3, 1.0, frames)
        starts = np.sort(rng.integers(0, frames, int(rng.integers(1, 5)))) * 0.04 + 0.02
        bounded = bool(rng.integers(2))
        got = interval_ends(logits, starts, 0.04, max_seconds=0.4, bounded_by_next=bounded)
        assert np.allclose(got, _ends_by_hand(logits, starts, 0.04, 10, bounded))
        assert (got > starts - 1e-9).all()
    # A run of inside frames ends the interval where it stops.
    logits = np.full(30, -2.0)
    logits[5:12] = 3.0
    assert interval_ends(logits, [0.2], 0.04)[0] == pytest.approx(12 * 0.04)
    with pytest.raises(InputError):
        interval_ends(np.zeros((2, 3)), [0.1])


def test_subtitle_intervals_end_where_the_model_says_never_past_the_next_word():
    from framestamp.runtime.formats import intervals

    assert intervals(["a", "b"], [0.1, 0.5], 2.0, [0.3, 0.9]) == [("a", 0.1, 0.3), ("b", 0.5, 0.9)]
    assert intervals(["a", "b"], [0.1, 0.5], 2.0, [0.8, 0.7]) == [("a", 0.1, 0.5), ("b", 0.5, 0.7)]
    assert intervals(["a", "b"], [0.1, 0.5], 2.0) == [("a", 0.1, 0.5), ("b", 0.5, 1.0)]  # no ends: next start
    assert intervals(["a", "b", "c"], [0.1, 0.5, 0.5], 2.0, [0.3, 0.7, 0.9]) == [("a", 0.1, 0.3), ("b c", 0.5, 0.9)]


@pytest.mark.parametrize("seed", range(40))
def test_end_times_take_the_most_intense_admissible_frame(seed):
    rng = np.random.default_rng(seed)
    frames = int(rng.integers(2, 60))
    log_intensity = rng.normal(0, 3, frames)
    count = int(rng.integers(1, 5))
    starts = np.sort(rng.uniform(0, frames * FRAME, count))
    bounded = bool(seed % 2)
    max_seconds = None if seed % 3 == 0 else 0.4
    ends = end_times(log_intensity, starts, max_seconds=max_seconds, bounded_by_next=bounded)
    for i, (start, end) in enumerate(zip(starts, ends)):
        first = int(start / FRAME)
        # Every frame an end may take: after the start's frame, within max_seconds, not past the next start's frame.
        allowed = [f for f in range(frames) if f > first
                   and (max_seconds is None or f - first <= round(max_seconds / FRAME))
                   and not (bounded and i + 1 < count and f > max(first + 1, int(starts[i + 1] / FRAME)))]
        assert end >= start
        if allowed:
            best = max(allowed, key=lambda f: log_intensity[f])  # the most intense admissible frame, by brute force
            expected = max(start, placed_by_hand(log_intensity, best))  # placed inside it, as starts are
        else:  # a start in the clip's last frame ends with the clip
            expected = max(start, frames * FRAME)
        if bounded and i + 1 < count:  # and never past the next start
            expected = min(expected, max(starts[i + 1], start))
        assert end == pytest.approx(expected)


def test_ends_come_from_the_end_channel_where_there_is_one():
    frames = 30
    scores = np.zeros((frames, 3))
    scores[:, 1] = -5.0
    scores[5:20, 1] = 5.0  # inside: frames 5-19
    scores[12, 2] = 4.0  # end: frame 12
    starts = np.array([5 * FRAME])
    assert interval_ends_for("word", scores, ("onset", "inside", "end"), starts)[0] == pytest.approx(12.5 * FRAME)
    assert interval_ends_for("word", scores[:, :2], ("onset", "inside"), starts)[0] == pytest.approx(20 * FRAME)
    assert interval_ends_for("event", scores, ("onset", "inside", "end"), starts)[0] == pytest.approx(12.5 * FRAME)
    assert interval_ends_for("event", scores[:, :2], ("onset", "inside"), starts) is None
    assert interval_ends_for("speaker", scores, ("onset", "inside", "end"), starts) is None
    assert ended_tasks(("onset",)) == ()


@pytest.mark.parametrize("seed", range(6))
def test_words_aligned_from_their_own_tracks_are_the_brute_force_maximiser(seed):
    """Word i on row i's track, in order, two frames apart: the best-scoring increasing tuple, found by
    trying them all; each word's end from its own row's end channel, cut at the next word's start."""
    rng = np.random.default_rng(seed)
    words, frames = 3, 11
    rows = rng.normal(0.0, 2.0, size=(words, frames, 3))  # channels: onset, inside, end
    best = max((tuple_ for tuple_ in itertools.combinations(range(frames), words)
                if all(b - a >= 2 for a, b in zip(tuple_, tuple_[1:]))),
               key=lambda tuple_: sum(rows[i, f, 0] for i, f in enumerate(tuple_)))
    times, ends = align_word_tracks(rows, "poisson", "ordered", ("onset", "inside", "end"), FRAME)
    np.testing.assert_allclose(times, [placed_by_hand(rows[i, :, 0], frame) for i, frame in enumerate(best)])
    for i, (start, end) in enumerate(zip(times, ends)):
        own = end_times(rows[i, :, 2], [start], FRAME, max_seconds=2.0)[0]
        following = times[i + 1] if i + 1 < words else np.inf
        assert end == pytest.approx(min(own, following))
    alone, _ = align_word_tracks(rows, "poisson", "posterior", ("onset",), FRAME)
    np.testing.assert_allclose(alone, (rows[:, :, 0].argmax(axis=1) + 0.5) * FRAME)  # each word on its own track
    assert align_word_tracks(rows, "binary", "ordered", ("onset",), FRAME)[1] is None  # no end or inside channel


def test_subframe_times_finds_the_vertex_of_a_sampled_parabola_and_never_leaves_the_frame():
    centre = 7 + 0.5
    for peak in (-0.4, -0.1, 0.0, 0.3):  # a log-intensity that is exactly a parabola peaking at frame 7 + peak
        track = -((np.arange(15) - 7 - peak) ** 2)
        assert subframe_times(track, [centre * FRAME], FRAME)[0] == pytest.approx((centre + 0.5 * peak) * FRAME)
        assert subframe_times(track, [centre * FRAME], FRAME, share=1.0)[0] == pytest.approx((centre + peak) * FRAME)
    steep = np.array([0.0, 0.0, 5.0, 6.0, 0.0])  # peaks past the frame (ordered decoding can pick it): held inside
    assert subframe_times(steep, [2.5 * FRAME], FRAME, share=1.0)[0] == pytest.approx(3.0 * FRAME)
    for track, frame in (([3.0, 1.0, 2.0], 0), ([1.0, 2.0, 3.0], 2), ([1.0, -np.inf, 3.0, 2.0], 2),
                         ([1.0, 0.0, 1.0], 1), ([2.0, 2.0, 2.0], 1), ([2.0, 2.0, 0.0], 1)):
        # at an end, beside -inf, off a peak, flat, at the edge of a flat stretch (a merged segment spread out)
        assert subframe_times(track, [(frame + 0.5) * FRAME], FRAME)[0] == pytest.approx((frame + 0.5) * FRAME)
    rows = np.array([[0.0, 3.0, 2.0, 0.0], [0.0, 2.0, 3.0, 0.0]])  # a row per time: each read on its own
    np.testing.assert_allclose(subframe_times(rows, [1.5 * FRAME, 2.5 * FRAME], FRAME),
                               [placed_by_hand(rows[0], 1), placed_by_hand(rows[1], 2)])
    with pytest.raises(InputError, match="one row per time"):
        subframe_times(rows, [1.5 * FRAME], FRAME)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-30, 30), min_size=3, max_size=40), st.data())
def test_subframe_times_match_the_fitted_parabola_inside_the_frame(track, data):
    track = np.array(track)
    frame = data.draw(st.integers(0, len(track) - 1))
    placed = subframe_times(track, [(frame + 0.5) * FRAME], FRAME)[0]
    assert placed == pytest.approx(placed_by_hand(track, frame), abs=1e-9)
    assert frame * FRAME <= placed < (frame + 1) * FRAME  # a time keeps its frame: floor(t / 40 ms)


def test_align_word_tracks_refuses_what_is_not_a_row_per_word():
    with pytest.raises(InputError, match=r"rows must be \(words, frames, channels\)"):
        align_word_tracks(np.zeros((4, 3)), "poisson")
    with pytest.raises(InputError, match="decoding must be one of"):
        align_word_tracks(np.zeros((2, 5, 1)), "poisson", "viterbi")


@pytest.mark.parametrize("seed", range(4))
def test_aligned_confidence_is_each_words_marginal_over_every_ordered_placement(seed):
    """Every increasing tuple two frames apart, weighted by exp(sum of its rows' log-intensities): the mass
    of placements that put word i within 40 ms of its time, by brute force."""
    rng = np.random.default_rng(seed)
    words, frames = 3, 9
    tracks = rng.normal(0.0, 2.0, size=(words, frames))
    placements = [t for t in itertools.combinations(range(frames), words) if all(b - a >= 2 for a, b in zip(t, t[1:]))]
    weights = np.array([np.exp(sum(tracks[i, f] for i, f in enumerate(t))) for t in placements])
    times = ordered_map(tracks, words, FRAME)
    expected = [sum(w for t, w in zip(placements, weights) if abs((t[i] + 0.5) * FRAME - times[i]) <= 0.04 + 1e-9)
                / weights.sum() for i in range(words)]
    np.testing.assert_allclose(aligned_confidence(tracks, times, FRAME), expected, rtol=1e-9)
    # far from any likely placement: no mass
    assert aligned_confidence(np.array([[0.0] * 4 + [-300.0] * 4]), [7.5 * FRAME], FRAME)[0] < 1e-100
    with pytest.raises(InputError, match=r"must be \(words, frames\)"):
        aligned_confidence(np.zeros(5), [0.1])


# ------------------------------------------------------------------ paced alignment (runtime/pacing.py)


def brute_paced(tracks, words, separation):
    """Every increasing placement ``separation`` apart at every rate of the grid, scored as the pacing
    module's docstring writes the density: sum of row scores, minus weight x (log gap ratio)^2 / (2 spread^2)
    per step, capped at weight x pause for a gap longer than expected. (score, frames) pairs."""
    from framestamp.runtime import pacing

    count, frames = tracks.shape
    sizes = [len(word) + 2 for word in words]
    placements = [t for t in itertools.combinations(range(frames), count)
                  if all(b - a >= separation for a, b in zip(t, t[1:]))]
    scored = []
    for rate in pacing.RATES:
        for placement in placements:
            score = sum(tracks[i, f] for i, f in enumerate(placement))
            for i in range(count - 1):
                ratio = np.log((placement[i + 1] - placement[i]) * FRAME / (rate * sizes[i]))
                penalty = ratio ** 2 / (2 * pacing.SPREAD ** 2)
                score -= pacing.WEIGHT * (min(penalty, pacing.PAUSE) if ratio > 0 else penalty)
            scored.append((score, placement))
    return scored


@pytest.mark.parametrize("seed", range(6))
def test_paced_map_and_its_confidence_match_brute_force_over_placements_and_rates(seed):
    rng = np.random.default_rng(seed)
    count, frames = int(rng.integers(2, 4)), int(rng.integers(9, 13))
    tracks = rng.normal(0.0, 2.0, size=(count, frames))
    if seed % 2:
        tracks[:, rng.integers(frames)] = -np.inf  # a frame no word may take
    words = ["".join("ab"[b] for b in rng.integers(0, 2, size=rng.integers(1, 9))) for _ in range(count)]
    scored = brute_paced(tracks, words, 2)
    best_score = max(score for score, _ in scored)
    times = decoding.paced_map(tracks, words, FRAME)
    frames_chosen = tuple(int(t / FRAME) for t in times)
    assert max(score for score, placement in scored if placement == frames_chosen) == pytest.approx(best_score)
    # confidence: the mass of placements (over every rate, uniformly) within 40 ms of each word's time
    scores = np.array([score for score, _ in scored])
    weights = np.exp(scores - scores.max())
    expected = [sum(w for (_, t), w in zip(scored, weights) if abs((t[i] + 0.5) * FRAME - times[i]) <= 0.04 + 1e-9)
                / weights.sum() for i in range(count)]
    np.testing.assert_allclose(aligned_confidence(tracks, times, FRAME, words=words), expected, rtol=1e-7)


def test_pacing_places_words_a_track_cannot_tell_apart_by_their_lengths():
    """Two words known at 0.2 s and 2.6 s, five unknown ones between them on one flat track with a small
    bump at every frame a word could start: unpaced, any five bumps in order are as good; paced, the
    starts follow the words' lengths (one rate for the clip), as a speaker says them."""
    frames = 80
    words = ["go", "extraordinary", "a", "it", "wonderfully", "so", "end"]
    sizes = np.array([len(word) + 2 for word in words], dtype=float)
    starts = np.concatenate([[5.0], 5.0 + np.cumsum(sizes[:-1]) * (60.0 / sizes[:-1].sum())])  # frames
    truth = np.round(starts).astype(int)
    bumps = np.full(frames, -3.0)
    bumps[np.arange(3, frames, 3)] = 0.0  # a start could be any of these (every 120 ms)
    bumps[truth] = 0.0
    tracks = np.tile(bumps, (len(words), 1))
    tracks[0] = np.where(np.arange(frames) == truth[0], 5.0, -10.0)
    tracks[-1] = np.where(np.arange(frames) == truth[-1], 5.0, -10.0)
    paced = np.round(decoding.paced_map(tracks, words, FRAME) / FRAME - 0.5).astype(int)
    assert np.abs(paced - truth).max() <= 1
    unpaced = np.round(decoding.paced_map(tracks, words, FRAME, pace=0) / FRAME - 0.5).astype(int)
    np.testing.assert_array_equal(unpaced, np.round(ordered_map(tracks, len(words), FRAME) / FRAME - 0.5))
    assert np.abs(unpaced - truth).max() > 1  # without the prior the track alone cannot place them


def test_paced_alignment_refuses_what_it_cannot_pace():
    with pytest.raises(InputError, match="2 word rows for a transcript of 3 words"):
        decoding.paced_map(np.zeros((2, 10)), ["a", "b", "c"])
    with pytest.raises(InputError, match="pace must be a number >= 0"):
        decoding.paced_map(np.zeros((2, 10)), ["a", "b"], pace=-1.0)
    with pytest.raises(InputError, match="needs as many usable frames"):
        decoding.paced_map(np.array([[0.0, -np.inf, 0.0], [0.0, -np.inf, 0.0], [0.0, -np.inf, 0.0]]), ["a", "b", "c"])
    with pytest.raises(InputError, match="pace must be a number >= 0"):
        align_word_tracks(np.zeros((2, 5, 1)), "poisson", words=["a", "b"], pace=float("nan"))


def test_transcript_rows_keep_a_known_words_row_and_average_a_new_words_with_the_transcript_question():
    from framestamp.runtime.decoding import transcript_rows

    rng = np.random.default_rng(5)
    own = [rng.normal(size=(7, 3)) for _ in range(3)]
    question = rng.normal(size=(7, 3))
    rows = transcript_rows([True, False, True], own, question)
    assert rows.shape == (3, 7, 3)
    np.testing.assert_array_equal(rows[0], own[0])
    np.testing.assert_array_equal(rows[2], own[2])
    np.testing.assert_allclose(rows[1], [[(a + b) / 2 for a, b in zip(x, y)] for x, y in zip(own[1], question)])
    # every word known: the transcript question's scores are not needed
    np.testing.assert_array_equal(transcript_rows([True] * 3, own, None), np.stack(own))
    with pytest.raises(InputError, match="one row per word"):
        transcript_rows([True, False], own, question)
    with pytest.raises(InputError, match="needs the transcript question's scores"):
        transcript_rows([True, False, True], own, None)
