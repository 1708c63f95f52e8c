"""Meta Sampler: the official initialisation, draws that follow n_c sigmoid(w_c) with the current logits
(never ahead), rank shares of one global draw, and straight-through weights with the Gumbel-softmax gradient."""

import math

import pytest
import torch

from longtail.samplers import MetaSampler, MetaSamplerLogits, create_sampler

COUNTS = [50, 20, 8, 2]
LABELS = torch.cat([torch.full((n,), c) for c, n in enumerate(COUNTS)])


def test_initialisation_follows_the_official_formula():
    n = torch.tensor(COUNTS, dtype=torch.float64)
    p = n / n.sum()
    for init_pow in (0.0, 0.1, 0.3, 1.0):
        logits = MetaSamplerLogits(COUNTS, init_pow=init_pow)
        r = p.pow(-init_pow)
        r = r / (r.min() + r.max())
        assert torch.allclose(torch.sigmoid(logits.logits.double()), r, atol=1e-6)
    assert torch.allclose(MetaSamplerLogits(COUNTS, init_pow=0.0).sampling_probability(), p, atol=1e-6), \
        "init_pow 0 is instance-balanced"
    assert torch.allclose(MetaSamplerLogits(COUNTS, init_pow=1.0).sampling_probability(),
                          torch.full((4,), 0.25, dtype=torch.float64), atol=1e-6), "init_pow 1 is class-balanced"


def test_draw_frequencies_follow_counts_times_sigmoid():
    logits = MetaSamplerLogits(COUNTS)
    with torch.no_grad():
        logits.logits.copy_(torch.tensor([-2.0, 0.0, 1.0, 3.0]))
    expected = torch.tensor(COUNTS) * torch.sigmoid(logits.logits.detach().double())
    expected = expected / expected.sum()
    sampler = MetaSampler(LABELS, logits, batch_size=20_000, num_batches=1, seed=0)
    batch = next(iter(sampler))
    assert torch.equal(LABELS[batch.indices], batch.classes), "each index is an instance of its drawn class"
    freq = torch.bincount(batch.classes, minlength=4).double() / 20_000
    assert torch.allclose(freq, expected, atol=0.012)
    assert batch.gumbel.shape == (20_000, 4), "B x C noise, never B x N"


def test_each_batch_uses_the_logits_of_its_step():
    logits = MetaSamplerLogits(COUNTS)
    sampler = MetaSampler(LABELS, logits, batch_size=2000, num_batches=2, seed=0)
    it = iter(sampler)
    first = next(it)
    assert (first.classes == 0).double().mean() > 0.5
    with torch.no_grad():  # the learner moves all mass to class 3 between two steps
        logits.logits.copy_(torch.tensor([-30.0, -30.0, -30.0, 30.0]))
    second = next(it)
    assert (second.classes == 3).all(), "the next batch is drawn with the updated logits, not prefetched"


def test_seed_epoch_and_rank_shares():
    def batches(seed, epoch, world=1, rank=0):
        s = create_sampler("meta", LABELS, batch_size=6, num_batches=3, seed=seed, num_replicas=world, rank=rank)
        s.set_epoch(epoch)
        return [b.indices for b in s]

    assert all(torch.equal(a, b) for a, b in zip(batches(1, 0), batches(1, 0)))
    assert not all(torch.equal(a, b) for a, b in zip(batches(1, 0), batches(1, 1)))
    # two ranks: each holds its strided share of the same global batch of 2 x 6
    whole = [b.indices for b in MetaSampler(LABELS, MetaSamplerLogits(COUNTS), batch_size=12, num_batches=3, seed=5)]
    for rank in range(2):
        for share, glob in zip(batches(5, 0, world=2, rank=rank), whole):
            assert torch.equal(share, glob[rank::2])


def test_straight_through_weights_have_value_one_and_the_soft_sample_gradient():
    torch.manual_seed(0)
    logits = MetaSamplerLogits(COUNTS, init_pow=0.3).double()
    classes, gumbel = logits.draw(5, torch.Generator().manual_seed(1))
    gumbel = gumbel.double()
    weights = logits.straight_through(classes, gumbel)
    assert torch.equal(weights.detach(), torch.ones(5, dtype=torch.float64))
    upstream = torch.randn(5, dtype=torch.float64)
    (grad,) = torch.autograd.grad((weights * upstream).sum(), logits.logits)
    # by hand: s = softmax(log n + log sigmoid(w) + g); d s_{b,y_b} / d w_j = s_{b,y}(1[y=j] - s_{b,j})(1 - sigmoid(w_j))
    w = logits.logits.detach()
    s = torch.softmax(torch.tensor(COUNTS, dtype=torch.float64).log() + torch.nn.functional.logsigmoid(w) + gumbel, 1)
    expected = torch.zeros(4, dtype=torch.float64)
    for b in range(5):
        y = int(classes[b])
        for j in range(4):
            expected[j] += upstream[b] * s[b, y] * (float(y == j) - s[b, j]) * (1 - torch.sigmoid(w[j]))
    assert torch.allclose(grad, expected, atol=1e-12)


def test_empty_classes_are_never_drawn_and_bad_input_is_rejected():
    logits = MetaSamplerLogits([10, 0, 5], init_pow=1.0)
    assert logits.sampling_probability()[1] == 0
    labels = torch.tensor([0] * 10 + [2] * 5)
    batch = next(iter(MetaSampler(labels, logits, batch_size=500, num_batches=1)))
    assert not (batch.classes == 1).any()
    with pytest.raises(ValueError, match="other class counts"):
        MetaSampler(labels[:12], logits, batch_size=4)
    with pytest.raises(ValueError, match="not all zero"):
        MetaSamplerLogits([0, 0])
    with pytest.raises(ValueError, match="batch_size"):
        MetaSampler(labels, logits, batch_size=0)
    assert math.isclose(float(logits.sampling_probability().sum()), 1.0)
