"""From per-frame head outputs to timestamps, in plain NumPy (paper section 2).

Time is measured in frames inside this module (frame k covers [edge_k, edge_k + width_k), widths
default to 1) and converted to seconds only on the way out. ``log_intensity[k]`` is the log of the
Poisson rate per frame inside segment k, so segment k holds mass ``exp(log_intensity[k]) * width[k]``.

Two decodings when the number of events is known (``DECODINGS``): "ordered" (``ordered_map``, the
default) picks the best set of distinct, separated frames jointly, so a transcript's words cannot
stack on one frame; "posterior" is the paper's per-event mode (``posterior_mode``, eq. 6-8) for a
Poisson head and top-k frames (``binary_top_k``) for a binary one. For one event the two agree.
A transcript aligned on its words' own tracks is also paced by the words' lengths (``paced_map``,
``runtime.pacing``): consecutive starts about as far apart as one speaking rate says.
"""

from __future__ import annotations

import math

import numpy as np

from framestamp.runtime import pacing
from framestamp.runtime.errors import InputError
from framestamp.runtime.frames import FRAME_SECONDS

# Upper bound on (count x segments) candidate scores held at once: ~16 MB of float64 per array.
_CHUNK_ELEMENTS = 2_000_000

DECODINGS = ("ordered", "posterior")  # ordered_map first: the default
# How a transcript is timed: each word asked as its own question and the answers aligned jointly (the
# default), or the paper's one transcript question with one track for all its words.
TRANSCRIPT_BY = ("words", "question")
LOG_INTENSITY_HEADS = ("poisson", "interpolated")  # objectives whose head scores are log-intensities


def _segments(values, mask, widths, name: str):
    """Validate one example's per-frame values; return (values, valid, widths, left edges) as float64."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise InputError(f"{name} must be a non-empty 1-D array (frames,), got shape {values.shape}")
    valid = np.ones(values.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if valid.shape != values.shape:
        raise InputError(f"mask has shape {valid.shape} but {name} has shape {values.shape}")
    if widths is None:
        widths = np.ones(values.shape)
    else:
        widths = np.asarray(widths, dtype=np.float64)
        if widths.shape != values.shape:
            raise InputError(f"widths has shape {widths.shape} but {name} has shape {values.shape}")
        if not (np.isfinite(widths) & (widths > 0)).all():
            raise InputError("widths must be finite and positive (frames per segment)")
    if np.isnan(values[valid]).any() or (values[valid] == np.inf).any():
        raise InputError(f"{name} contains NaN or +inf at unmasked frames")
    left_edges = np.concatenate(([0.0], np.cumsum(widths)[:-1]))
    return values, valid, widths, left_edges


def _log_masses(log_intensity, mask, widths):
    log_intensity, valid, widths, left_edges = _segments(log_intensity, mask, widths, "log_intensity")
    valid &= log_intensity > -np.inf  # a zero rate holds no events
    if not valid.any():
        raise InputError("no frame has positive intensity: every frame is masked or has log-intensity -inf")
    log_mass = np.where(valid, log_intensity + np.log(widths), -np.inf)
    return log_intensity, valid, widths, left_edges, log_mass


def _event_count(count) -> int:
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 1:
        raise InputError(f"count must be an integer >= 1, got {count!r}")
    return int(count)


def posterior_mode(log_intensity, count: int, frame_seconds: float = FRAME_SECONDS, mask=None, widths=None):
    """Posterior mode of each of ``count`` ordered event times under the IHP (paper eq. 6-8).

    The i-th of n event times has density  p(t) ~ Lambda(t)^(i-1) (Lambda(T) - Lambda(t))^(n-i) lambda(t)
    (eq. 8). On each segment lambda is constant and Lambda is linear, so p is a Beta-shaped
    function of z = Lambda(t), unimodal with its peak at z* = (i-1)/(n-1) Lambda(T): the segment's
    maximum is at z* clamped to the segment's ends. Scoring those candidates for every segment
    and taking the best gives the exact maximiser. All sums are done in log space (prefix and
    suffix log-cumsum-exp, never Lambda(T) - Lambda(t) by subtraction), so log-intensities far
    apart in magnitude keep their precision.

    Args:
        log_intensity: (frames,) log-rate per frame.
        count: number of events n >= 1.
        frame_seconds: seconds per frame (width 1).
        mask: optional (frames,) bool, False for padding; masked frames hold no mass.
        widths: optional (frames,) segment widths in frames, for merged frames.

    Returns: (count,) float64 sorted times in seconds. For n = 1 the density is flat inside the
    best segment; its centre is returned.
    """
    n = _event_count(count)
    check_frame_seconds(frame_seconds)
    log_intensity, valid, widths, left_edges, log_mass = _log_masses(log_intensity, mask, widths)

    segments = np.flatnonzero(valid)
    rate = log_intensity[segments]
    if n == 1:
        best = segments[np.argmax(rate)]
        return np.array([(left_edges[best] + widths[best] / 2) * frame_seconds])

    mass = log_mass[segments]
    log_prefix = np.logaddexp.accumulate(mass)  # log H_k: mass up to and including segment k
    log_before = np.concatenate(([-np.inf], log_prefix[:-1]))  # log H_{k-1}
    log_suffix = np.logaddexp.accumulate(mass[::-1])[::-1]  # log (Lambda(T) - H_{k-1})
    log_after = np.concatenate((log_suffix[1:], [-np.inf]))  # log (Lambda(T) - H_k)
    log_total = log_prefix[-1]

    order = np.arange(1, n + 1, dtype=np.float64)
    alpha, beta = order - 1, n - order  # Beta(i, n+1-i) exponents
    peak_share = alpha / (n - 1)  # z* / Lambda(T)
    with np.errstate(divide="ignore"):
        log_peak = np.log(peak_share) + log_total
        log_peak_rest = np.log1p(-peak_share) + log_total  # log (Lambda(T) - z*)
    # Segments wholly below z* peak at their right end, those wholly above at their left end.
    # Only i = 1 reaches z = 0 (and only i = n reaches z = Lambda(T)), where the exponent is 0:
    # a finite stand-in for log 0 keeps 0 * log 0 = 0 without changing any other candidate.
    right_z, right_rest = log_prefix, np.concatenate((log_after[:-1], [0.0]))
    left_z, left_rest = np.concatenate(([0.0], log_before[1:])), log_suffix
    below = np.searchsorted(log_prefix, log_peak, side="right")  # segments [0, below) end <= z*
    above = np.searchsorted(log_before, log_peak, side="left")  # segments [above, K) start >= z*
    column = np.arange(len(segments))
    right_parts = np.stack((right_z, right_rest, rate))  # score = [alpha, beta, 1] @ parts
    left_parts = np.stack((left_z, left_rest, rate))
    coefficients = np.stack((alpha, beta, np.ones(n)), axis=1)

    times = np.empty(n)
    rows = max(1, _CHUNK_ELEMENTS // len(segments))
    for start in range(0, n, rows):
        chunk = slice(start, min(n, start + rows))
        is_right = column < below[chunk, None]
        score = np.where(is_right, coefficients[chunk] @ right_parts, coefficients[chunk] @ left_parts)
        score[~is_right & (column < above[chunk, None])] = -np.inf  # the segment holding z*: below
        best = np.argmax(score, axis=1)
        best_score = score[np.arange(best.size), best]
        fraction = np.where(best < below[chunk], 1.0, 0.0)

        holder = below[chunk]  # the segment holding z* strictly inside, if any
        has_holder = holder < above[chunk]
        holder = np.minimum(holder, len(segments) - 1)
        with np.errstate(invalid="ignore"):  # 0 * log 0 for i = 1 and i = n, never holders
            peak_score = alpha[chunk] * log_peak[chunk] + beta[chunk] * log_peak_rest[chunk] + rate[holder]
        use_peak = has_holder & (peak_score > best_score)
        if use_peak.any():
            best[use_peak] = holder[use_peak]
            fraction[use_peak] = _peak_fraction(
                peak_share[chunk][use_peak], log_before[holder[use_peak]], log_after[holder[use_peak]],
                mass[holder[use_peak]], log_total,
            )
        segment = segments[best]
        times[chunk] = left_edges[segment] + fraction * widths[segment]
    return np.sort(times) * frame_seconds


def _peak_fraction(peak_share, log_before, log_after, log_mass, log_total):
    """Where z* = peak_share * Lambda(T) falls inside its segment, as a fraction of the segment.

    Measured from the nearer end of Lambda (prefix or suffix) so the subtraction keeps precision.
    """
    before = np.exp(log_before - log_total)  # H_{k-1} / Lambda(T)
    after = np.exp(log_after - log_total)  # (Lambda(T) - H_k) / Lambda(T)
    mass = np.exp(log_mass - log_total)
    from_left = (peak_share - before) / mass
    from_right = 1.0 - ((1.0 - peak_share) - after) / mass
    fraction = np.where(peak_share <= 0.5, from_left, from_right)
    return np.clip(fraction, 0.0, 1.0)


def ordered_map(log_intensity, count: int, frame_seconds: float = FRAME_SECONDS, mask=None, widths=None,
                min_separation: int = 2):
    """Most probable set of ``count`` ordered event frames, jointly: f_1 < ... < f_n, each step
    ``min_separation`` frames or more, maximizing the sum of the chosen frames' log-intensities.

    The joint density of n ordered IHP events is  prod_i lambda(t_i) exp(-Lambda(T)); the second
    factor does not depend on where the events are, so over distinct frames the MAP maximizes
    sum_i log lambda(f_i). Decoding each event on its own (``posterior_mode``) lets several land on
    one strong frame; the separation keeps a transcript's words apart. Any monotone per-frame score
    works the same way, e.g. a binary head's logits (log-odds).

    With ``widths`` (merged segments, whole frames each) the events are placed on the 40 ms grid the
    segments cover, each frame at its segment's log-intensity: separation counts grid frames, and a
    wide segment can hold several events. The posterior is flat inside a segment, so the events a
    segment holds are then moved, together, as close to its centre as their neighbours allow (a
    lone event lands on the centre, as ``posterior_mode`` puts it). When ``count`` events cannot fit
    ``min_separation`` apart among the usable frames, the largest separation that fits is used
    instead (down to 1, distinct frames). Ties go to the earliest frames (the lexicographically
    first set). Dynamic programming over events from the last, with running
    suffix maxima: O(count x frames) time; back-pointers are int32 and kept for a block of
    events at a time (the rest recomputed from saved totals), so memory grows as
    sqrt(count) x frames: a 46 MB peak for 500 events over 100k frames.

    Per-event tracks: ``log_intensity`` of shape (count, frames) scores event i on row i, and the MAP
    maximizes sum_i log lambda_i(f_i). That decodes the k-th occurrence of something together with
    occurrences 1..k-1 asked of the same audio (row j the answer to "the (j+1)-th"): the k-th cannot
    land on or before an earlier one's frame. A frame is usable where every row is.

    Args:
        log_intensity: (frames,) log-rate per frame (or any monotone per-frame score), or (count, frames)
            one row per event.
        count: number of events n >= 1; at most the number of usable frames.
        frame_seconds: seconds per frame (width 1).
        mask: optional (frames,) bool, False for padding; masked frames (and -inf) are never chosen.
        widths: optional (frames,) whole-frame segment widths, for merged frames.
        min_separation: the least gap in 40 ms frames between consecutive events, >= 1.

    Returns: (count,) float64 sorted, distinct times in seconds: the chosen frames' centres (with
    widths: placed inside their segments as above). For n = 1 this is the centre of the strongest
    segment, as ``posterior_mode`` gives.
    """
    count = _event_count(count)
    check_frame_seconds(frame_seconds)
    if isinstance(min_separation, bool) or not isinstance(min_separation, (int, np.integer)) or min_separation < 1:
        raise InputError(f"min_separation must be an integer >= 1 (frames between events), got {min_separation!r}")
    merged = widths is not None
    tracks = np.asarray(log_intensity, dtype=np.float64)
    if tracks.ndim == 2:
        if tracks.shape[0] != count:
            raise InputError(f"per-event log_intensity has {tracks.shape[0]} rows for {count} events: give one row "
                             "per event, shape (count, frames)")
        rows = [_log_masses(row, mask, widths) for row in tracks]
        log_intensity = np.stack([row[0] for row in rows])
        valid, widths, left_edges = np.logical_and.reduce([row[1] for row in rows]), rows[0][2], rows[0][3]
        if not valid.any():
            raise InputError("no frame is usable by every event's row: all are masked or -inf in some row")
    else:
        log_intensity, valid, widths, left_edges, _ = _log_masses(tracks, mask, widths)
    if merged:
        if not np.array_equal(widths, np.round(widths)):
            raise InputError("ordered_map takes whole-frame widths (merged 40 ms frames)")
        grid_widths = widths.astype(np.int64)
        log_intensity, valid = np.repeat(log_intensity, grid_widths, axis=-1), np.repeat(valid, grid_widths)
    usable = np.flatnonzero(valid)
    if count > usable.size:
        raise InputError(f"asked for {count} events but only {usable.size} of {valid.size} frames can hold one "
                         f"(the rest are masked or have log-intensity -inf): ask for at most {usable.size} "
                         "events, or give longer audio")
    separation = _widest_separation(usable, count, int(min_separation))
    chosen = _best_separated_frames(np.where(valid, log_intensity, -np.inf), count, separation)
    if not merged:
        return (left_edges[chosen] + widths[chosen] / 2) * frame_seconds
    return _centred_in_segments(chosen, np.repeat(np.arange(widths.size), grid_widths), left_edges, widths,
                                separation) * frame_seconds


def _centred_in_segments(chosen: np.ndarray, segment_of: np.ndarray, left_edges: np.ndarray, widths: np.ndarray,
                         separation: int) -> np.ndarray:
    """Times in frames for the chosen grid frames, each segment's events moved together towards its
    centre as far as the segment's edges and the neighbouring events' separation allow (any such
    move keeps the score: the rate is constant inside a segment). Left to right, each block bounded
    by the already placed events before it and the not yet moved ones after it."""
    times = chosen + 0.5
    segments = segment_of[chosen]
    start = 0
    while start < times.size:
        end = start
        while end + 1 < times.size and segments[end + 1] == segments[start]:
            end += 1
        segment = segments[start]
        lowest = left_edges[segment] + 0.5 - times[start]  # stay inside the segment
        highest = left_edges[segment] + widths[segment] - 0.5 - times[end]
        if start > 0:
            lowest = max(lowest, times[start - 1] + separation - times[start])
        if end + 1 < times.size:
            highest = min(highest, times[end + 1] - separation - times[end])
        wanted = left_edges[segment] + widths[segment] / 2 - (times[start] + times[end]) / 2
        times[start:end + 1] += min(max(wanted, lowest), highest)
        start = end + 1
    return times


def _widest_separation(usable: np.ndarray, count: int, separation: int) -> int:
    """The largest gap <= ``separation`` at which ``count`` of the ``usable`` frame indices fit."""
    if count > 1:
        separation = min(separation, max(1, int(usable[-1] - usable[0]) // (count - 1)))
    while separation > 1 and not _fits(usable, count, separation):
        separation -= 1
    return separation


def _fits(usable: np.ndarray, count: int, separation: int) -> bool:
    """Whether ``count`` of the sorted ``usable`` indices can be ``separation`` apart: earliest-first picks."""
    frame = usable[0]
    for _ in range(count - 1):
        position = np.searchsorted(usable, frame + separation)
        if position == usable.size:
            return False
        frame = usable[position]
    return True


def _best_separated_frames(score: np.ndarray, count: int, separation: int) -> np.ndarray:
    """Frame indices f_1 < ... < f_n, ``separation`` apart, maximizing sum score[f_i] (earliest on ties);
    ``score`` (frames,) for every event, or (count, frames) with event i scored on row i.

    ``total[k]`` is the best score of events i..n with event i at frame k, computed for i = n down
    to 1; ``pointers[i][k]`` is where event i+1 then goes. Pointer rows for a block of events are
    held at once; the totals entering each block are saved, and a block's pointers are recomputed
    from them on the way forward (the last block computed is the first one needed: kept).
    """
    frames = score.shape[-1]
    score = np.broadcast_to(score, (count, frames))  # a view: one row per event
    block = max(_CHUNK_ELEMENTS // frames, math.isqrt(2 * count) + 1)  # pointer rows held at once
    ends = list(range(count - 1, 0, -block))  # pointer rows [max(0, end - block), end) per block
    entering, pointers = [], None
    total = score[count - 1]
    for end in ends:
        entering.append(total)
        total, pointers = _earlier_events(total, score[max(0, end - block):end], separation)
    chosen = np.empty(count, dtype=np.int64)
    chosen[0] = np.argmax(total)  # the first maximum: the earliest first frame
    for end, later in reversed(list(zip(ends, entering))):
        start = max(0, end - block)
        if pointers is None:
            _, pointers = _earlier_events(later, score[start:end], separation)
        for row in range(start, end):
            chosen[row + 1] = pointers[row - start, chosen[row]]
        pointers = None
    return chosen


def _earlier_events(total: np.ndarray, scores: np.ndarray, separation: int):
    """One step per row of ``scores`` (rows, frames) of the recursion  total_i[k] = scores_i[k] +
    max_{j >= k + separation} total_{i+1}[j], from the latest event to the earliest. Returns the
    earliest event's totals and the (rows, frames) int32 back-pointers, row r for the r-th event of
    the block: the first best j for each k."""
    rows, frames = scores.shape
    index = np.arange(frames)
    pointers = np.zeros((rows, frames), dtype=np.int32)
    for row in reversed(range(rows)):
        best_after = np.maximum.accumulate(total[::-1])[::-1]  # max over j >= k
        # j is where the best at or after j starts if it ties or beats everything after it: earliest wins.
        starts_best = total >= np.append(best_after[1:], -np.inf)
        where_best = np.minimum.accumulate(np.where(starts_best, index, frames)[::-1])[::-1]
        reach = max(0, frames - separation)
        earlier = np.full(frames, -np.inf)
        earlier[:reach] = scores[row, :reach] + best_after[separation:]
        pointers[row, :reach] = where_best[separation:]
        total = earlier
    return total, pointers


def expected_count(log_intensity, mask=None, widths=None) -> float:
    """Lambda(T), the expected number of events under the IHP: sum of rate x width over valid frames.

    Meaningful only for a head trained with the count term (``poisson_nll(..., count_term=True)``):
    eq. 5 alone is blind to the overall scale of the intensity.
    """
    _, _, _, _, log_mass = _log_masses(log_intensity, mask, widths)
    return float(np.exp(np.logaddexp.reduce(log_mass)))


def estimate_count(log_intensity, mask=None, widths=None) -> int:
    """Most likely number of events, the mode of Poisson(Lambda(T)): floor(Lambda(T)), at least 1."""
    return max(1, int(np.floor(expected_count(log_intensity, mask, widths))))


def binary_top_k(probabilities, count: int, frame_seconds: float = FRAME_SECONDS, mask=None, widths=None):
    """Binary head decoding (paper 2.1): the ``count`` most probable frames' centre times, sorted.

    Accepts probabilities or logits (any monotone score); masked frames are never chosen.
    """
    scores, valid, widths, left_edges = _segments(probabilities, mask, widths, "probabilities")
    count = _event_count(count)
    check_frame_seconds(frame_seconds)
    if count > valid.sum():
        raise InputError(f"asked for {count} events but only {int(valid.sum())} unmasked frames exist")
    scores = np.where(valid, scores, -np.inf)
    chosen = np.argsort(-scores, kind="stable")[:count]
    return np.sort(left_edges[chosen] + widths[chosen] / 2) * frame_seconds


def binary_count(probabilities, threshold: float = 0.5, mask=None) -> int:
    """Number of events for a binary head: runs of consecutive frames at or above ``threshold``."""
    scores, valid, _, _ = _segments(probabilities, mask, None, "probabilities")
    above = valid & (scores >= threshold)
    return int(above[0]) + int(np.count_nonzero(above[1:] & ~above[:-1]))


# ------------------------------------------------------------------------------------- confidence
CONFIDENCE_SECONDS = 0.04  # a time is right when within 40 ms (acc@40ms): confidence is the mass there


def ordered_event_mass(log_intensity, times, radius: float = 1.0, mask=None):
    """Posterior probability that the i-th of n ordered IHP events lies within ``radius`` frames of ``times[i]``.

    Given n events the i-th has the density of eq. 8, p_i(t) ~ F(t)^(i-1) (1 - F(t))^(n-i) f(t) with
    F = Lambda(t) / Lambda(T): the i-th order statistic of n draws from the normalized intensity, so
    P(t_i <= x) = P(Binomial(n, F(x)) >= i). F is exact on the frame grid (linear inside a frame), so the
    mass of a window is two binomial tails, summed in log space. For n = 1 it is the normalized
    intensity's (softmax over frames) mass in the window. The overall scale of the intensity cancels:
    heads trained without the count term give meaningful confidences too.

    Args:
        log_intensity: (frames,) log-rate per frame (width 1 each).
        times: (n,) sorted event times in frames (a time t lies in frame floor(t)).
        radius: half-width of the window in frames.
        mask: optional (frames,) bool, False for padding.

    Returns: (n,) float64 probabilities in [0, 1].
    """
    _, valid, _, _, log_mass = _log_masses(log_intensity, mask, None)
    times = np.asarray(times, dtype=np.float64)
    n = times.size
    frames = log_mass.size
    log_prefix = np.logaddexp.accumulate(log_mass)  # mass of frames [0, k]
    log_before = np.concatenate(([-np.inf], log_prefix[:-1]))
    log_after = np.concatenate((np.logaddexp.accumulate(log_mass[::-1])[::-1][1:], [-np.inf]))  # frames (k, end)
    log_total = log_prefix[-1]

    def log_cdf_parts(x):  # log F(x), log (1 - F(x)) at positions x (frames), each from its nearer end
        x = np.clip(x, 0.0, frames)
        k = np.minimum(np.floor(x).astype(np.int64), frames - 1)
        with np.errstate(divide="ignore"):
            inside, rest = np.log(x - k), np.log(k + 1 - x)
        below = np.logaddexp(log_before[k], log_mass[k] + inside)
        above = np.logaddexp(log_after[k], log_mass[k] + rest)
        return below - log_total, above - log_total

    edges = np.stack((times - radius, times + radius), axis=1)  # (n, 2)
    log_f, log_rest = log_cdf_parts(edges)
    j = np.arange(n + 1, dtype=np.float64)
    log_factorial = np.concatenate(([0.0], np.cumsum(np.log(np.arange(1, n + 1)))))
    log_choose = log_factorial[n] - log_factorial - log_factorial[::-1]
    order = np.arange(1, n + 1)
    mass = np.empty(n)
    rows = max(1, _CHUNK_ELEMENTS // (2 * (n + 1)))
    for start in range(0, n, rows):
        chunk = slice(start, min(n, start + rows))
        with np.errstate(invalid="ignore"):  # 0 * log 0 = 0: F = 0 or 1 at the clip's ends
            terms = (log_choose + np.where(j > 0, j * log_f[chunk, :, None], 0.0)
                     + np.where(j < n, (n - j) * log_rest[chunk, :, None], 0.0))
        terms = np.where(j >= order[chunk, None, None], terms, -np.inf)  # P(Binomial >= i): events 1..i by x
        cdf = np.exp(np.logaddexp.reduce(terms, axis=2))  # (rows, 2): P(t_i <= edge)
        mass[chunk] = cdf[:, 1] - cdf[:, 0]
    return np.clip(mass, 0.0, 1.0)


def event_confidence(scores, times, objective: str, frame_seconds: float = FRAME_SECONDS,
                     radius_seconds: float = CONFIDENCE_SECONDS, mask=None) -> np.ndarray:
    """How sure the head is of each decoded time, in [0, 1], from one example's scores (frames,).

    Log-intensity heads: the posterior mass of the event within ``radius_seconds`` of its time
    (``ordered_event_mass``: for a transcript, word i's marginal among n ordered events). Binary heads:
    the sigmoid of the frame holding the time, the head's own probability of an event there.
    """
    check_frame_seconds(frame_seconds)
    frame_times = np.asarray(times, dtype=np.float64) / frame_seconds
    if objective == "binary":
        logits, _, _, _ = _segments(scores, mask, None, "logits")
        frame = np.clip(np.floor(frame_times).astype(np.int64), 0, logits.size - 1)
        return 1.0 / (1.0 + np.exp(-logits[frame]))
    return ordered_event_mass(scores, frame_times, radius_seconds / frame_seconds, mask)


def check_frame_seconds(frame_seconds) -> float:
    """``frame_seconds`` if it is a positive, finite number; an InputError otherwise."""
    if (isinstance(frame_seconds, bool) or not isinstance(frame_seconds, (int, float, np.floating, np.integer))
            or not math.isfinite(frame_seconds) or frame_seconds <= 0):
        raise InputError(f"frame_seconds must be a positive number of seconds per frame, got {frame_seconds!r}")
    return float(frame_seconds)


def check_decoding(decoding: str) -> str:
    """``decoding`` if it is one of ``DECODINGS``; an InputError naming them otherwise."""
    if decoding not in DECODINGS:
        raise InputError(f"decoding must be one of {', '.join(DECODINGS)}, got {decoding!r}")
    return decoding


def after_earlier(earlier, track, frame_seconds: float = FRAME_SECONDS):
    """The k-th occurrence's time, decoded jointly with occurrences 1..k-1: the last of the most
    probable ordered frames, each occurrence on its own question's track (``earlier``: k-1 tracks,
    ``track``: the k-th's, all (frames,)), so it cannot land on or before an earlier one."""
    tracks = np.stack([*earlier, track])
    return subframe_times(track, ordered_map(tracks, len(tracks), frame_seconds)[-1:], frame_seconds)


# What a k-th occurrence question's track marks: the asked occurrence alone, or every occurrence (kth_of_every)
OCCURRENCES = ("asked", "every")


def heard_occurrences(log_intensity) -> int:
    """How many occurrences a track of every occurrence holds: Lambda(T) rounded (a head trained with the
    count term learns Lambda(T) as the count)."""
    return int(np.rint(expected_count(log_intensity)))


def every_occurrence(log_intensity, at_least: int = 1, frame_seconds: float = FRAME_SECONDS):
    """The times of every occurrence on a track that marks them all (a head trained with
    ``occurrences="every"`` and the count term): the joint MAP of n ordered events (``ordered_map``), n the
    heard count (``heard_occurrences``, at most one per frame). Counting happens here, on the whole track,
    not inside the model. When fewer than ``at_least`` are heard, the missing ones are placed, jointly, after
    the last heard (where the track leaves room; else all at_least jointly): a k-th past the last
    occurrence is a guess, but one that keeps the order. Returns (max(n, at_least),) sorted seconds."""
    at_least = _event_count(at_least)
    frame_seconds = check_frame_seconds(frame_seconds)
    track = np.asarray(log_intensity, dtype=np.float64)
    heard = min(heard_occurrences(track), track.shape[-1])  # an untrained head's Lambda(T) can exceed the frames
    if heard >= at_least:
        times = ordered_map(track, heard, frame_seconds)
    else:
        found = ordered_map(track, heard, frame_seconds) if heard else np.zeros(0)
        after = int(found[-1] / frame_seconds) + 2 if heard else 0  # ordered_map keeps events 2 frames apart
        later = np.arange(track.shape[-1]) >= after
        if np.count_nonzero(later & np.isfinite(track)) < at_least - heard:
            times = ordered_map(track, at_least, frame_seconds)
        else:
            times = np.concatenate((found, ordered_map(track, at_least - heard, frame_seconds, mask=later)))
    return subframe_times(track, times, frame_seconds)


def kth_of_every(log_intensity, occurrence: int, frame_seconds: float = FRAME_SECONDS):
    """The ``occurrence``-th of ``every_occurrence``: (1,) seconds."""
    return every_occurrence(log_intensity, occurrence, frame_seconds)[occurrence - 1:occurrence]


SUBFRAME_SHARE = 0.5  # of the parabola's vertex offset: chosen on tuning clips in training voices (README, Decoding)


def subframe_times(log_intensity, times, frame_seconds: float = FRAME_SECONDS,
                   share: float = SUBFRAME_SHARE) -> np.ndarray:
    """``times`` (seconds, each in the frame it was decoded to) moved inside their frames, towards the
    stronger neighbour: ``share`` x the vertex of the parabola through the frame's score and its two
    neighbours', the vertex clipped to half a frame, so a time never leaves its frame (it stays in frame
    floor(t / frame_seconds)). The head scores whole 40 ms frames; how its scores fall off either side
    of the peak says where in the frame the event more likely is. ``log_intensity`` (frames,) for every
    time, or (len(times), frames) a track per time. A time in a track's first or last frame, next to a
    frame that is not finite or scores the same (a flat stretch, as a merged segment spread over its
    frames), or on a frame with no downward curvature stays at its frame's centre. Returns (len(times),)
    seconds."""
    frame_seconds = check_frame_seconds(frame_seconds)
    times = np.asarray(times, dtype=np.float64)
    tracks = np.asarray(log_intensity, dtype=np.float64)
    if tracks.ndim not in (1, 2) or (tracks.ndim == 2 and tracks.shape[0] != times.size):
        raise InputError(f"log_intensity must be (frames,) or one row per time ({times.size}, frames), got shape "
                         f"{tracks.shape}")
    tracks = np.broadcast_to(tracks, (times.size, tracks.shape[-1]))
    frames = np.floor(times / frame_seconds).astype(np.int64)
    inside = (frames > 0) & (frames < tracks.shape[1] - 1)
    row, frame = np.flatnonzero(inside), frames[inside]
    before, at, after = tracks[row, frame - 1], tracks[row, frame], tracks[row, frame + 1]
    with np.errstate(invalid="ignore"):
        curvature = before - 2 * at + after
        peaked = np.isfinite(curvature) & (curvature < 0) & (before != at) & (after != at)  # a tie: flat, as merged
        vertex = np.clip(0.5 * (before - after) / np.where(peaked, curvature, -1.0), -0.5, 0.5)
    placed = (frames + 0.5) * frame_seconds
    placed[row] += np.where(peaked, share * vertex, 0.0) * frame_seconds
    return np.where(inside, placed, times)


def decode_events(scores, count: int, objective: str, decoding: str = "ordered",
                  frame_seconds: float = FRAME_SECONDS, mask=None, widths=None):
    """``count`` sorted times in seconds from one example's head scores (frames,), or with ``widths``
    from the scores of merged segments (frames each).

    ``objective`` says what the scores are: log-intensities ("poisson", "interpolated") or logits
    ("binary"). ``decoding`` is one of ``DECODINGS``: "ordered" is ``ordered_map`` on the scores
    (for logits too: log-odds are a monotone per-frame score); "posterior" is the paper's
    ``posterior_mode`` for log-intensities and ``binary_top_k`` for logits. For one event both
    choose the highest-scoring frame: "posterior" answers its centre, "ordered" places the time inside
    it (``subframe_times``; not with ``widths``, where a segment's score is flat).
    """
    check_decoding(decoding)
    if objective != "binary" and objective not in LOG_INTENSITY_HEADS:
        raise InputError(f"objective must be binary or one of {', '.join(LOG_INTENSITY_HEADS)}: a head that scores "
                         f"frames, got {objective!r}")
    if decoding == "ordered":
        times = ordered_map(scores, count, frame_seconds, mask=mask, widths=widths)
        if widths is not None:
            return times
        track = np.asarray(scores, dtype=np.float64)
        return subframe_times(track if mask is None else np.where(mask, track, -np.inf), times, frame_seconds)
    if objective == "binary":
        return binary_top_k(scores, count, frame_seconds, mask=mask, widths=widths)
    return posterior_mode(scores, count, frame_seconds, mask=mask, widths=widths)


# Longest word or event end looked for after its start, when nothing else bounds it.
MAX_INTERVAL_SECONDS = 2.0


def _interval_inputs(track, starts, frame_seconds: float, name: str):
    """(frame_seconds, track, starts) checked for the interval decoders: a non-empty (frames,) track."""
    track = np.asarray(track, dtype=np.float64)
    if track.ndim != 1 or track.size == 0:
        raise InputError(f"{name} must be a non-empty 1-D array (frames,), got shape {track.shape}")
    return check_frame_seconds(frame_seconds), track, np.asarray(starts, dtype=np.float64)


def interval_ends(inside_logits, starts, frame_seconds: float = FRAME_SECONDS,
                  max_seconds: float = MAX_INTERVAL_SECONDS, bounded_by_next: bool = False) -> np.ndarray:
    """Where each interval that begins at ``starts`` ends, from a head's "inside" channel.

    The inside channel is a per-frame logit that the frame lies inside what the question asks
    about. From the start's frame on, the interval runs while the logit stays >= 0 (probability
    >= 1/2), and ends at the left edge of the first frame below it, at least one frame after the
    start and at most ``max_seconds`` later. With ``bounded_by_next`` (a transcript's words) an
    interval also ends by the next start. Returns (len(starts),) float64 seconds.
    """
    frame_seconds, logits, starts = _interval_inputs(inside_logits, starts, frame_seconds, "inside_logits")
    frames = logits.size
    longest = max(1, int(round(max_seconds / frame_seconds)))
    ends = np.empty(starts.shape)
    for i, start in enumerate(starts):
        first = min(int(start / frame_seconds), frames - 1)
        limit = min(frames, first + longest)
        if bounded_by_next and i + 1 < len(starts):
            limit = min(limit, max(first + 1, int(round(starts[i + 1] / frame_seconds))))
        outside = np.flatnonzero(logits[first + 1:limit] < 0.0)
        end_frame = first + 1 + int(outside[0]) if outside.size else limit
        ends[i] = end_frame * frame_seconds
    if bounded_by_next and len(starts) > 1:
        ends[:-1] = np.minimum(ends[:-1], np.maximum(starts[1:], starts[:-1] + frame_seconds))
    return ends


def end_times(end_log_intensity, starts, frame_seconds: float = FRAME_SECONDS,
              max_seconds: float | None = MAX_INTERVAL_SECONDS, bounded_by_next: bool = False) -> np.ndarray:
    """Where each interval that begins at ``starts`` ends, from a head's "end" channel.

    The end channel is a log-intensity trained (eq. 5) on where the asked thing ends, so each end is in
    its most intense frame after the start's frame, placed inside it as starts are (``subframe_times``):
    at most ``max_seconds`` later (None: up to the clip's end) and, with ``bounded_by_next`` (a
    transcript's words), no later than the next start's frame. Returns (len(starts),) float64 seconds,
    each >= its start.
    """
    frame_seconds, log_intensity, starts = _interval_inputs(end_log_intensity, starts, frame_seconds,
                                                           "end_log_intensity")
    frames = log_intensity.size
    longest = frames if max_seconds is None else max(1, int(round(max_seconds / frame_seconds)))
    ends = np.empty(starts.shape)
    for i, start in enumerate(starts):
        first = min(max(int(start / frame_seconds), 0), frames - 1)
        last = min(frames - 1, first + longest)  # inclusive
        if bounded_by_next and i + 1 < len(starts):
            last = min(last, max(first + 1, int(starts[i + 1] / frame_seconds)))
        if last <= first:  # the start is in the clip's last frame
            ends[i] = max(start, frames * frame_seconds)
            continue
        end_frame = first + 1 + int(np.argmax(log_intensity[first + 1:last + 1]))
        ends[i] = max(start, subframe_times(log_intensity, [(end_frame + 0.5) * frame_seconds], frame_seconds)[0])
    if bounded_by_next and len(starts) > 1:  # a word ends by the next one's start, whatever the decoding
        ends[:-1] = np.minimum(ends[:-1], np.maximum(starts[1:], starts[:-1]))
    return ends


# Which channel gives which task its ends: the inside channel is trained on words (aids.py labels words
# only); the end channel on whatever the manifest gives ends for (words, transcripts, events).
INSIDE_ENDED_TASKS = ("word", "transcript")
END_ENDED_TASKS = ("word", "transcript", "event")


def ended_tasks(channels) -> tuple[str, ...]:
    """The tasks whose answers carry ends with a head of these channels."""
    if "end" in channels:
        return END_ENDED_TASKS
    return INSIDE_ENDED_TASKS if "inside" in channels else ()


def interval_ends_for(task: str, scores, channels, starts, frame_seconds: float = FRAME_SECONDS):
    """Ends for one answer from its per-frame ``scores`` (frames, channels), or None where the head
    cannot give them: the end channel where there is one, else the inside channel."""
    if task not in ended_tasks(channels):
        return None
    scores = np.asarray(scores)
    channels = list(channels)
    if "end" in channels:
        return end_times(scores[:, channels.index("end")], starts, frame_seconds,
                         max_seconds=None if task == "event" else MAX_INTERVAL_SECONDS,
                         bounded_by_next=task == "transcript")
    return interval_ends(scores[:, channels.index("inside")], starts, frame_seconds,
                         bounded_by_next=task == "transcript")


def check_transcript_by(transcript_by: str) -> str:
    """``transcript_by`` if it is one of ``TRANSCRIPT_BY``; an InputError naming them otherwise."""
    if transcript_by not in TRANSCRIPT_BY:
        raise InputError(f"transcript_by must be one of {', '.join(TRANSCRIPT_BY)}, got {transcript_by!r}")
    return transcript_by


NEW_WORD_QUESTION_SHARE = 0.5  # a new word's row: the transcript question's track at this weight, its own at the rest


def transcript_rows(known, word_rows, question_rows) -> np.ndarray:
    """The rows ``align_word_tracks`` aligns, (words, frames, channels), from ``word_rows`` (one (frames,
    channels) array per transcript word: its own word question's scores, in order). A word the model was
    trained to find (``known[i]``) keeps its own row. Any other word's row is the mean of its own and the
    transcript question's scores (``question_rows``, (frames, channels); may be None when every word is
    known; ``NEW_WORD_QUESTION_SHARE``): a model that learned to read a word from its spelling finds a
    new word alone (73.5% of them within 40 ms at stage 23), less surely than a known one, and the
    transcript question's track marks where some word starts. On tuning clips in voices the model
    trained on (every word new / 30% new) the transcript question's track alone aligned 81.5% / 96.9%
    within 40 ms, a new word's own row alone 92.0% / 97.5%, their mean 92.4% / 98.6% (shares of 0.25-0.5
    for the transcript question all 92.4-92.9% / 98.2-98.6%)."""
    word_rows = [np.asarray(row, dtype=np.float64) for row in word_rows]
    if len(word_rows) != len(known):
        raise InputError(f"{len(word_rows)} word rows for a transcript of {len(known)} words: give one row per word")
    if not all(known) and question_rows is None:
        raise InputError("a transcript with words the model was not trained on needs the transcript question's scores")
    share = NEW_WORD_QUESTION_SHARE
    return np.stack([row if heard else (1 - share) * row + share * np.asarray(question_rows, dtype=np.float64)
                     for row, heard in zip(word_rows, known)])


def aligned_confidence(log_intensity, times, frame_seconds: float = FRAME_SECONDS,
                       radius_seconds: float = CONFIDENCE_SECONDS, min_separation: int = 2, words=None,
                       pace: float = pacing.WEIGHT) -> np.ndarray:
    """How sure the alignment is of each word's time, in [0, 1]: word i's marginal posterior mass within
    ``radius_seconds`` of the centre of the frame ``times[i]`` lies in (a time placed inside its frame by
    ``subframe_times`` is read at its frame's centre), among all ordered placements f_1 < ... < f_n, each step at least
    ``min_separation`` frames (lowered as ``ordered_map`` lowers it where n words do not fit), weighted
    by prod_i lambda_i(f_i): the density ``ordered_map`` maximizes, one track per word, (words, frames).
    Forward and backward sums over the chain in log space: O(words x frames). With the transcript's
    ``words`` and ``pace`` > 0, the density is the paced one ``paced_map`` maximizes, summed over the
    speaking rates too (``pacing.paced_marginals``)."""
    tracks = np.asarray(log_intensity, dtype=np.float64)
    if tracks.ndim != 2 or tracks.shape[0] == 0:
        raise InputError(f"log_intensity must be (words, frames), got shape {tracks.shape}")
    count, frames = tracks.shape
    check_frame_seconds(frame_seconds)
    separation = _widest_separation(np.arange(frames), count, int(min_separation)) if count <= frames else 1
    centres = (np.arange(frames) + 0.5) * frame_seconds
    times = (np.floor(np.asarray(times, dtype=np.float64) / frame_seconds) + 0.5) * frame_seconds  # the chosen frames
    if _paced(words, count, pace):
        marginals = pacing.paced_marginals(tracks, pacing.word_sizes(words), frame_seconds, separation, pace)
        near = np.abs(centres[None, :] - np.asarray(times, dtype=np.float64)[:, None]) <= radius_seconds + 1e-9
        return np.clip(np.sum(np.where(near, marginals, 0.0), axis=1), 0.0, 1.0)

    unreachable = np.full(separation, -np.inf)
    forward = [tracks[0]]
    for row in tracks[1:]:  # forward[i][f]: word i at f, words before it placed in order (sums over f' <= f - sep)
        forward.append(row + np.concatenate([unreachable, np.logaddexp.accumulate(forward[-1])])[:frames])
    backward = [np.zeros(frames)]
    for row in tracks[:0:-1]:  # backward[i][f]: the words after i placed after f (sums over f' >= f + sep)
        after = np.logaddexp.accumulate((row + backward[-1])[::-1])[::-1]
        backward.append(np.concatenate([after, unreachable])[separation:separation + frames])
    backward = backward[::-1]
    total = np.logaddexp.reduce(forward[-1])
    confidence = np.empty(count)
    for i, time in enumerate(np.asarray(times, dtype=np.float64)):
        near = np.abs(centres - time) <= radius_seconds + 1e-9
        confidence[i] = np.exp(np.logaddexp.reduce((forward[i] + backward[i])[near]) - total) if near.any() else 0.0
    return np.clip(confidence, 0.0, 1.0)


def check_pace(pace) -> float:
    """``pace`` (the speaking-rate prior's weight) as a float if it is a finite number >= 0; an InputError otherwise."""
    if isinstance(pace, bool) or not isinstance(pace, (int, float, np.floating)) or not math.isfinite(pace) or pace < 0:
        raise InputError(f"pace must be a number >= 0 (0: no speaking-rate prior), got {pace!r}")
    return float(pace)


def _paced(words, count: int, pace) -> bool:
    """Whether to align ``count`` words with the speaking-rate prior: given the words and a weight > 0."""
    if words is None:
        return False
    if len(words) != count:
        raise InputError(f"{count} word rows for a transcript of {len(words)} words: give one row per word")
    return check_pace(pace) > 0 and count > 1


def paced_map(log_intensity, words, frame_seconds: float = FRAME_SECONDS, pace: float = pacing.WEIGHT,
              min_separation: int = 2) -> np.ndarray:
    """A transcript's word starts, (words,) seconds: ``ordered_map`` with a row per word, plus a prior
    that consecutive starts are as far apart as the first word's length predicts at one speaking rate
    for the clip (``runtime.pacing``; ``pace`` its weight, 0 for none). ``log_intensity`` (words, frames)
    row i word i's track; frames that are -inf in some row are never chosen."""
    tracks = np.asarray(log_intensity, dtype=np.float64)
    if tracks.ndim != 2 or tracks.shape[0] == 0 or tracks.shape[1] == 0:
        raise InputError(f"log_intensity must be (words, frames), got shape {tracks.shape}")
    count = tracks.shape[0]
    check_frame_seconds(frame_seconds)
    if not _paced(words, count, pace):
        return ordered_map(tracks, count, frame_seconds, min_separation=min_separation)
    valid = np.all(tracks > -np.inf, axis=0)
    usable = np.flatnonzero(valid)
    if count > usable.size:
        raise InputError(f"a transcript of {count} words needs as many usable frames, and the audio has {usable.size}: "
                         "give longer audio or a shorter transcript")
    separation = _widest_separation(usable, count, int(min_separation))
    chosen = pacing.paced_frames(np.where(valid, tracks, -np.inf), pacing.word_sizes(words), frame_seconds,
                                 separation, float(pace))
    return (chosen + 0.5) * frame_seconds


def align_word_tracks(rows, objective: str, decoding: str = "ordered", channels=("onset",),
                      frame_seconds: float = FRAME_SECONDS, words=None, pace: float = pacing.WEIGHT):
    """A transcript's word starts (and ends) from each word's own head scores: forced alignment.

    ``rows`` (words, frames, channels): row i the scores of the word question for transcript word i
    ("the k-th occurrence of 'w'", k the times the transcript has said w so far), all of one clip.
    "ordered" decoding puts word i on row i's track with f_1 < ... < f_n jointly (``ordered_map``
    with a row per event): a word question alone confuses which word and which occurrence, the order
    of the transcript settles it; given the transcript's ``words``, their lengths pace it too (``paced_map``,
    ``pace`` its weight, 0 for none). "posterior" decodes each word on its own track. Ends, where the
    channels give them, come from each word's own row (``interval_ends_for``), cut at the next word's
    start. Returns (times (words,), ends (words,) or None)."""
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 3 or rows.shape[0] == 0 or rows.shape[1] == 0:
        raise InputError(f"rows must be (words, frames, channels) with at least one word and frame, got shape {rows.shape}")
    onsets = rows[:, :, 0]
    if check_decoding(decoding) == "ordered":
        times = subframe_times(onsets, paced_map(onsets, words, frame_seconds, pace), frame_seconds)
    else:
        times = np.array([decode_events(row, 1, objective, decoding, frame_seconds)[0] for row in onsets])
    if "word" not in ended_tasks(channels):
        return times, None
    ends = np.array([interval_ends_for("word", row, channels, [start], frame_seconds)[0]
                     for row, start in zip(rows, times)])
    following = np.append(times[1:], np.inf)
    ends = np.where(following > times, np.minimum(ends, following), ends)
    return times, ends
