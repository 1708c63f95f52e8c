"""Balanced Softmax against the formula of REFERENCE.md, computed by a naive float64 loop:
L(z, y) = -log( n_y e^{z_y} / sum_j n_j e^{z_j} ) (Ren et al. 2020, Eq. 4)."""

import math

import pytest
import torch

from longtail.losses import BalancedSoftmaxLoss, balanced_softmax_loss, create_loss, log_prior

COUNTS = [500.0, 120.0, 31.0, 7.0, 2.0]


def naive_balanced_softmax(logits: torch.Tensor, target: torch.Tensor, counts) -> torch.Tensor:
    """Per-sample losses, one sample and one class at a time, straight from the formula (float64).
    Differentiable, so autograd on it gives the reference gradient."""
    losses = []
    for i in range(logits.shape[0]):
        y = int(target[i])
        denominator = sum(counts[j] * torch.exp(logits[i, j]) for j in range(logits.shape[1]))
        losses.append(-torch.log(counts[y] * torch.exp(logits[i, y]) / denominator))
    return torch.stack(losses)


def make_batch(batch=16, num_classes=5, seed=0, scale=3.0):
    g = torch.Generator().manual_seed(seed)
    logits = (scale * torch.randn(batch, num_classes, generator=g, dtype=torch.float64))
    target = torch.randint(num_classes, (batch,), generator=g)
    return logits, target


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_module_value_and_gradient_match_naive_loop(reduction):
    logits, target = make_batch()
    ours_in = logits.clone().requires_grad_(True)
    ref_in = logits.clone().requires_grad_(True)
    ours = BalancedSoftmaxLoss(COUNTS, reduction=reduction)(ours_in, target)
    per_sample = naive_balanced_softmax(ref_in, target, COUNTS)
    ref = {"mean": per_sample.mean(), "sum": per_sample.sum(), "none": per_sample}[reduction]
    assert ours.dtype == torch.float64 and ours.shape == ref.shape
    torch.testing.assert_close(ours, ref, rtol=1e-12, atol=1e-12)
    # a non-uniform upstream gradient also checks the 'none' path element by element
    upstream = torch.linspace(0.5, 2.0, ours.numel(), dtype=torch.float64).reshape(ours.shape)
    (ours * upstream).sum().backward()
    (ref * upstream).sum().backward()
    torch.testing.assert_close(ours_in.grad, ref_in.grad, rtol=1e-12, atol=1e-12)


def test_functional_equals_module_and_naive():
    logits, target = make_batch(seed=1)
    functional = balanced_softmax_loss(logits, target, COUNTS, reduction="none")
    module = BalancedSoftmaxLoss(COUNTS, reduction="none")(logits, target)
    torch.testing.assert_close(functional, module, rtol=0, atol=0)
    torch.testing.assert_close(functional, naive_balanced_softmax(logits, target, COUNTS), rtol=1e-12, atol=1e-12)
    # counts as a tensor work the same as a list
    torch.testing.assert_close(balanced_softmax_loss(logits, target, torch.tensor(COUNTS)), functional.mean())


def test_gradient_is_softmax_of_shifted_logits_minus_onehot():
    """Closed form: dL/dz_j = n_j e^{z_j} / sum_k n_k e^{z_k} - [j = y] (per sample, reduction 'sum')."""
    logits, target = make_batch(seed=2)
    z = logits.clone().requires_grad_(True)
    BalancedSoftmaxLoss(COUNTS, reduction="sum")(z, target).backward()
    weighted = torch.tensor(COUNTS, dtype=torch.float64) * torch.exp(logits)
    expected = weighted / weighted.sum(1, keepdim=True) - torch.nn.functional.one_hot(target, 5).double()
    torch.testing.assert_close(z.grad, expected, rtol=1e-12, atol=1e-12)


def test_only_count_ratios_matter():
    logits, target = make_batch(seed=3)
    base = balanced_softmax_loss(logits, target, COUNTS, reduction="none")
    for factor in (1e-3, 0.5, 7.0, 1e6):
        scaled = balanced_softmax_loss(logits, target, [factor * n for n in COUNTS], reduction="none")
        torch.testing.assert_close(scaled, base, rtol=1e-12, atol=1e-12)


def test_uniform_counts_reduce_to_cross_entropy():
    logits, target = make_batch(seed=4)
    bs = BalancedSoftmaxLoss([10] * 5)(logits, target)
    ce = create_loss("ce", [10] * 5)(logits, target)
    torch.testing.assert_close(bs, ce, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(ce, torch.nn.functional.cross_entropy(logits, target), rtol=1e-15, atol=0)


def test_float32_matches_float64_and_counts_are_a_float64_buffer():
    logits, target = make_batch(seed=5)
    loss = BalancedSoftmaxLoss(COUNTS)
    assert loss.class_counts.dtype == torch.float64 and "class_counts" in dict(loss.named_buffers())
    assert "class_counts" in loss.state_dict() and "log_prior" in loss.state_dict()
    out32 = loss(logits.float(), target)
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32.double(), loss(logits, target), rtol=1e-5, atol=1e-6)


def test_log_prior_is_normalised():
    prior = log_prior(torch.tensor(COUNTS))
    torch.testing.assert_close(prior.exp().sum(), torch.tensor(1.0, dtype=torch.float64))
    assert prior[0] > prior[-1]


def test_registry_builds_balanced_softmax_with_options():
    loss = create_loss("balanced_softmax", COUNTS, reduction="sum")
    assert isinstance(loss, BalancedSoftmaxLoss) and loss.reduction == "sum"


def test_zero_count_is_an_error_by_default_with_a_fix_in_the_message():
    with pytest.raises(ValueError, match=r"classes \[2\] have 0 training samples.*zero_counts='absent'"):
        BalancedSoftmaxLoss([5, 3, 0, 1])
    logits, target = make_batch(num_classes=4)
    with pytest.raises(ValueError, match="0 training samples"):
        balanced_softmax_loss(logits, target, [5, 3, 0, 1])


def test_absent_classes_take_no_mass_and_get_zero_gradient():
    counts = [5.0, 3.0, 0.0, 1.0]
    logits, target = make_batch(batch=32, num_classes=4, seed=6)
    target = torch.where(target == 2, torch.zeros_like(target), target)  # no target of the absent class
    z = logits.clone().requires_grad_(True)
    loss = BalancedSoftmaxLoss(counts, reduction="none", zero_counts="absent")(z, target)
    assert torch.isfinite(loss).all()
    loss.sum().backward()
    assert torch.isfinite(z.grad).all()
    assert torch.equal(z.grad[:, 2], torch.zeros(32, dtype=torch.float64))
    # equal to Balanced Softmax over the present classes only
    present = [0, 1, 3]
    remap = torch.tensor([0, 1, -1, 2])[target]
    expected = naive_balanced_softmax(logits[:, present], remap, [counts[c] for c in present])
    torch.testing.assert_close(loss.detach(), expected, rtol=1e-12, atol=1e-12)
    functional = balanced_softmax_loss(logits, target, counts, reduction="none", zero_counts="absent")
    torch.testing.assert_close(functional, expected, rtol=1e-12, atol=1e-12)


def test_target_of_an_absent_class_is_an_error():
    loss = BalancedSoftmaxLoss([5, 3, 0, 1], zero_counts="absent")
    logits, _ = make_batch(batch=3, num_classes=4)
    with pytest.raises(ValueError, match=r"targets name classes \[2\] whose training count is 0"):
        loss(logits, torch.tensor([0, 2, 1]))


def test_bad_zero_counts_option_and_bad_counts():
    with pytest.raises(ValueError, match="zero_counts must be 'error' or 'absent'"):
        BalancedSoftmaxLoss(COUNTS, zero_counts="ignore")
    with pytest.raises(ValueError, match="finite and >= 0"):
        BalancedSoftmaxLoss([3, -1, 2])
    with pytest.raises(ValueError, match="finite and >= 0"):
        BalancedSoftmaxLoss([3, math.inf, 2])
    with pytest.raises(ValueError, match="non-empty 1-D"):
        BalancedSoftmaxLoss([[1, 2], [3, 4]])
    with pytest.raises(ValueError, match="sum to 0"):
        BalancedSoftmaxLoss([0, 0], zero_counts="absent")
    with pytest.raises(ValueError, match="reduction must be one of"):
        BalancedSoftmaxLoss(COUNTS, reduction="avg")


@pytest.mark.parametrize("logits_shape, target_shape, message", [
    ((8, 4), (8,), r"logits must have shape \(B, 5\), got \(8, 4\)"),
    ((8,), (8,), r"logits must have shape \(B, 5\)"),
    ((8, 5), (7,), r"target must have shape \(8,\) \(class indices\) or \(8, 5\) \(soft targets\), got \(7,\)"),
    ((8, 5), (8, 1), r"soft targets must be floating point of the logits' shape \(8, 5\), got torch.int64 \(8, 1\)"),
])
def test_shape_errors_name_the_expected_shape(logits_shape, target_shape, message):
    logits = torch.zeros(logits_shape)
    target = torch.zeros(target_shape, dtype=torch.long)
    with pytest.raises(ValueError, match=message):
        BalancedSoftmaxLoss(COUNTS)(logits, target)
    with pytest.raises(ValueError, match=message):
        balanced_softmax_loss(logits, target, COUNTS)


def test_functional_checks_its_options_too():
    logits, target = make_batch()
    with pytest.raises(ValueError, match="zero_counts must be 'error' or 'absent'"):
        balanced_softmax_loss(logits, target, COUNTS, zero_counts="skip")
    with pytest.raises(ValueError, match="reduction must be one of"):
        balanced_softmax_loss(logits, target, COUNTS, reduction="avg")
