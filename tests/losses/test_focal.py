"""Focal loss against a naive float64 loop of FL = -(1 - p_y)^gamma log p_y (Lin et al. 2017, Eq. 5)."""

import pytest
import torch

from helpers.loss_reference import assert_same_gradient
from longtail.losses import CrossEntropyLoss, FocalLoss, create_loss, focal_loss

COUNTS = [300.0, 90.0, 20.0, 4.0]


def naive_focal(logits, target, gamma):
    losses = []
    for i in range(logits.shape[0]):
        y = int(target[i])
        p_y = torch.exp(logits[i, y]) / sum(torch.exp(logits[i, j]) for j in range(logits.shape[1]))
        losses.append(-((1 - p_y) ** gamma) * torch.log(p_y))
    return torch.stack(losses)


def batch(seed=0, b=12, c=4, scale=2.5):
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(b, c, generator=g, dtype=torch.float64), torch.randint(c, (b,), generator=g)


@pytest.mark.parametrize("gamma", [0.0, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_value_and_gradient_match_naive_loop(gamma, reduction):
    logits, target = batch(seed=int(gamma * 10))
    ours_in, ref_in = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    ours = FocalLoss(COUNTS, gamma=gamma, reduction=reduction)(ours_in, target)
    per_sample = naive_focal(ref_in, target, gamma)
    ref = {"mean": per_sample.mean(), "sum": per_sample.sum(), "none": per_sample}[reduction]
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    assert_same_gradient(ours, ref, ours_in, ref_in)


def test_gamma_zero_is_cross_entropy_and_functional_matches_module():
    logits, target = batch(seed=3)
    torch.testing.assert_close(FocalLoss(COUNTS, gamma=0)(logits, target), CrossEntropyLoss(COUNTS)(logits, target))
    torch.testing.assert_close(focal_loss(logits, target, gamma=1.5),
                               create_loss("focal", COUNTS, gamma=1.5)(logits, target), rtol=0, atol=0)


def test_confident_samples_give_finite_zero_gradient_for_small_gamma():
    """p_y == 1 in float32 makes (1 - p)^gamma's derivative infinite for gamma < 1; the loss must
    still give a finite gradient (the true one is ~0)."""
    logits = torch.tensor([[60.0, 0.0, 0.0, 0.0]], requires_grad=True)
    loss = FocalLoss(COUNTS, gamma=0.5)(logits, torch.tensor([0]))
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(logits.grad).all()
    assert logits.grad.abs().max() < 1e-6


def test_bad_gamma_and_shapes_are_clear_errors():
    with pytest.raises(ValueError, match="gamma must be >= 0"):
        FocalLoss(COUNTS, gamma=-1)
    with pytest.raises(ValueError, match=r"logits must have shape \(B, 4\)"):
        FocalLoss(COUNTS)(torch.zeros(3, 5), torch.zeros(3, dtype=torch.long))
