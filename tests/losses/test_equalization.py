"""Softmax Equalization Loss (Tan et al. 2020) against a naive float64 loop of
-log( e^{z_y} / sum_k w_k e^{z_k} ), w_k = 1 - beta T_lambda(f_k) (1 - y_k)."""

import pytest
import torch

from helpers.loss_reference import assert_same_gradient
from longtail.losses import CrossEntropyLoss, EqualizationLoss, rare_class_mask, softmax_eql_loss

COUNTS = [700.0, 200.0, 60.0, 25.0, 15.0]  # frequencies 0.7, 0.2, 0.06, 0.025, 0.015
THRESHOLD = 0.05  # the last two classes are rare


def naive_eql(logits, target, counts, threshold, beta):
    total = sum(counts)
    losses = []
    for i in range(logits.shape[0]):
        y = int(target[i])
        denominator = 0
        for k in range(logits.shape[1]):
            t = 1.0 if counts[k] / total < threshold else 0.0
            w = 1 - float(beta[i]) * t * (1.0 - (1.0 if k == y else 0.0))
            denominator = denominator + w * torch.exp(logits[i, k])
        losses.append(-torch.log(torch.exp(logits[i, y]) / denominator))
    return torch.stack(losses)


def batch(seed=0, b=16, c=5):
    g = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(b, c, generator=g, dtype=torch.float64)
    target = torch.randint(c, (b,), generator=g)
    beta = (torch.rand(b, generator=g) < 0.5).double()
    return logits, target, beta


def test_rare_mask():
    assert rare_class_mask(COUNTS, THRESHOLD).tolist() == [False, False, False, True, True]


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_value_and_gradient_match_naive_loop(reduction):
    logits, target, beta = batch()
    assert 0 < beta.sum() < len(beta)  # both branches of the Bernoulli draw are exercised
    ours_in, ref_in = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    ours = softmax_eql_loss(ours_in, target, COUNTS, THRESHOLD, beta, reduction=reduction)
    per_sample = naive_eql(ref_in, target, COUNTS, THRESHOLD, beta)
    ref = {"mean": per_sample.mean(), "sum": per_sample.sum(), "none": per_sample}[reduction]
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    assert_same_gradient(ours, ref, ours_in, ref_in)
    # the rare classes get no gradient from samples of other classes that drew beta = 1
    suppressed = (beta == 1) & (target < 3)
    assert (ours_in.grad[suppressed][:, 3:] == 0).all()


def test_module_extremes_gamma_zero_is_ce_gamma_one_is_deterministic():
    logits, target, _ = batch(seed=2)
    torch.testing.assert_close(EqualizationLoss(COUNTS, freq_threshold=THRESHOLD, gamma=0.0)(logits, target),
                               CrossEntropyLoss(COUNTS)(logits, target), rtol=1e-14, atol=1e-14)
    ones = torch.ones(len(target), dtype=torch.float64)
    torch.testing.assert_close(EqualizationLoss(COUNTS, freq_threshold=THRESHOLD, gamma=1.0)(logits, target),
                               softmax_eql_loss(logits, target, COUNTS, THRESHOLD, ones))


def test_module_draw_follows_the_global_seed():
    logits, target, _ = batch(seed=3)
    loss_fn = EqualizationLoss(COUNTS, freq_threshold=THRESHOLD, gamma=0.5, reduction="none")
    torch.manual_seed(11)
    first = loss_fn(logits, target)
    torch.manual_seed(11)
    torch.testing.assert_close(loss_fn(logits, target), first, rtol=0, atol=0)


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="freq_threshold"):
        EqualizationLoss(COUNTS, freq_threshold=3.0)
    with pytest.raises(ValueError, match="gamma is a probability"):
        EqualizationLoss(COUNTS, freq_threshold=0.1, gamma=1.5)
