"""Class-balanced ("class-aware") sampling (Shen et al., ECCV 2016; cRT of Kang et al., ICLR 2020).

Each draw picks a class uniformly among the classes that have training samples, then an instance of
that class uniformly: P(i) = 1 / (C' * n_{y_i}), with C' the number of non-empty classes.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .base import ShardedSampler, as_labels


class ClassIndex:
    """Instances grouped by class, so that "a uniform instance of class c" is one index lookup.

    ``order`` (N,) holds the dataset indices sorted by class, class c occupying
    ``order[starts[c] : starts[c] + counts[c]]``. Memory: N int64 + 2 C int64.
    """

    def __init__(self, labels: Sequence[int] | Tensor, num_classes: int | None = None) -> None:
        labels = as_labels(labels)
        num_classes = int(labels.max()) + 1 if num_classes is None else int(num_classes)
        if int(labels.max()) >= num_classes:
            raise ValueError(f"labels go up to {int(labels.max())} but num_classes is {num_classes}")
        self.num_classes = num_classes
        self.order = torch.argsort(labels, stable=True)
        self.counts = torch.bincount(labels, minlength=num_classes)
        self.starts = torch.cumsum(self.counts, 0) - self.counts

    def sample(self, classes: Tensor, generator: torch.Generator) -> Tensor:
        """(B,) dataset indices, each a uniform instance of the matching entry of ``classes`` (B,)."""
        counts = self.counts[classes]
        if (counts == 0).any():
            raise ValueError(f"cannot draw from empty classes {sorted(set(classes[counts == 0].tolist()))}")
        offset = (torch.rand(classes.shape, generator=generator, dtype=torch.float64) * counts).long()
        return self.order[self.starts[classes] + torch.minimum(offset, counts - 1)]


class ClassIndexSampler(ShardedSampler):
    """A sampler that draws classes, then a uniform instance of each through a :class:`ClassIndex`;
    subclasses choose how the classes are drawn (:meth:`global_indices`).

    Args:
        labels: (N,) training labels.
        num_samples: draws per epoch over all ranks (default N, so an "epoch" keeps its usual length).
        num_replicas, rank, seed, drop_last: see :class:`ShardedSampler`.
    """

    def __init__(self, labels: Sequence[int] | Tensor, *, num_samples: int | None = None, num_replicas: int = 1,
                 rank: int = 0, seed: int = 0, drop_last: bool = False) -> None:
        self.index = ClassIndex(labels)
        super().__init__(len(self.index.order), num_samples=num_samples, num_replicas=num_replicas, rank=rank,
                         seed=seed, drop_last=drop_last)


class ClassBalancedSampler(ClassIndexSampler):
    """Uniform over (non-empty) classes, then uniform within the class, with replacement.

    Args: see :class:`ClassIndexSampler`.
    """

    def global_indices(self, generator: torch.Generator) -> Tensor:
        classes = torch.nonzero(self.index.counts).flatten()
        picks = torch.randint(len(classes), (self.total,), generator=generator)
        return self.index.sample(classes[picks], generator)
