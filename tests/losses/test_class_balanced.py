"""Class-balanced loss (Cui et al. 2019): weights (1 - beta) / (1 - beta^n) normalised to sum C,
checked against a naive float64 loop (value and gradient) for the CE and focal forms."""

import math

import pytest
import torch

from helpers.loss_reference import assert_same_gradient
from longtail.losses import ClassBalancedLoss, class_balanced_loss, create_loss, effective_number_weights

COUNTS = [1000.0, 250.0, 40.0, 9.0, 2.0]


def naive_weights(counts, beta):
    raw = [(1 - beta) / (1 - beta ** n) for n in counts]
    return [w * len(counts) / sum(raw) for w in raw]


def naive_cb(logits, target, counts, beta, gamma):
    """Per-sample weighted losses w_y * FL and the per-sample weights."""
    w = naive_weights(counts, beta)
    losses, weights = [], []
    for i in range(logits.shape[0]):
        y = int(target[i])
        p_y = torch.exp(logits[i, y]) / sum(torch.exp(logits[i, j]) for j in range(logits.shape[1]))
        losses.append(w[y] * -((1 - p_y) ** gamma) * torch.log(p_y))
        weights.append(w[y])
    return torch.stack(losses), torch.tensor(weights, dtype=torch.float64)


def batch(seed=0, b=14, c=5):
    g = torch.Generator().manual_seed(seed)
    return 2 * torch.randn(b, c, generator=g, dtype=torch.float64), torch.randint(c, (b,), generator=g)


def test_weights_match_formula_and_sum_to_num_classes():
    for beta in (0.9, 0.99, 0.9999):
        w = effective_number_weights(COUNTS, beta)
        torch.testing.assert_close(w, torch.tensor(naive_weights(COUNTS, beta), dtype=torch.float64), rtol=1e-12, atol=0)
        assert math.isclose(float(w.sum()), len(COUNTS), rel_tol=1e-12)
        assert all(w[i] < w[i + 1] for i in range(len(COUNTS) - 1))  # rarer class, larger weight
    torch.testing.assert_close(effective_number_weights(COUNTS, 0.0), torch.ones(5, dtype=torch.float64))


@pytest.mark.parametrize("gamma", [0.0, 1.0, 2.0])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_value_and_gradient_match_naive_loop(gamma, reduction):
    logits, target = batch(seed=int(gamma))
    ours_in, ref_in = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    ours = ClassBalancedLoss(COUNTS, beta=0.999, gamma=gamma, reduction=reduction)(ours_in, target)
    weighted, weights = naive_cb(ref_in, target, COUNTS, 0.999, gamma)
    # 'mean' is the weighted mean: divided by the sum of the batch's weights
    ref = {"mean": weighted.sum() / weights.sum(), "sum": weighted.sum(), "none": weighted}[reduction]
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    assert_same_gradient(ours, ref, ours_in, ref_in)


def test_functional_and_registry_match_module():
    logits, target = batch(seed=5)
    module = ClassBalancedLoss(COUNTS, beta=0.99, gamma=1.0)
    torch.testing.assert_close(class_balanced_loss(logits, target, COUNTS, beta=0.99, gamma=1.0), module(logits, target))
    torch.testing.assert_close(create_loss("class_balanced", COUNTS, beta=0.99, gamma=1.0)(logits, target),
                               module(logits, target))
    assert "weights" in module.state_dict()


def test_bad_inputs_are_clear_errors():
    with pytest.raises(ValueError, match=r"beta must lie in \[0, 1\)"):
        ClassBalancedLoss(COUNTS, beta=1.0)
    with pytest.raises(ValueError, match="0 training samples"):
        ClassBalancedLoss([10, 0, 3])
