"""A speaking-rate prior for aligning a transcript: words follow each other at a pace their lengths predict.

Aligning a transcript word by word scores word i at frame f by its own question's track. Where that
track is weak (a word the model never heard, partly answered on the transcript question's shared track, or
an engine it never heard) the plain ordered alignment often puts a word on another word's start:
it knows *that* a word starts there, not *which*. The transcript says
more than the order: a long word takes longer to say than a short one. Speech has a rate, so the
time from word i's start to word i+1's is about ``rate x size_i``, ``size_i`` the word's letters
plus 2 (``word_sizes``; on espeak-ng and flite transcripts the log of gap / (rate x size) has an
interquartile range of 0.27 with the rate fitted per clip, against 0.46 for syllables alone).

The paced alignment maximizes, over the frames f_1 < ... < f_n (each step at least the separation)
and over one rate for the clip (``RATES``, seconds per size unit: 0.02-0.16, espeak-ng's slowest to
its fastest and ordinary human speech between),

    sum_i track_i(f_i) + sum_i gap_score(f_{i+1} - f_i; rate x size_i),

    gap_score(g; mu) = -weight x q(log(g / mu)),  q(x) = x^2 / (2 SPREAD^2), capped at PAUSE for x > 0:

a gap shorter than its word is penalized without bound, a longer one at most ``weight x PAUSE``
nats (speakers pause). With ``weight = 0`` it is ``ordered_map`` with a row per word. Exact dynamic
programming per rate: the gap score is its cap beyond ``mu exp(SPREAD sqrt(2 PAUSE))``, so the
steps within that reach are scored one by one and any longer step through a running maximum,
O(rates x words x frames x reach).
"""

from __future__ import annotations

import numpy as np

WEIGHT = 0.5  # nats of track score per unit of q: 0.3-0.6 all gained on the tuning clips, 0.5 the middle
SPREAD = 0.2  # the standard deviation of log(gap / expected gap) the prior assumes
PAUSE = 2.0  # a gap longer than expected costs at most weight x PAUSE nats (1 nat at the default weight)
RATES = np.geomspace(0.02, 0.16, 16)  # seconds per size unit, 14% apart (below SPREAD)
NEGLIGIBLE = 20.0  # nats: a rate this far below all of them together holds < 2e-9 of the posterior


def word_sizes(words) -> np.ndarray:
    """Each word's expected share of the time to the next word's start: its letters plus 2."""
    return np.array([len(word) + 2 for word in words], dtype=np.float64)


def _gap_scores(expected: float, separation: int, frames: int, weight: float):
    """(gaps separation..reach, their scores, the score of any gap past reach) for an expected gap in frames."""
    reach = int(np.ceil(expected * np.exp(SPREAD * np.sqrt(2 * PAUSE)))) + 1
    reach = int(np.clip(reach, separation, max(frames - 1, separation)))
    gaps = np.arange(separation, reach + 1)
    x = np.log(gaps / max(expected, 1e-9))
    q = x ** 2 / (2 * SPREAD ** 2)
    q = np.where(x > 0, np.minimum(q, PAUSE), q)
    return gaps, -weight * q, -weight * PAUSE


def _step(previous: np.ndarray, gaps: np.ndarray, scores: np.ndarray, beyond: float, summed: bool):
    """Best (or log-summed) ``previous[f - g] + gap score(g)`` over every gap g >= gaps[0], for each frame f;
    with the source frame of the best when not ``summed``."""
    frames = previous.size
    index = np.arange(frames)
    source = index[:, None] - gaps[None, :]
    within = np.where(source >= 0, previous[np.maximum(source, 0)] + scores[None, :], -np.inf)
    far = index - gaps[-1] - 1  # the latest source frame of a gap past the reach
    if summed:
        running = np.logaddexp.accumulate(previous)
        tail = np.where(far >= 0, running[np.maximum(far, 0)] + beyond, -np.inf)
        with np.errstate(invalid="ignore", divide="ignore"):
            peak = np.max(within, axis=1, keepdims=True)
            peak = np.where(np.isfinite(peak), peak, 0.0)
            near = np.log(np.sum(np.exp(within - peak), axis=1)) + peak[:, 0]
        return np.logaddexp(near, tail), None
    pick = np.argmax(within, axis=1)
    value, origin = within[index, pick], source[index, pick]
    running = np.maximum.accumulate(previous)
    last_best = np.maximum.accumulate(np.where(previous >= running, index, 0))  # latest frame holding the max
    tail = np.where(far >= 0, running[np.maximum(far, 0)] + beyond, -np.inf)
    longer = tail > value
    return np.where(longer, tail, value), np.where(longer, last_best[np.maximum(far, 0)], origin)


def paced_frames(tracks, sizes, frame_seconds: float, separation: int, weight: float = WEIGHT) -> np.ndarray:
    """Frame indices f_1 < ... < f_n maximizing the paced score (module docstring) over frames and rates.

    ``tracks`` (words, frames) each word's score per frame (-inf: never there), ``sizes`` (words,) from
    ``word_sizes``, ``separation`` the least step in frames (n words must fit)."""
    tracks = np.asarray(tracks, dtype=np.float64)
    count, frames = tracks.shape
    best_total, best_path = -np.inf, None
    for rate in RATES if count > 1 else RATES[:1]:
        expected = rate * np.asarray(sizes, dtype=np.float64) / frame_seconds
        total, pointers = tracks[0], []
        for i in range(1, count):
            value, origin = _step(total, *_gap_scores(expected[i - 1], separation, frames, weight), summed=False)
            pointers.append(origin)
            total = tracks[i] + value
        last = int(np.argmax(total))
        if total[last] > best_total:
            path = [last]
            for origin in reversed(pointers):
                path.append(int(origin[path[-1]]))
            best_total, best_path = total[last], path[::-1]
    if best_path is None:
        raise ValueError("no placement of the words has a finite score")
    return np.array(best_path, dtype=np.int64)


def paced_marginals(tracks, sizes, frame_seconds: float, separation: int, weight: float = WEIGHT) -> np.ndarray:
    """(words, frames): the posterior probability that word i starts at frame f, under the density
    exp(paced score), summed over every placement and over ``RATES`` (a uniform prior on the rate).
    Forward and backward sums in log space, per rate."""
    tracks = np.asarray(tracks, dtype=np.float64)
    count, frames = tracks.shape
    passes = []
    for rate in RATES if count > 1 else RATES[:1]:
        expected = rate * np.asarray(sizes, dtype=np.float64) / frame_seconds
        steps = [_gap_scores(expected[i], separation, frames, weight) for i in range(count - 1)]
        forward = [tracks[0]]
        for i in range(1, count):
            forward.append(tracks[i] + _step(forward[-1], *steps[i - 1], summed=True)[0])
        passes.append((np.logaddexp.reduce(forward[-1]), forward, steps))
    log_total = np.logaddexp.reduce([one[0] for one in passes])
    marginals = np.zeros((count, frames))
    for rate_total, forward, steps in passes:
        if rate_total < log_total - NEGLIGIBLE:  # a rate this unlikely adds nothing visible: skip its backward pass
            continue
        backward = [np.zeros(frames)]
        for i in range(count - 2, -1, -1):  # word i+1 and the rest after word i: the forward step, reversed in time
            after = (tracks[i + 1] + backward[-1])[::-1]
            backward.append(_step(after, *steps[i], summed=True)[0][::-1])
        with np.errstate(under="ignore"):
            marginals += np.exp(np.stack(forward) + np.stack(backward[::-1]) - log_total)
    return marginals
