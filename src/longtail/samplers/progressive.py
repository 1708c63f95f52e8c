"""Progressively-balanced sampling (Kang et al., "Decoupling Representation and Classifier for
Long-Tailed Recognition", ICLR 2020, Eq. 2): at epoch t of T the class probabilities move linearly
from instance-balanced to class-balanced,

    p_j(t) = (1 - t / T) p_j^IB + (t / T) p_j^CB,   p^IB_j = n_j / N,  p^CB_j = 1 / C'

(C' the number of non-empty classes); an instance of the drawn class is then uniform.
"""

from __future__ import annotations

from typing import Sequence

from torch import Tensor

from .square_root import ClassProbabilitySampler, class_probabilities


class ProgressivelyBalancedSampler(ClassProbabilitySampler):
    """Args:
        labels: (N,) training labels.
        total_epochs: T, the length of the run (``longtail train`` passes its ``epochs``).
        num_samples, num_replicas, rank, seed, drop_last: see :class:`ShardedSampler`.

    The epoch t comes from :meth:`set_epoch` (0-based), so the last epoch uses t = T - 1.
    """

    def __init__(self, labels: Sequence[int] | Tensor, *, total_epochs: int, num_samples: int | None = None,
                 num_replicas: int = 1, rank: int = 0, seed: int = 0, drop_last: bool = False) -> None:
        if total_epochs < 1:
            raise ValueError(f"total_epochs must be >= 1, got {total_epochs}")
        super().__init__(labels, num_samples=num_samples, num_replicas=num_replicas, rank=rank, seed=seed,
                         drop_last=drop_last)
        self.total_epochs = int(total_epochs)
        self.instance_balanced = class_probabilities(self.index.counts, 1.0)
        self.class_balanced = class_probabilities(self.index.counts, 0.0)

    def epoch_probabilities(self) -> Tensor:
        t = min(self.epoch / self.total_epochs, 1.0)  # epochs past T stay class-balanced
        return (1 - t) * self.instance_balanced + t * self.class_balanced
