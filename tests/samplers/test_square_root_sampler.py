"""Square-root sampling (Kang et al. 2020, Eq. 1, q = 1/2): determinism, disjoint ranks, class
frequencies converging to n_j^q / sum n^q, and instances uniform within a class."""

import pytest
import torch

from longtail.samplers import SquareRootSampler, class_probabilities, create_sampler

COUNTS = [400, 100, 25, 9, 1]
LABELS = torch.repeat_interleave(torch.arange(5), torch.tensor(COUNTS))[
    torch.randperm(535, generator=torch.Generator().manual_seed(0))]


def test_class_probabilities_formula():
    p = class_probabilities(COUNTS, 0.5)
    torch.testing.assert_close(p, torch.tensor([20.0, 10, 5, 3, 1], dtype=torch.float64) / 39)
    torch.testing.assert_close(class_probabilities([4, 0, 2], 0.0), torch.tensor([0.5, 0, 0.5], dtype=torch.float64))
    with pytest.raises(ValueError, match=r"q must lie in \[0, 1\]"):
        class_probabilities(COUNTS, 1.5)


def test_deterministic_per_seed_and_epoch():
    a, b = SquareRootSampler(LABELS, seed=3), SquareRootSampler(LABELS, seed=3)
    assert list(a) == list(b)
    a.set_epoch(1)
    assert list(a) != list(b)
    b.set_epoch(1)
    assert list(a) == list(b)
    assert list(SquareRootSampler(LABELS, seed=4)) != list(SquareRootSampler(LABELS, seed=3))


def test_ranks_partition_the_global_draw():
    full = list(SquareRootSampler(LABELS, seed=1, num_samples=600))
    shards = [list(SquareRootSampler(LABELS, seed=1, num_samples=600, num_replicas=3, rank=r)) for r in range(3)]
    assert all(len(s) == 200 for s in shards)
    # rank r holds positions r, r + 3, ... of the one global sequence: disjoint positions, nothing lost
    for r, shard in enumerate(shards):
        assert shard == full[r::3]


def test_class_frequencies_converge_and_instances_are_uniform():
    sampler = create_sampler("square_root", LABELS, num_samples=200_000, seed=0)
    drawn = torch.tensor(list(sampler))
    freq = torch.bincount(LABELS[drawn], minlength=5).double() / len(drawn)
    torch.testing.assert_close(freq, class_probabilities(COUNTS, 0.5), atol=4e-3, rtol=0)
    # within the head class, every instance is drawn about equally often
    head = torch.nonzero(LABELS == 0).flatten()
    hits = torch.bincount(drawn, minlength=len(LABELS))[head].double()
    assert hits.min() > 0.6 * hits.mean() and hits.max() < 1.4 * hits.mean()


def test_q_one_matches_instance_frequencies():
    drawn = torch.tensor(list(SquareRootSampler(LABELS, q=1.0, num_samples=100_000)))
    freq = torch.bincount(LABELS[drawn], minlength=5).double() / len(drawn)
    torch.testing.assert_close(freq, torch.tensor(COUNTS, dtype=torch.float64) / sum(COUNTS), atol=4e-3, rtol=0)
