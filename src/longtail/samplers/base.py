"""Shared machinery of every longtail sampler: a seeded generator, epochs, and rank sharding.

A sampler draws one global sequence of indices per epoch from ``torch.Generator`` seeded with
``seed + epoch`` (identical on every rank), then each rank takes its strided share, as
``torch.utils.data.DistributedSampler`` does. Call :meth:`set_epoch` at the start of each epoch.
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch
from torch import Tensor
from torch.utils.data import Sampler


def as_labels(labels: Sequence[int] | Tensor) -> Tensor:
    """(N,) int64 labels on the CPU; rejects empty or negative labels."""
    t = torch.as_tensor(labels, dtype=torch.int64).flatten().cpu()
    if t.numel() == 0:
        raise ValueError("a sampler needs at least one label")
    if (t < 0).any():
        raise ValueError("labels must be >= 0")
    return t


class ShardedSampler(Sampler[int]):
    """Base class. Subclasses implement :meth:`global_indices` (the whole epoch's draw, every rank
    computes the same one) and may override ``num_samples_total`` (default: the dataset size).

    Args:
        num_samples: indices per epoch over all ranks (default: ``dataset_size``).
        num_replicas, rank: DDP world size and this process's rank (default: single process).
        seed: base seed; the epoch's generator is seeded with ``seed + epoch``.
        drop_last: drop the tail so every rank gets the same count (else pad by wrapping around).
    """

    def __init__(self, dataset_size: int, *, num_samples: int | None = None, num_replicas: int = 1,
                 rank: int = 0, seed: int = 0, drop_last: bool = False) -> None:
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"need num_replicas >= 1 and 0 <= rank < num_replicas, got {num_replicas=}, {rank=}")
        self.dataset_size = int(dataset_size)
        self.total = int(num_samples) if num_samples is not None else self.dataset_size
        if self.total <= 0:
            raise ValueError(f"num_samples must be positive, got {self.total}")
        self.num_replicas, self.rank, self.seed, self.drop_last = num_replicas, rank, int(seed), drop_last
        self.epoch = 0
        if drop_last:
            self.per_rank = self.total // num_replicas
        else:
            self.per_rank = math.ceil(self.total / num_replicas)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def generator(self) -> torch.Generator:
        return torch.Generator().manual_seed(self.seed + self.epoch)

    def global_indices(self, generator: torch.Generator) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def __iter__(self) -> Iterator[int]:
        indices = self.global_indices(self.generator())
        if indices.numel() != self.total:
            raise RuntimeError(f"{type(self).__name__} drew {indices.numel()} indices, expected {self.total}")
        padded = self.per_rank * self.num_replicas
        if padded > indices.numel():  # wrap around so every rank gets the same number
            repeats = math.ceil(padded / indices.numel())
            indices = indices.repeat(repeats)
        indices = indices[:padded]
        return iter(indices[self.rank::self.num_replicas].tolist())

    def __len__(self) -> int:
        return self.per_rank


class RandomSampler(ShardedSampler):
    """Instance-balanced sampling: a fresh permutation of the dataset each epoch."""

    def global_indices(self, generator: torch.Generator) -> Tensor:
        perm = torch.randperm(self.dataset_size, generator=generator)
        if self.total <= self.dataset_size:
            return perm[: self.total]
        extra = torch.randint(self.dataset_size, (self.total - self.dataset_size,), generator=generator)
        return torch.cat([perm, extra])


class SequentialShardSampler(ShardedSampler):
    """Evaluation: each rank takes every ``num_replicas``-th index, without padding, so that gathering
    the shards reproduces the dataset exactly once."""

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, self.dataset_size, self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, self.dataset_size, self.num_replicas))
