import copy
import math

import pytest
import torch
from torch import nn

from longtail.detection import MetaReweighter, SigmoidBalancedSoftmax, SigmoidCrossEntropy
from longtail.detection.heads.balms import image_frequency_log_odds, meta_reweight_step, sigmoid_class_loss
from longtail.engine.meta import sgd_lookahead_of

IMAGE_COUNTS = [2, 40, 7, 90, 1]
NUM_IMAGES = 100


def _naive(logits, labels, counts, num_images, weights=None):
    """Loop over proposals and classes from the definition, float64."""
    R, C = logits.shape
    fg = [r for r in range(R) if labels[r] > 0]
    norm = sum(weights[labels[r] - 1] for r in fg) / len(fg) if weights is not None and fg else 1.0
    total = 0.0
    for r in range(R):
        row = 0.0
        for j in range(C):
            z = logits[r, j]
            if labels[r] > 0 and counts is not None:
                f = counts[j] / num_images
                z = z + math.log(f / (1 - f))
            y = 1.0 if labels[r] == j + 1 else 0.0
            p = torch.sigmoid(z)
            row = row - (y * torch.log(p) + (1 - y) * torch.log(1 - p))
        if weights is not None and labels[r] > 0:
            row = row * weights[labels[r] - 1] / norm
        total = total + row
    return total / R


@pytest.mark.parametrize("balanced", [True, False])
@pytest.mark.parametrize("weighted", [True, False])
def test_loss_value_and_gradient_match_naive_reference(balanced, weighted):
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(12, 5, dtype=torch.float64, generator=g, requires_grad=True)
    labels = torch.tensor([0, 1, 2, 0, 5, 3, 3, 0, 4, 0, 2, 1])
    head = SigmoidBalancedSoftmax(IMAGE_COUNTS, num_images=NUM_IMAGES) if balanced else SigmoidCrossEntropy(5)
    weights = (torch.rand(5, dtype=torch.float64, generator=g) + 0.1).requires_grad_() if weighted else None
    ours = head.loss(logits, labels, class_weights=weights)
    ref = _naive(logits, labels, IMAGE_COUNTS if balanced else None, NUM_IMAGES, weights)
    inputs = [logits] + ([weights] if weighted else [])
    for a, b in zip(torch.autograd.grad(ours, inputs), torch.autograd.grad(ref, inputs)):
        assert torch.allclose(a, b, atol=1e-12)
    assert torch.allclose(ours, ref, atol=1e-12)


def test_shift_applies_to_foreground_only():
    logits = torch.randn(4, 5, dtype=torch.float64)
    bg = torch.zeros(4, dtype=torch.long)
    balanced = SigmoidBalancedSoftmax(IMAGE_COUNTS, num_images=NUM_IMAGES)
    assert torch.allclose(balanced.loss(logits, bg), SigmoidCrossEntropy(5).loss(logits, bg))


def test_frequency_edge_cases():
    with pytest.raises(ValueError, match="no training image"):
        SigmoidBalancedSoftmax([0, 3], num_images=10)
    with pytest.raises(ValueError, match="exceeds"):
        SigmoidBalancedSoftmax([11, 3], num_images=10)
    log_odds = image_frequency_log_odds([10, 5], 10)  # class 1 in every image: clamped, finite
    assert torch.isfinite(log_odds).all() and log_odds[1] == 0


def test_scores_are_sigmoids_with_dummy_background():
    logits = torch.randn(3, 5)
    scores = SigmoidBalancedSoftmax(IMAGE_COUNTS, num_images=NUM_IMAGES).scores(logits)
    assert scores.shape == (3, 6) and (scores[:, 0] == 0).all()
    assert torch.allclose(scores[:, 1:], torch.sigmoid(logits))  # test time: plain logits, no shift


def test_meta_reweighter_starts_at_half():
    assert torch.equal(MetaReweighter(4)(), torch.full((4,), 0.5))


def _setup(momentum):
    torch.manual_seed(0)
    layer = nn.Linear(6, 5).double()
    opt = torch.optim.SGD(layer.parameters(), lr=0.5, momentum=momentum, weight_decay=1e-2)
    if momentum:  # give the optimiser a momentum buffer
        layer(torch.randn(3, 6, dtype=torch.float64)).sum().backward()
        opt.step()
    feats, meta_feats = torch.randn(16, 6, dtype=torch.float64), torch.randn(10, 6, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3, 4, 5, 0, 1, 1, 1, 1, 0, 2, 2, 3, 0])
    meta_labels = torch.tensor([1, 2, 3, 4, 5, 0, 0, 1, 3, 5])
    return layer, opt, feats, labels, meta_feats, meta_labels


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_look_ahead_equals_a_real_optimiser_step(momentum):
    layer, opt, feats, labels, _, _ = _setup(momentum)
    head = SigmoidBalancedSoftmax(IMAGE_COUNTS, num_images=NUM_IMAGES)
    weights = torch.rand(5, dtype=torch.float64) + 0.5
    loss = head.loss(layer(feats), labels, class_weights=weights)
    grads = torch.autograd.grad(loss, list(layer.parameters()))
    ahead = sgd_lookahead_of(opt, list(layer.parameters()), grads)
    real, real_opt = copy.deepcopy(layer), None
    real_opt = torch.optim.SGD(real.parameters(), lr=0.5, momentum=momentum, weight_decay=1e-2)
    real_opt.load_state_dict(opt.state_dict())
    head.loss(real(feats), labels, class_weights=weights).backward()
    real_opt.step()
    for a, p in zip(ahead, real.parameters()):
        assert torch.allclose(a, p.detach(), atol=1e-12)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_meta_gradient_matches_finite_differences(momentum):
    layer, opt, feats, labels, meta_feats, meta_labels = _setup(momentum)
    head = SigmoidBalancedSoftmax(IMAGE_COUNTS, num_images=NUM_IMAGES)
    reweighter = MetaReweighter(5).double()
    with torch.no_grad():
        reweighter.logits.copy_(torch.tensor([0.3, -0.2, 0.5, 0.0, -0.7]))

    def meta_loss(w_logits):  # the look-ahead recomputed from scratch for given reweighter logits
        w = torch.sigmoid(w_logits)
        params = [p.detach().requires_grad_() for p in layer.parameters()]
        inner = head.loss(nn.functional.linear(feats, *params), labels, class_weights=w)
        grads = torch.autograd.grad(inner, params)
        stepped = sgd_lookahead_of(opt, list(layer.parameters()), grads)  # layer holds the same values as params
        return float(sigmoid_class_loss(nn.functional.linear(meta_feats, *stepped), meta_labels))

    base = reweighter.logits.detach().clone()
    eps = 1e-6
    numeric = torch.tensor([(meta_loss(base + eps * e) - meta_loss(base - eps * e)) / (2 * eps)
                            for e in torch.eye(5, dtype=torch.float64)], dtype=torch.float64)
    meta_opt = torch.optim.SGD(reweighter.parameters(), lr=1.0)  # lr 1: the update is minus the gradient
    before = layer.weight.detach().clone()
    value = meta_reweight_step(layer, head, feats, labels, meta_feats, meta_labels, reweighter, meta_opt, opt)
    assert math.isclose(value, meta_loss(base), rel_tol=1e-10)
    assert torch.allclose(base - reweighter.logits.detach(), numeric, atol=1e-7)
    assert numeric.abs().max() > 1e-6  # the check is not vacuous
    assert torch.equal(layer.weight.detach(), before)  # the look-ahead leaves the real layer alone
