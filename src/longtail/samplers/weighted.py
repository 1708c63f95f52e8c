"""Sampling with replacement in proportion to per-instance weights, and the usual class-count recipes.

``class_power_weights`` gives the class-frequency family of Mahajan et al. (2018) / Kang et al.
(ICLR 2020, Eq. 1): instance i of class j is drawn with weight n_j^(-q), so class j gets mass
proportional to n_j^(1-q): q = 0 instance-balanced, q = 1/2 square-root, q = 1 class-balanced.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .base import ShardedSampler, as_labels


def class_power_weights(labels: Sequence[int] | Tensor, power: float) -> Tensor:
    """(N,) float64 instance weights n_{y_i}^(-power)."""
    labels = as_labels(labels)
    counts = torch.bincount(labels).double()
    return counts[labels].pow(-float(power))


class WeightedSampler(ShardedSampler):
    """Draws ``num_samples`` indices with replacement, P(i) = weights[i] / sum(weights).

    Args:
        weights: (N,) non-negative finite instance weights, not all zero.
        num_samples: draws per epoch over all ranks (default N).
        num_replicas, rank, seed, drop_last: see :class:`ShardedSampler`.
    """

    def __init__(self, weights: Sequence[float] | Tensor, *, num_samples: int | None = None, num_replicas: int = 1,
                 rank: int = 0, seed: int = 0, drop_last: bool = False) -> None:
        weights = torch.as_tensor(weights, dtype=torch.float64).flatten()
        if weights.numel() == 0 or not torch.isfinite(weights).all() or (weights < 0).any() or weights.sum() <= 0:
            raise ValueError("weights must be a non-empty sequence of finite, non-negative numbers, not all zero")
        super().__init__(weights.numel(), num_samples=num_samples, num_replicas=num_replicas, rank=rank, seed=seed,
                         drop_last=drop_last)
        self.weights = weights / weights.sum()

    def global_indices(self, generator: torch.Generator) -> Tensor:
        return torch.multinomial(self.weights, self.total, replacement=True, generator=generator)
