"""Progressively-balanced sampling (Kang et al. 2020, Eq. 2): p_j(t) = (1 - t/T) n_j/N + (t/T)/C."""

import pytest
import torch

from longtail.samplers import ProgressivelyBalancedSampler, create_sampler

COUNTS = [300, 60, 12, 3]
LABELS = torch.repeat_interleave(torch.arange(4), torch.tensor(COUNTS))


def expected(t, total):
    ib = torch.tensor(COUNTS, dtype=torch.float64) / sum(COUNTS)
    return (1 - t / total) * ib + (t / total) * torch.full((4,), 0.25, dtype=torch.float64)


@pytest.mark.parametrize("epoch", [0, 5, 9])
def test_class_frequencies_follow_the_schedule(epoch):
    sampler = create_sampler("progressive", LABELS, total_epochs=10, num_samples=100_000, seed=2)
    torch.testing.assert_close(sampler.epoch_probabilities(), expected(0, 10))
    sampler.set_epoch(epoch)
    torch.testing.assert_close(sampler.epoch_probabilities(), expected(epoch, 10), rtol=1e-12, atol=0)
    drawn = torch.tensor(list(sampler))
    freq = torch.bincount(LABELS[drawn], minlength=4).double() / len(drawn)
    torch.testing.assert_close(freq, expected(epoch, 10), atol=5e-3, rtol=0)


def test_deterministic_and_rank_disjoint():
    make = lambda **kw: ProgressivelyBalancedSampler(LABELS, total_epochs=4, seed=7, num_samples=300, **kw)  # noqa: E731
    a, b = make(), make()
    a.set_epoch(2), b.set_epoch(2)
    assert list(a) == list(b)
    shards = [make(num_replicas=2, rank=r) for r in range(2)]
    for s in shards:
        s.set_epoch(2)
    assert list(shards[0]) == list(a)[0::2] and list(shards[1]) == list(a)[1::2]


def test_past_the_end_stays_class_balanced_and_bad_total_is_an_error():
    sampler = ProgressivelyBalancedSampler(LABELS, total_epochs=3)
    sampler.set_epoch(7)
    torch.testing.assert_close(sampler.epoch_probabilities(), torch.full((4,), 0.25, dtype=torch.float64))
    with pytest.raises(ValueError, match="total_epochs must be >= 1"):
        ProgressivelyBalancedSampler(LABELS, total_epochs=0)
