"""Logit-adjusted loss CE(z + tau log p) (Menon et al. 2021, Eq. 10) against a naive float64 loop."""

import pytest
import torch

from helpers.loss_reference import assert_same_gradient
from longtail.losses import BalancedSoftmaxLoss, LogitAdjustedLoss, create_loss, logit_adjusted_loss

COUNTS = [640.0, 160.0, 40.0, 10.0]


def naive_la(logits, target, counts, tau):
    total = sum(counts)
    prior = [n / total for n in counts]
    losses = []
    for i in range(logits.shape[0]):
        y = int(target[i])
        adjusted = [logits[i, j] + tau * torch.log(torch.tensor(prior[j], dtype=torch.float64))
                    for j in range(logits.shape[1])]
        losses.append(-torch.log(torch.exp(adjusted[y]) / sum(torch.exp(a) for a in adjusted)))
    return torch.stack(losses)


def batch(seed=0, b=12, c=4):
    g = torch.Generator().manual_seed(seed)
    return 3 * torch.randn(b, c, generator=g, dtype=torch.float64), torch.randint(c, (b,), generator=g)


@pytest.mark.parametrize("tau", [0.0, 0.5, 1.0, 2.0])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_value_and_gradient_match_naive_loop(tau, reduction):
    logits, target = batch(seed=int(tau * 2))
    ours_in, ref_in = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    ours = LogitAdjustedLoss(COUNTS, tau=tau, reduction=reduction)(ours_in, target)
    per_sample = naive_la(ref_in, target, COUNTS, tau)
    ref = {"mean": per_sample.mean(), "sum": per_sample.sum(), "none": per_sample}[reduction]
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    assert_same_gradient(ours, ref, ours_in, ref_in)


def test_tau_one_is_balanced_softmax_and_functional_matches():
    logits, target = batch(seed=7)
    torch.testing.assert_close(LogitAdjustedLoss(COUNTS, tau=1.0)(logits, target),
                               BalancedSoftmaxLoss(COUNTS)(logits, target), rtol=1e-14, atol=1e-14)
    torch.testing.assert_close(logit_adjusted_loss(logits, target, COUNTS, tau=1.5),
                               create_loss("logit_adjusted", COUNTS, tau=1.5)(logits, target))


def test_bad_tau_is_a_clear_error():
    with pytest.raises(ValueError, match="tau must be >= 0"):
        LogitAdjustedLoss(COUNTS, tau=-0.5)
