"""Frame-level losses (paper section 2): Poisson-process NLL (eq. 5) and class-weighted BCE (eq. 1).

Shapes: B examples, K frames (segments), N event slots. Events are given in seconds with a mask
over the N slots, so examples with different numbers of events share one padded batch. Frame
``k`` covers [edge_k, edge_k + width_k) frames (paper eq. 3); ``widths`` default to 1.
"""

from __future__ import annotations

import torch

from framestamp.runtime.frames import FRAME_SECONDS

Tensor = torch.Tensor


def _valid_frames(log_intensity: Tensor, frame_mask: Tensor | None) -> Tensor:
    if frame_mask is None:
        return torch.ones_like(log_intensity, dtype=torch.bool)
    if frame_mask.shape != log_intensity.shape:
        raise ValueError(f"frame_mask has shape {tuple(frame_mask.shape)}, expected {tuple(log_intensity.shape)}")
    return frame_mask.bool()


def event_segments(
    event_times: Tensor,
    event_mask: Tensor,
    frame_mask: Tensor,
    widths: Tensor,
    frame_seconds: float = FRAME_SECONDS,
) -> Tensor:
    """Index of the segment holding each event, (B, N) long; unused slots get 0.

    Segments are [edge, edge + width) as in eq. 3; an event exactly at the end of the audio
    belongs to the last unmasked segment. Raises ValueError for an event outside the audio or
    inside padding: a labelling bug that no loss value can fix.
    """
    # Snap to a millionth of a frame: 0.12 s / 0.04 s is 2.9999999999999996 in floating point.
    # (In float64 whatever the model's dtype: float32 cannot hold 1e6 x 100k frames.)
    frames = torch.round(event_times.to(torch.float64) / frame_seconds * 1e6) / 1e6
    right_edges = torch.cumsum(widths.to(torch.float64), dim=-1)
    index = torch.searchsorted(right_edges.contiguous(), frames.contiguous(), right=True)
    num_segments = widths.shape[-1]
    index = index.clamp(max=num_segments - 1)
    # An event on the right edge of the last unmasked segment (the end of the audio) stays in it.
    previous = (index - 1).clamp(min=0)
    on_edge = frames == torch.gather(right_edges, -1, previous)
    use_previous = on_edge & (index > 0) & ~torch.gather(frame_mask, -1, index) & torch.gather(frame_mask, -1, previous)
    index = torch.where(use_previous, previous, index)

    inside = (frames >= 0) & (frames <= right_edges[..., -1:]) & torch.gather(frame_mask, -1, index)
    bad = event_mask & ~inside
    if bad.any():
        example, slot = (int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"event {slot} of example {example} at {float(event_times[example, slot]):.3f} s lies outside the "
            "example's unmasked frames: check that labels fit the audio and the frame mask"
        )
    return torch.where(event_mask, index, torch.zeros_like(index))


def poisson_nll(
    log_intensity: Tensor,
    event_times: Tensor,
    event_mask: Tensor,
    frame_mask: Tensor | None = None,
    widths: Tensor | None = None,
    frame_seconds: float = FRAME_SECONDS,
    count_term: bool = False,
    reduction: str = "mean",
) -> Tensor:
    """Negative log-likelihood of the event times under the IHP.

    Eq. 5:  L = -sum_j log lambda(t_j) + n log Lambda(T),  Lambda(T) = sum_k lambda_k width_k,
    computed with logsumexp over unmasked frames, so it is stable for any log-intensity. Eq. 5 is
    the likelihood of the times *given* their number n and is blind to the intensity's overall
    scale; ``count_term=True`` adds the Poisson likelihood of n itself (Lambda - n log Lambda, up to
    log n!), i.e. the full IHP NLL  -sum_j log lambda(t_j) + Lambda(T), so that Lambda(T) learns
    the expected count (``runtime.decoding.expected_count``).

    Args:
        log_intensity: (B, K) log-rate per frame, any float dtype.
        event_times: (B, N) seconds; slots where ``event_mask`` is False are ignored.
        event_mask: (B, N) bool.
        frame_mask: (B, K) bool, False at padding (padding never changes the loss).
        widths: (B, K) or (K,) segment widths in frames.
        reduction: "mean" or "sum" over examples, or "none" for (B,).
    """
    valid = _valid_frames(log_intensity, frame_mask)
    event_mask = event_mask.bool()
    if widths is None:
        widths = torch.ones_like(log_intensity)
    widths = widths.to(log_intensity.dtype).expand_as(log_intensity)
    segment = event_segments(event_times, event_mask, valid, widths, frame_seconds)

    log_mass = torch.where(valid, log_intensity + torch.log(widths), torch.full_like(log_intensity, -torch.inf))
    log_total = torch.logsumexp(log_mass, dim=-1)  # log Lambda(T), (B,)
    log_rate_at_events = torch.gather(log_intensity, -1, segment)
    zero = torch.zeros_like(log_rate_at_events)
    event_term = torch.where(event_mask, log_rate_at_events, zero).sum(dim=-1)
    count = event_mask.sum(dim=-1).to(log_intensity.dtype)
    if count_term:
        loss = -event_term + torch.exp(log_total)
    else:
        # An example with no events contributes 0 (and no 0 * log Lambda NaN when Lambda is 0).
        loss = -event_term + torch.where(count > 0, count * log_total, torch.zeros_like(log_total))
    return _reduce(loss, reduction)


def frame_targets(
    event_times: Tensor,
    event_mask: Tensor,
    frame_mask: Tensor,
    widths: Tensor | None = None,
    frame_seconds: float = FRAME_SECONDS,
) -> Tensor:
    """Binary per-frame labels (B, K): 1 where a frame holds at least one event (paper 2.1)."""
    valid = frame_mask.bool()
    if widths is None:
        widths = torch.ones(valid.shape, dtype=torch.float64, device=valid.device)
    widths = widths.to(torch.float64).expand(valid.shape)
    segment = event_segments(event_times.to(torch.float64), event_mask.bool(), valid, widths, frame_seconds)
    targets = torch.zeros(valid.shape, dtype=torch.float32, device=valid.device)
    return targets.scatter_(-1, segment, event_mask.to(torch.float32)).clamp_(max=1.0)


def positive_weight(targets: Tensor, frame_mask: Tensor | None = None) -> Tensor:
    """Class weight w = negative frames / positive frames over the unmasked frames (paper 2.1)."""
    valid = _valid_frames(targets, frame_mask)
    positives = (targets * valid).sum()
    negatives = valid.sum() - positives
    return negatives / positives.clamp(min=1.0)


def weighted_bce(
    logits: Tensor,
    targets: Tensor,
    frame_mask: Tensor | None = None,
    pos_weight: float | Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Class-weighted binary cross-entropy (eq. 1) on logits, averaged over each example's
    unmasked frames. ``pos_weight`` defaults to the batch's negative/positive frame ratio."""
    valid = _valid_frames(logits, frame_mask)
    targets = targets.to(logits.dtype)
    if pos_weight is None:
        pos_weight = positive_weight(targets, valid)
    pos_weight = torch.as_tensor(pos_weight, dtype=logits.dtype, device=logits.device)
    # -[w y log p + (1 - y) log(1 - p)] with log-sigmoids: stable for any logit.
    per_frame = -(pos_weight * targets * torch.nn.functional.logsigmoid(logits)
                  + (1 - targets) * torch.nn.functional.logsigmoid(-logits))
    per_frame = torch.where(valid, per_frame, torch.zeros_like(per_frame))
    loss = per_frame.sum(dim=-1) / valid.sum(dim=-1).clamp(min=1)
    return _reduce(loss, reduction)


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
