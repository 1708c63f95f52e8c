"""Repeat-factor sampling: the LVIS formula against a naive float64 loop, seeded epochs, ranks that
partition each epoch's draw, and per-image frequencies that converge to the repeat factors."""

from __future__ import annotations

import math
import random
from collections import Counter

import pytest
import torch
from torch.utils.data import DataLoader

from longtail.samplers import create_sampler
from longtail.samplers.repeat_factor import RepeatFactorSampler, category_repeat_factors, lvis_repeat_factors


def naive_repeat_factors(image_labels, t, count_unannotated=False):
    # detectron2 drops images without annotations before computing f(c); "all" divides by every image
    n = len(image_labels) if count_unannotated else sum(1 for labels in image_labels if labels)
    cats = {c for labels in image_labels for c in labels}
    f = {c: sum(c in set(labels) for labels in image_labels) / n for c in cats}
    r_cat = {c: max(1.0, math.sqrt(t / f[c])) for c in cats}
    return [max([r_cat[c] for c in labels], default=1.0) for labels in image_labels]


def draw(sampler, epoch):
    sampler.set_epoch(epoch)
    return list(sampler)


@pytest.mark.parametrize("t", [0.001, 0.05, 0.3])
def test_lvis_repeat_factors_match_the_formula(t):
    rng = random.Random(0)
    # a long tail of categories: category k appears in about 200 / (k + 1) of 200 images
    image_labels = [[k for k in range(40) if rng.random() < 1 / (k + 1)] for _ in range(200)]
    image_labels[3] = []  # an image without annotations keeps r = 1
    image_labels[7] = []
    got = lvis_repeat_factors(image_labels, threshold=t)
    assert got.dtype == torch.float64
    assert got.tolist() == pytest.approx(naive_repeat_factors(image_labels, t), rel=1e-12)
    every = lvis_repeat_factors(image_labels, threshold=t, count_unannotated=True)
    assert every.tolist() == pytest.approx(naive_repeat_factors(image_labels, t, count_unannotated=True), rel=1e-12)
    if t == 0.3:  # the two rules differ: f(c) is smaller over all 200 images, so r is larger
        assert (every >= got).all() and (every > got).any()
    assert got[3] == 1.0 and (got >= 1).all()
    if t == 0.3:
        assert got.max() > 2, "the tail is repeated"


def test_category_repeat_factors():
    f = torch.tensor([0.0, 1e-4, 1e-3, 0.5])
    assert category_repeat_factors(f, 0.001).tolist() == pytest.approx([1.0, math.sqrt(10), 1.0, 1.0])
    with pytest.raises(ValueError, match="threshold"):
        category_repeat_factors(f, 0.0)


def test_sampler_is_a_function_of_seed_and_epoch():
    r = [1.0, 1.5, 2.2, 3.7, 1.0, 1.1]
    a, b = RepeatFactorSampler(r, seed=3), RepeatFactorSampler(r, seed=3)
    assert draw(a, 0) == draw(b, 0) and draw(a, 5) == draw(b, 5)
    assert draw(a, 1) == draw(RepeatFactorSampler(r, seed=3), 1), "epoch 1 does not depend on epoch 0"
    epochs = [draw(a, e) for e in range(6)]
    assert len({tuple(e) for e in epochs}) == 6, "each epoch is a fresh draw"
    assert draw(a, 0) != draw(RepeatFactorSampler(r, seed=4), 0)
    for e in range(6):
        counts = Counter(draw(a, e))
        for i, ri in enumerate(r):  # stochastic rounding: floor or ceil of r
            assert counts[i] in (math.floor(ri), math.ceil(ri))
        a.set_epoch(e)
        assert len(a) == sum(counts.values())


@pytest.mark.parametrize("world, drop_last", [(2, False), (3, False), (3, True)])
def test_ranks_partition_the_epoch(world, drop_last):
    r = torch.linspace(1.0, 4.0, 37)
    reference = RepeatFactorSampler(r, seed=7)
    reference.set_epoch(2)
    whole = reference.epoch_indices().tolist()
    shards = [draw(RepeatFactorSampler(r, num_replicas=world, rank=k, seed=7, drop_last=drop_last), 2)
              for k in range(world)]
    assert len({len(s) for s in shards}) == 1, "same number per rank"
    per_rank = len(shards[0])
    padded = (whole * 2)[: per_rank * world]
    for k, shard in enumerate(shards):  # rank k takes positions k, k + world, ... of the one global draw
        assert shard == padded[k::world]
    if drop_last:
        assert len(whole) - per_rank * world < world
    else:
        assert Counter(i for s in shards for i in s) - Counter(whole) == Counter(padded[len(whole):])


def test_frequencies_converge_to_the_repeat_factors():
    factors = torch.tensor([1.0, 1.25, 1.5, 2.0, 2.7, 4.1, 1.05], dtype=torch.float64)
    copies, epochs = 40, 250
    sampler = RepeatFactorSampler(factors.repeat(copies), seed=0)  # image i has factor factors[i % 7]
    total = Counter()
    for e in range(epochs):
        total.update(draw(sampler, e))
    per_image = torch.tensor([total[i] for i in range(len(factors) * copies)], dtype=torch.float64) / epochs
    mean = per_image.view(copies, len(factors)).mean(0)
    # each mean averages 10,000 draws: standard error at most 0.5 / 100 = 0.005
    assert torch.allclose(mean, factors, atol=0.025), mean
    assert (per_image.view(copies, -1)[:, [0, 3]] == factors[[0, 3]]).all(), "integer factors are exact every epoch"


def test_bad_factors_are_clear_errors():
    with pytest.raises(ValueError, match="> 0"):
        RepeatFactorSampler([1.0, 0.0])
    with pytest.raises(ValueError, match="finite"):
        RepeatFactorSampler([1.0, float("nan")])
    with pytest.raises(ValueError, match="at least one"):
        RepeatFactorSampler([])


def test_registry_builds_it_from_per_image_labels_or_single_labels():
    image_labels = [[0, 1], [1], [2], [0, 2, 3]] * 5 + [[4]]
    s = create_sampler("repeat_factor", image_labels, threshold=0.2, seed=1, num_replicas=2, rank=0)
    assert isinstance(s, RepeatFactorSampler)
    assert s.repeat_factors.tolist() == pytest.approx(naive_repeat_factors(image_labels, 0.2))
    flat = create_sampler("repeat_factor", torch.tensor([0, 0, 0, 1]), threshold=0.5)
    assert flat.repeat_factors.tolist() == pytest.approx([1.0, 1.0, 1.0, math.sqrt(2)])
    given = create_sampler("repeat_factor", [0, 1, 2], repeat_factors=[1.0, 2.0, 3.0])
    assert sorted(draw(given, 0)) == [0, 1, 1, 2, 2, 2]


def test_dataloader_length_follows_the_epoch():
    sampler = RepeatFactorSampler([1.5] * 20, seed=0)
    loader = DataLoader(list(range(20)), batch_size=4, sampler=sampler)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        batches = list(loader)
        assert len(batches) == len(loader) == math.ceil(len(sampler) / 4)
