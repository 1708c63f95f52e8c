"""LDAM-DRW (Cao et al. 2019) against a naive float64 loop: margins m_j = C / n_j^{1/4} with max 0.5,
scale s = 30, class-balanced (beta 0.9999) weights switched on at drw_epoch by set_epoch."""

import math

import pytest
import torch

from helpers.loss_reference import assert_same_gradient
from longtail.losses import LDAMLoss, create_loss, effective_number_weights, ldam_loss, ldam_margins

COUNTS = [800.0, 200.0, 50.0, 12.0, 3.0]


def naive_ldam(logits, target, counts, max_margin=0.5, s=30.0, class_weights=None):
    raw = [n ** -0.25 for n in counts]
    m = [r * max_margin / max(raw) for r in raw]
    losses, weights = [], []
    for i in range(logits.shape[0]):
        y = int(target[i])
        top = torch.exp(s * (logits[i, y] - m[y]))
        rest = sum(torch.exp(s * logits[i, j]) for j in range(logits.shape[1]) if j != y)
        w = 1.0 if class_weights is None else float(class_weights[y])
        losses.append(-w * torch.log(top / (top + rest)))
        weights.append(w)
    return torch.stack(losses), torch.tensor(weights, dtype=torch.float64)


def batch(seed=0, b=10, c=5):
    """Cosine-like logits in [-1, 1], as the LDAM head produces."""
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, c, generator=g, dtype=torch.float64) * 2 - 1, torch.randint(c, (b,), generator=g)


def test_margins():
    m = ldam_margins(COUNTS)
    assert math.isclose(float(m.max()), 0.5) and int(m.argmax()) == len(COUNTS) - 1
    torch.testing.assert_close(m * torch.tensor(COUNTS, dtype=torch.float64) ** 0.25,
                               torch.full((5,), float(m[0]) * 800 ** 0.25, dtype=torch.float64))


@pytest.mark.parametrize("drw", [False, True])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_value_and_gradient_match_naive_loop(drw, reduction):
    logits, target = batch(seed=int(drw))
    ours_in, ref_in = logits.clone().requires_grad_(True), logits.clone().requires_grad_(True)
    loss_fn = LDAMLoss(COUNTS, drw_epoch=3, reduction=reduction)
    loss_fn.set_epoch(3 if drw else 2)
    assert loss_fn.reweighting == drw
    ours = loss_fn(ours_in, target)
    cw = effective_number_weights(COUNTS, 0.9999).tolist() if drw else None
    weighted, weights = naive_ldam(ref_in, target, COUNTS, class_weights=cw)
    ref = {"mean": weighted.sum() / weights.sum(), "sum": weighted.sum(), "none": weighted}[reduction]
    torch.testing.assert_close(ours, ref, rtol=1e-11, atol=1e-12)
    assert_same_gradient(ours, ref, ours_in, ref_in)


def test_drw_schedule_and_functional():
    logits, target = batch(seed=4)
    loss_fn = create_loss("ldam", COUNTS, drw_epoch=5)
    values = []
    for epoch in (0, 4, 5, 9):
        loss_fn.set_epoch(epoch)
        values.append(loss_fn(logits, target))
    assert values[0] == values[1] and values[2] == values[3] and values[1] != values[2]
    torch.testing.assert_close(ldam_loss(logits, target, COUNTS), values[0])
    no_drw = LDAMLoss(COUNTS)
    no_drw.set_epoch(1000)
    assert not no_drw.reweighting


def test_bad_options_are_clear_errors():
    with pytest.raises(ValueError, match="max_margin must be > 0"):
        LDAMLoss(COUNTS, max_margin=0)
    with pytest.raises(ValueError, match="drw_epoch must be >= 0"):
        LDAMLoss(COUNTS, drw_epoch=-1)


def test_probability_scale_is_the_logit_scale():
    """ECE and predict use softmax(probability_scale * z): s for LDAM, 1 for the softmax losses."""
    assert LDAMLoss([10, 5, 1], scale=16.0).probability_scale == 16.0
    for name in ("ce", "balanced_softmax", "focal", "logit_adjusted"):
        assert create_loss(name, [10, 5, 1]).probability_scale == 1.0
