"""Repeat-factor sampling (RFS), the image-level re-sampling LVIS baselines train with.

Gupta, Dollar and Girshick, "LVIS: A Dataset for Large Vocabulary Instance Segmentation", CVPR 2019
(the "repeat factor sampling" of its baselines; detectron2's RepeatFactorTrainingSampler). With f(c)
the fraction of training images that contain category c,

    r(c) = max(1, sqrt(t / f(c))),        r(i) = max_{c in image i} r(c),        t = 0.001,

and image i is seen r(i) times per epoch. A fractional r(i) is rounded stochastically each epoch
(floor(r) + 1 with probability r - floor(r)), so the expected count is exactly r(i).
"""

from __future__ import annotations

import math
from typing import Iterator, Sequence

import torch
from torch import Tensor

from .base import ShardedSampler


def category_repeat_factors(image_fraction: Tensor, threshold: float = 0.001) -> Tensor:
    """r(c) = max(1, sqrt(t / f(c))) for f (C,) the fraction of images holding each class; f = 0 gives r = 1
    (a class no image holds never raises an image's factor)."""
    if threshold <= 0:
        raise ValueError(f"threshold t must be positive, got {threshold}")
    f = torch.as_tensor(image_fraction, dtype=torch.float64)
    r = torch.sqrt(threshold / f.clamp_min(torch.finfo(torch.float64).tiny))
    return torch.where(f > 0, r.clamp_min(1.0), torch.ones_like(r))


def lvis_repeat_factors(image_labels: Sequence[Sequence[int]], *, threshold: float = 0.001,
                        count_unannotated: bool = False) -> Tensor:
    """(N,) float64 repeat factor of each image from the category ids (any integers) it contains.

    f(c) is counted from ``image_labels`` itself: images holding c / images with at least one
    annotation, as detectron2 computes it (its training set drops images without annotations before
    the sampler sees them). ``count_unannotated``: divide by all N images instead. An image without
    annotations gets r = 1."""
    if len(image_labels) == 0:
        raise ValueError("repeat factors need at least one image")
    sets = [set(int(c) for c in labels) for labels in image_labels]
    denominator = len(sets) if count_unannotated else sum(1 for s in sets if s)
    if denominator == 0:
        return torch.ones(len(sets), dtype=torch.float64)
    categories = sorted(set().union(*sets))
    pos = {c: k for k, c in enumerate(categories)}
    counts = torch.zeros(len(categories), dtype=torch.float64)
    for s in sets:
        for c in s:
            counts[pos[c]] += 1
    r_cat = category_repeat_factors(counts / denominator, threshold).tolist()
    return torch.tensor([max((r_cat[pos[c]] for c in s), default=1.0) for s in sets], dtype=torch.float64)


class RepeatFactorSampler(ShardedSampler):
    """Each epoch, index i appears floor(r_i) or floor(r_i) + 1 times (stochastic rounding, mean r_i),
    in a random order; the draw is seeded with ``seed + epoch`` and sharded over ranks.

    Args:
        repeat_factors: (N,) positive factors, e.g. from :func:`lvis_repeat_factors`.
        num_replicas, rank, seed, drop_last: as in :class:`~longtail.samplers.base.ShardedSampler`.

    The epoch length varies with the rounding: ``len(sampler)`` is the current epoch's share, so call
    :meth:`set_epoch` before ``len`` and iteration (the DataLoader asks for ``len`` each epoch).
    """

    def __init__(self, repeat_factors: Sequence[float] | Tensor, *, num_replicas: int = 1, rank: int = 0,
                 seed: int = 0, drop_last: bool = False) -> None:
        r = torch.as_tensor(repeat_factors, dtype=torch.float64).flatten()
        if r.numel() == 0:
            raise ValueError("RepeatFactorSampler needs at least one repeat factor")
        if not torch.isfinite(r).all() or (r <= 0).any():
            raise ValueError("repeat factors must be finite and > 0 (LVIS factors are >= 1)")
        expected = max(1, round(float(r.sum())))
        super().__init__(r.numel(), num_samples=expected, num_replicas=num_replicas, rank=rank, seed=seed,
                         drop_last=drop_last)
        self.repeat_factors = r
        self._cached: tuple[int, Tensor] | None = None

    def global_indices(self, generator: torch.Generator) -> Tensor:
        whole = torch.floor(self.repeat_factors)
        reps = whole + (torch.rand(whole.shape, generator=generator, dtype=torch.float64) < self.repeat_factors - whole)
        indices = torch.repeat_interleave(torch.arange(self.dataset_size), reps.long())
        if indices.numel() == 0:
            raise RuntimeError("this epoch's stochastic rounding kept no image; use repeat factors >= 1")
        return indices[torch.randperm(indices.numel(), generator=generator)]

    def epoch_indices(self) -> Tensor:
        """The whole epoch's draw (all ranks), cached per epoch."""
        if self._cached is None or self._cached[0] != self.epoch:
            self._cached = (self.epoch, self.global_indices(self.generator()))
        return self._cached[1]

    def _per_rank(self, total: int) -> int:
        return total // self.num_replicas if self.drop_last else math.ceil(total / self.num_replicas)

    def __iter__(self) -> Iterator[int]:
        indices = self.epoch_indices()
        padded = self._per_rank(indices.numel()) * self.num_replicas
        if padded > indices.numel():  # wrap around so every rank gets the same number
            indices = indices.repeat(math.ceil(padded / indices.numel()))
        return iter(indices[:padded][self.rank::self.num_replicas].tolist())

    def __len__(self) -> int:
        return self._per_rank(self.epoch_indices().numel())
