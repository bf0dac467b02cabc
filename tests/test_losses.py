"""Losses against direct float64 evaluations of the paper's equations."""

import math

import numpy as np
import pytest
import torch

from framestamp.training.losses import frame_targets, poisson_nll, positive_weight, weighted_bce

FRAME = 0.04


def random_batch(seed=0, batch=4, frames=30, slots=5, dtype=torch.float64):
    rng = np.random.default_rng(seed)
    log_intensity = torch.tensor(rng.normal(0, 3, (batch, frames)), dtype=dtype)
    lengths = rng.integers(frames // 2, frames + 1, batch)
    frame_mask = torch.tensor(np.arange(frames)[None, :] < lengths[:, None])
    counts = rng.integers(0, slots + 1, batch)
    event_mask = torch.tensor(np.arange(slots)[None, :] < counts[:, None])
    times = np.sort(rng.uniform(0, lengths[:, None] * FRAME, (batch, slots)), axis=1)
    times = np.where(event_mask.numpy(), times, 123.0)  # garbage in unused slots
    return log_intensity, torch.tensor(times), event_mask, frame_mask


def eq5_direct(log_intensity, times, event_mask, frame_mask):
    """Eq. 5 per example with Python floats: -sum log lambda(t_j) + n log sum_k lambda_k."""
    losses = []
    for values, example_times, used, valid in zip(log_intensity.tolist(), times.tolist(),
                                                  event_mask.tolist(), frame_mask.tolist()):
        total = math.fsum(math.exp(v) for v, keep in zip(values, valid) if keep)
        events = [t for t, keep in zip(example_times, used) if keep]
        loss = -math.fsum(values[int(t // FRAME)] for t in events) + len(events) * math.log(total)
        losses.append(loss)
    return losses


def test_poisson_nll_equals_direct_eq5():
    log_intensity, times, event_mask, frame_mask = random_batch()
    per_example = poisson_nll(log_intensity, times, event_mask, frame_mask, reduction="none")
    np.testing.assert_allclose(per_example.numpy(), eq5_direct(log_intensity, times, event_mask, frame_mask),
                               rtol=1e-12, atol=1e-12)
    assert poisson_nll(log_intensity, times, event_mask, frame_mask) == pytest.approx(per_example.mean().item())


def test_count_term_gives_the_full_ihp_nll():
    log_intensity, times, event_mask, frame_mask = random_batch(seed=1)
    full = poisson_nll(log_intensity, times, event_mask, frame_mask, count_term=True, reduction="none")
    rates = torch.where(frame_mask, log_intensity.exp(), torch.zeros_like(log_intensity)).sum(-1)
    conditional = poisson_nll(log_intensity, times, event_mask, frame_mask, reduction="none")
    counts = event_mask.sum(-1).double()
    # full = conditional + (Lambda - n log Lambda)
    np.testing.assert_allclose(full.numpy(), (conditional + rates - counts * rates.log()).numpy(), rtol=1e-12)


def test_poisson_nll_gradient_matches_finite_differences():
    log_intensity, times, event_mask, frame_mask = random_batch(seed=2, batch=3, frames=12)
    widths = torch.tensor(np.random.default_rng(2).uniform(0.5, 2.0, (3, 12)))
    for count_term in (False, True):
        assert torch.autograd.gradcheck(
            lambda x: poisson_nll(x, times, event_mask, frame_mask, widths=widths, count_term=count_term),
            (log_intensity.clone().requires_grad_(),),
        )


def test_padding_never_changes_the_loss_or_gets_gradient():
    log_intensity, times, event_mask, frame_mask = random_batch(seed=3)
    base = poisson_nll(log_intensity, times, event_mask, frame_mask, reduction="none")
    extra = 17
    padded = torch.cat((log_intensity, torch.full((4, extra), 60.0, dtype=torch.float64)), dim=1)
    padded_mask = torch.cat((frame_mask, torch.zeros(4, extra, dtype=torch.bool)), dim=1)
    # Scramble the padded positions inside the original length too.
    padded = torch.where(padded_mask, padded, torch.randn_like(padded) * 50).requires_grad_()
    more_slots = torch.cat((times, torch.full((4, 3), -7.0, dtype=torch.float64)), dim=1)
    more_mask = torch.cat((event_mask, torch.zeros(4, 3, dtype=torch.bool)), dim=1)
    loss = poisson_nll(padded, more_slots, more_mask, padded_mask, reduction="none")
    np.testing.assert_allclose(loss.detach().numpy(), base.numpy(), rtol=0, atol=1e-12)
    loss.sum().backward()
    assert (padded.grad[~padded_mask] == 0).all()


def test_stable_at_extreme_log_intensities_in_float32():
    log_intensity, times, event_mask, frame_mask = random_batch(seed=4, dtype=torch.float32)
    extreme = torch.where(torch.arange(30) % 2 == 0, torch.tensor(80.0), torch.tensor(-80.0)).expand(4, 30).clone()
    loss = poisson_nll(extreme.requires_grad_(), times, event_mask, frame_mask, reduction="none")
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    assert torch.isfinite(extreme.grad).all()
    expected = eq5_direct(extreme.double(), times, event_mask, frame_mask)
    np.testing.assert_allclose(loss.detach().double().numpy(), expected, rtol=1e-5, atol=1e-3)


def test_merged_segment_equals_its_repeated_frames():
    rates = torch.tensor([[0.3, -1.0, 2.0, 0.1]], dtype=torch.float64)
    widths = torch.tensor([[1.0, 3.0, 2.0, 1.0]])
    expanded = torch.repeat_interleave(rates, torch.tensor([1, 3, 2, 1]), dim=1)
    times = torch.tensor([[0.05, 0.17, 0.21]], dtype=torch.float64)  # frames 1.25, 4.25, 5.25
    used = torch.ones(1, 3, dtype=torch.bool)
    merged = poisson_nll(rates, times, used, widths=widths)
    plain = poisson_nll(expanded, times, used)
    assert merged.item() == pytest.approx(plain.item(), abs=1e-12)


def test_event_at_the_end_of_the_audio_belongs_to_the_last_frame():
    log_intensity = torch.zeros(1, 10, dtype=torch.float64)
    frame_mask = torch.arange(10)[None] < 6
    end = torch.tensor([[6 * FRAME]], dtype=torch.float64)
    loss = poisson_nll(log_intensity, end, torch.ones(1, 1, dtype=torch.bool), frame_mask)
    assert loss.item() == pytest.approx(math.log(6))  # -log 1 + 1 * log(6 frames of rate 1)


def test_event_in_padding_is_an_error_naming_the_example():
    log_intensity = torch.zeros(2, 10)
    frame_mask = torch.arange(10)[None].expand(2, 10) < 5
    times = torch.tensor([[0.1], [0.3]])
    with pytest.raises(ValueError, match="example 1 at 0.300 s"):
        poisson_nll(log_intensity, times, torch.ones(2, 1, dtype=torch.bool), frame_mask)


def test_frame_targets_mark_the_frame_holding_each_event():
    times = torch.tensor([[0.0, 0.039, 0.04, 0.2], [0.12, 0.0, 0.0, 0.0]])
    used = torch.tensor([[True, True, True, True], [True, False, False, False]])
    frame_mask = torch.arange(8)[None].expand(2, 8) < torch.tensor([[5], [8]])
    targets = frame_targets(times, used, frame_mask)
    assert targets[0].tolist() == [1, 1, 0, 0, 1, 0, 0, 0]  # 0.2 s = end of 5 frames -> frame 4
    assert targets[1].tolist() == [0, 0, 0, 1, 0, 0, 0, 0]


def test_weighted_bce_equals_eq1_with_the_negative_positive_ratio():
    rng = np.random.default_rng(5)
    logits = torch.tensor(rng.normal(0, 2, (2, 20)))
    targets = torch.zeros(2, 20, dtype=torch.float64)
    targets[0, [3, 9]] = 1
    targets[1, 14] = 1
    frame_mask = torch.arange(20)[None].expand(2, 20) < torch.tensor([[20], [16]])
    weight = positive_weight(targets, frame_mask)
    assert weight.item() == pytest.approx((36 - 3) / 3)
    loss = weighted_bce(logits, targets, frame_mask, reduction="none")
    for b, length in enumerate([20, 16]):
        p = torch.sigmoid(logits[b, :length]).numpy()
        y = targets[b, :length].numpy()
        direct = -(weight.item() * y * np.log(p) + (1 - y) * np.log(1 - p)).mean()
        assert loss[b].item() == pytest.approx(direct, rel=1e-12)
