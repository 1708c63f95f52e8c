"""Every classification loss takes soft targets (B, C) (mixup, CutMix, ReMix, label smoothing):
a one-hot soft target gives the hard-label loss (value and gradient); a mixed target gives the expected loss
over the target distribution, sum_j q_j w_j L(z, j) / sum_j q_j w_j per sample (w: the class weights of CB /
LDAM-DRW, 1 otherwise), and for the cross-entropy family exactly the cross-entropy against q of the
(shifted) logits, checked against a naive float64 loop."""

import math

import pytest
import torch

from helpers.loss_reference import assert_same_gradient
from longtail.losses import create_loss

COUNTS = [500, 120, 40, 9, 3]
LOSSES = {
    "ce": {}, "balanced_softmax": {}, "logit_adjusted": {"tau": 1.5}, "focal": {"gamma": 2.0},
    "class_balanced": {"beta": 0.99, "gamma": 1.0}, "ldam": {"drw_epoch": 0, "beta": 0.99},
    "equalization": {"freq_threshold": 0.05},
}


def make(name, reduction="mean"):
    loss = create_loss(name, COUNTS, reduction=reduction, **LOSSES[name])
    if hasattr(loss, "set_epoch"):
        loss.set_epoch(1)  # LDAM: deferred re-weighting on
    return loss


def batch(seed=0, b=12):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(b, len(COUNTS), generator=g, dtype=torch.float64) * 3).requires_grad_()
    a = torch.randint(0, len(COUNTS), (b,), generator=g)
    other = torch.randint(0, len(COUNTS), (b,), generator=g)
    lam = torch.rand(b, generator=g, dtype=torch.float64)
    return logits, a, other, lam


def mixed(a, other, lam):
    q = torch.zeros(a.numel(), len(COUNTS), dtype=torch.float64)
    q[torch.arange(a.numel()), a] += lam
    q[torch.arange(a.numel()), other] += 1 - lam
    return q


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", sorted(LOSSES))
def test_one_hot_soft_targets_are_the_hard_labels(name, reduction):
    logits, a, _, _ = batch()
    soft_in = logits.detach().clone().requires_grad_()
    loss = make(name, reduction)
    torch.manual_seed(5)  # EQL draws its beta from the global RNG
    hard = loss(logits, a)
    torch.manual_seed(5)
    soft = loss(soft_in, torch.nn.functional.one_hot(a, len(COUNTS)).double())
    torch.testing.assert_close(soft, hard, rtol=1e-12, atol=1e-12)
    assert_same_gradient(soft, hard, soft_in, logits)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_mixed_targets_mix_the_two_labels_losses(name):
    logits, a, other, lam = batch(seed=1)
    ref_in = logits.detach().clone().requires_grad_()
    loss, per = make(name, "mean"), make(name, "none")
    weights = loss.class_weights()
    w = (lambda y: weights.double()[y]) if weights is not None else (lambda y: torch.ones(y.numel(), dtype=torch.float64))
    torch.manual_seed(7)
    ours = loss(logits, mixed(a, other, lam))
    # the reference: mixup's mix of the two labels' (weighted) losses, with the same EQL draw for both labels
    torch.manual_seed(7)
    la = per(ref_in, a) / w(a)
    if name == "equalization":
        torch.manual_seed(7)
    lb = per(ref_in, other) / w(other)
    num = lam * w(a) * la + (1 - lam) * w(other) * lb
    reference = num.sum() / (lam * w(a) + (1 - lam) * w(other)).sum()
    torch.testing.assert_close(ours, reference, rtol=1e-10, atol=1e-12)
    assert_same_gradient(ours, reference, logits, ref_in)


def naive_soft_ce(logits, q, shift):
    out = []
    for i in range(logits.shape[0]):
        z = [float(logits[i, j]) + float(shift[j]) for j in range(logits.shape[1])]
        m = max(z)
        lse = m + math.log(sum(math.exp(v - m) for v in z))
        out.append(-sum(float(q[i, j]) * (z[j] - lse) for j in range(len(z))))
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("name, tau", [("ce", 0.0), ("balanced_softmax", 1.0), ("logit_adjusted", 1.5)])
def test_cross_entropy_family_is_cross_entropy_against_the_soft_target(name, tau):
    logits, a, other, lam = batch(seed=2)
    q = mixed(a, other, lam) * 0.9 + 0.1 / len(COUNTS)  # mixup with label smoothing: a dense target
    counts = torch.tensor(COUNTS, dtype=torch.float64)
    shift = tau * torch.log(counts / counts.sum())
    ours = make(name, "none")(logits, q)
    torch.testing.assert_close(ours, naive_soft_ce(logits.detach(), q, shift), rtol=1e-12, atol=1e-12)


def test_bad_soft_targets_are_clear_errors():
    loss = make("balanced_softmax")
    logits = torch.zeros(4, len(COUNTS))
    with pytest.raises(ValueError, match="soft targets must be floating point"):
        loss(logits, torch.zeros(4, len(COUNTS), dtype=torch.long))
    with pytest.raises(ValueError, match=r"of the logits' shape \(4, 5\), got torch.float32 \(4, 3\)"):
        loss(logits, torch.zeros(4, 3))
    with pytest.raises(ValueError, match=r"\(class indices\) or \(4, 5\) \(soft targets\), got \(3,\)"):
        loss(logits, torch.zeros(3, dtype=torch.long))
    absent = create_loss("balanced_softmax", [5, 0, 3, 1, 1], zero_counts="absent")
    q = torch.full((4, len(COUNTS)), 0.2)
    with pytest.raises(ValueError, match=r"classes \[1\] whose training count is 0"):
        absent(logits, q)
    q[:, 1], q[:, 0] = 0.0, 0.4
    assert torch.isfinite(absent(logits, q))
