"""ClassBalancedSampler and WeightedSampler: a function of (seed, epoch), rank shares that partition one
global draw, and class frequencies that converge to the intended ones."""

import pytest
import torch

from longtail.samplers import ClassBalancedSampler, WeightedSampler, class_power_weights, create_sampler

LABELS = torch.tensor([0] * 60 + [1] * 25 + [2] * 10 + [3] * 4 + [5] * 1)  # class 4 is empty


def draw(sampler, epoch=0):
    sampler.set_epoch(epoch)
    return torch.tensor(list(sampler))


def class_frequencies(indices, num_classes=6):
    return torch.bincount(LABELS[indices], minlength=num_classes).double() / len(indices)


@pytest.mark.parametrize("make", [
    lambda **kw: ClassBalancedSampler(LABELS, **kw),
    lambda **kw: WeightedSampler(class_power_weights(LABELS, 0.5), **kw),
])
def test_draws_are_a_function_of_seed_and_epoch(make):
    a, b = make(seed=3), make(seed=3)
    assert torch.equal(draw(a, 0), draw(b, 0))
    assert torch.equal(draw(a, 2), draw(make(seed=3), 2)), "epoch 2 does not depend on having drawn epoch 0"
    assert not torch.equal(draw(a, 0), draw(a, 1))
    assert not torch.equal(draw(a, 0), draw(make(seed=4), 0))
    assert len(a) == len(LABELS)


@pytest.mark.parametrize("world", [2, 3])
@pytest.mark.parametrize("make", [
    lambda **kw: ClassBalancedSampler(LABELS, num_samples=300, **kw),
    lambda **kw: WeightedSampler(class_power_weights(LABELS, 1.0), num_samples=300, **kw),
])
def test_rank_shares_partition_the_global_draw(make, world):
    whole = draw(make(seed=7), 1)
    shares = [draw(make(seed=7, num_replicas=world, rank=r), 1) for r in range(world)]
    assert all(len(s) == 300 // world for s in shares)
    for r, share in enumerate(shares):  # rank r holds positions r, r + world, ... of the same draw
        assert torch.equal(share, whole[r::world])


def test_class_balanced_frequencies_are_uniform_over_non_empty_classes():
    idx = draw(ClassBalancedSampler(LABELS, num_samples=40_000, seed=0))
    freq = class_frequencies(idx)
    assert freq[4] == 0, "an empty class is never drawn"
    assert torch.allclose(freq[[0, 1, 2, 3, 5]], torch.full((5,), 0.2, dtype=torch.float64), atol=0.01)
    # within a class, every instance is equally likely
    in_class0 = idx[LABELS[idx] == 0]
    per_instance = torch.bincount(in_class0, minlength=60)[:60].double() / len(in_class0)
    assert per_instance.min() > 0.5 / 60 and per_instance.max() < 1.5 / 60


@pytest.mark.parametrize("power", [0.0, 0.5, 1.0])
def test_weighted_power_gives_mass_proportional_to_n_to_one_minus_power(power):
    idx = draw(create_sampler("weighted", LABELS, power=power, num_samples=40_000, seed=1))
    counts = torch.bincount(LABELS, minlength=6).double()
    expected = counts.pow(1 - power) * (counts > 0)
    expected = expected / expected.sum()
    assert torch.allclose(class_frequencies(idx), expected, atol=0.012)


def test_weighted_class_weights_and_errors():
    idx = draw(create_sampler("weighted", LABELS, class_weights=[0, 1, 0, 0, 0, 3], num_samples=20_000, seed=2))
    freq = class_frequencies(idx)
    expected = torch.tensor([0, 25, 0, 0, 0, 3], dtype=torch.float64) / 28
    assert torch.allclose(freq, expected, atol=0.012)
    with pytest.raises(ValueError, match="exactly one of power"):
        create_sampler("weighted", LABELS)
    with pytest.raises(ValueError, match="one weight per class"):
        create_sampler("weighted", LABELS, class_weights=[1, 2])
    with pytest.raises(ValueError, match="non-negative"):
        WeightedSampler([1.0, -1.0])
    with pytest.raises(ValueError, match="at least one label"):
        ClassBalancedSampler([])
