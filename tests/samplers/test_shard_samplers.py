"""RandomSampler and SequentialShardSampler: seeded per epoch, disjoint ranks that cover the data."""

import pytest

from longtail.samplers import RandomSampler, SequentialShardSampler, create_sampler


def draw(sampler, epoch):
    sampler.set_epoch(epoch)
    return list(sampler)


def test_random_sampler_is_a_function_of_seed_and_epoch():
    a, b = RandomSampler(50, seed=3), RandomSampler(50, seed=3)
    assert draw(a, 0) == draw(b, 0)
    assert draw(a, 4) == draw(b, 4)
    assert draw(a, 0) != draw(a, 1), "each epoch is a fresh permutation"
    assert draw(a, 1) == draw(RandomSampler(50, seed=3), 1), "epoch 1 does not depend on having drawn epoch 0"
    assert draw(a, 0) != draw(RandomSampler(50, seed=4), 0)
    assert sorted(draw(a, 2)) == list(range(50)), "one epoch is a permutation of the dataset"
    assert len(a) == 50


@pytest.mark.parametrize("size, world", [(50, 2), (51, 2), (53, 4)])
def test_random_sampler_ranks_are_disjoint_and_cover(size, world):
    shards = [draw(RandomSampler(size, num_replicas=world, rank=r, seed=1), epoch=2) for r in range(world)]
    assert all(len(s) == -(-size // world) for s in shards), "same number per rank (padded)"
    flat = [i for s in shards for i in s]
    assert set(flat) == set(range(size)), "together the ranks cover the dataset"
    padding = len(flat) - size
    assert padding < world and len(set(flat)) == size
    if padding == 0:
        assert all(not set(shards[0]) & set(s) for s in shards[1:]), "ranks are disjoint"


def test_random_sampler_drop_last_gives_disjoint_equal_shards():
    shards = [draw(RandomSampler(51, num_replicas=2, rank=r, drop_last=True), 0) for r in range(2)]
    assert len(shards[0]) == len(shards[1]) == 25
    assert not set(shards[0]) & set(shards[1])


def test_random_sampler_with_more_samples_than_the_dataset():
    s = RandomSampler(10, num_samples=25, seed=0)
    idx = draw(s, 0)
    assert len(idx) == len(s) == 25 and set(idx) == set(range(10))


def test_registry_random_sampler_and_bad_ranks():
    s = create_sampler("random", [0, 1, 1, 2], num_replicas=2, rank=1, seed=5)
    assert isinstance(s, RandomSampler) and len(s) == 2
    with pytest.raises(ValueError, match="0 <= rank < num_replicas"):
        RandomSampler(10, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_samples must be positive"):
        RandomSampler(0)


@pytest.mark.parametrize("size, world", [(10, 1), (11, 2), (7, 3), (2, 4)])
def test_sequential_shards_are_strided_disjoint_and_exact(size, world):
    shards = [list(SequentialShardSampler(size, num_replicas=world, rank=r)) for r in range(world)]
    for r, shard in enumerate(shards):
        assert shard == list(range(r, size, world))
        assert len(SequentialShardSampler(size, num_replicas=world, rank=r)) == len(shard)
    flat = sorted(i for s in shards for i in s)
    assert flat == list(range(size)), "every sample exactly once, no padding (evaluation must not double count)"
    s = SequentialShardSampler(size, num_replicas=world, rank=0)
    s.set_epoch(3)
    assert list(s) == shards[0], "evaluation order does not depend on the epoch"
