"""Square-root sampling (Mahajan et al., ECCV 2018; Kang et al., "Decoupling Representation and
Classifier for Long-Tailed Recognition", ICLR 2020, Eq. 1 with q = 1/2):

    p_j = n_j^q / sum_i n_i^q,

the probability of drawing class j; an instance of the class is then drawn uniformly. q = 1 is
instance-balanced, q = 0 class-balanced, q = 1/2 in between.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .class_balanced import ClassIndexSampler


def class_probabilities(class_counts: Sequence[int] | Tensor, q: float) -> Tensor:
    """(C,) float64 p_j = n_j^q / sum n_i^q (Kang et al. 2020, Eq. 1); empty classes get 0."""
    counts = torch.as_tensor(class_counts, dtype=torch.float64)
    if not 0 <= q <= 1:
        raise ValueError(f"q must lie in [0, 1] (1 instance-balanced, 0.5 square-root, 0 class-balanced), got {q}")
    mass = torch.where(counts > 0, counts.pow(q), torch.zeros_like(counts))  # 0^0 would give an empty class mass
    return mass / mass.sum()


class ClassProbabilitySampler(ClassIndexSampler):
    """Draws a class from ``class_probabilities`` (rebuilt each epoch by :meth:`epoch_probabilities`),
    then a uniform instance of it, with replacement. Subclasses choose the class distribution.

    Args: see :class:`~longtail.samplers.class_balanced.ClassIndexSampler`.
    """

    def epoch_probabilities(self) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def global_indices(self, generator: torch.Generator) -> Tensor:
        classes = torch.multinomial(self.epoch_probabilities(), self.total, replacement=True, generator=generator)
        return self.index.sample(classes, generator)


class SquareRootSampler(ClassProbabilitySampler):
    """Class j drawn with probability n_j^q / sum n^q (q = 1/2 by default), instance uniform in the class."""

    def __init__(self, labels: Sequence[int] | Tensor, *, q: float = 0.5, num_samples: int | None = None,
                 num_replicas: int = 1, rank: int = 0, seed: int = 0, drop_last: bool = False) -> None:
        super().__init__(labels, num_samples=num_samples, num_replicas=num_replicas, rank=rank, seed=seed,
                         drop_last=drop_last)
        self.q = float(q)
        self.probabilities = class_probabilities(self.index.counts, self.q)

    def epoch_probabilities(self) -> Tensor:
        return self.probabilities
