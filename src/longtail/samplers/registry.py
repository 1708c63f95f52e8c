"""Training samplers by name for the CLI. A factory takes ``labels`` (N,) and explicit keyword arguments
(``num_replicas``, ``rank``, ``seed`` and the sampler's own options)."""

from __future__ import annotations

from typing import Any, Sequence

import torch
from torch import Tensor

from ..registry import Registry
from .base import RandomSampler, ShardedSampler
from .class_balanced import ClassBalancedSampler
from .meta import MetaSampler, MetaSamplerLogits
from .weighted import WeightedSampler, class_power_weights

SAMPLERS: Registry[ShardedSampler] = Registry("sampler")
register_sampler = SAMPLERS.register


@register_sampler("random")
def _random(labels: Sequence[int] | Tensor, *, num_samples: int | None = None, num_replicas: int = 1,
            rank: int = 0, seed: int = 0, drop_last: bool = False) -> ShardedSampler:
    return RandomSampler(len(labels), num_samples=num_samples, num_replicas=num_replicas, rank=rank, seed=seed,
                         drop_last=drop_last)


@register_sampler("repeat_factor")
def _repeat_factor(labels: Sequence[int] | Sequence[Sequence[int]] | Tensor, *,
                   repeat_factors: Sequence[float] | None = None, threshold: float = 0.001, num_replicas: int = 1,
                   rank: int = 0, seed: int = 0, drop_last: bool = False) -> ShardedSampler:
    """LVIS repeat-factor sampling. ``labels``: one label per item, or the labels of each image;
    ``repeat_factors`` (N,) overrides the factors computed with threshold t."""
    from .repeat_factor import RepeatFactorSampler, lvis_repeat_factors

    if repeat_factors is None:
        # a scalar per item (classification) or a list per image (detection)
        per_item = [list(x) if isinstance(x, (list, tuple)) else [int(x)] for x in labels]
        repeat_factors = lvis_repeat_factors(per_item, threshold=threshold)
    return RepeatFactorSampler(repeat_factors, num_replicas=num_replicas, rank=rank, seed=seed, drop_last=drop_last)


@register_sampler("class_balanced")
def _class_balanced(labels: Sequence[int] | Tensor, *, num_samples: int | None = None, num_replicas: int = 1,
                    rank: int = 0, seed: int = 0, drop_last: bool = False) -> ShardedSampler:
    return ClassBalancedSampler(labels, num_samples=num_samples, num_replicas=num_replicas, rank=rank, seed=seed,
                                drop_last=drop_last)


@register_sampler("weighted")
def _weighted(labels: Sequence[int] | Tensor, *, power: float | None = None, class_weights: list[float] | None = None,
              num_samples: int | None = None, num_replicas: int = 1, rank: int = 0, seed: int = 0,
              drop_last: bool = False) -> ShardedSampler:
    """Instance weights n_y^(-power) (0 instance-, 0.5 square-root, 1 class-balanced) or ``class_weights[y]``."""
    if (power is None) == (class_weights is None):
        raise ValueError("sampler 'weighted' needs exactly one of power (e.g. 0.5 for square-root sampling) "
                         "or class_weights (one weight per class)")
    if power is not None:
        weights = class_power_weights(labels, power)
    else:
        labels = torch.as_tensor(labels, dtype=torch.int64)
        table = torch.as_tensor(class_weights, dtype=torch.float64)
        if table.ndim != 1 or table.numel() <= int(labels.max()):
            raise ValueError(f"class_weights needs one weight per class ({int(labels.max()) + 1}), got {table.numel()}")
        weights = table[labels]
    return WeightedSampler(weights, num_samples=num_samples, num_replicas=num_replicas, rank=rank, seed=seed,
                           drop_last=drop_last)


@register_sampler("meta")
def _meta(labels: Sequence[int] | Tensor, *, batch_size: int, init_pow: float = 0.0, num_batches: int | None = None,
          num_replicas: int = 1, rank: int = 0, seed: int = 0) -> MetaSampler:
    """A Meta Sampler over fresh :class:`MetaSamplerLogits` (reach them as ``sampler.logits``)."""
    counts = torch.bincount(torch.as_tensor(labels, dtype=torch.int64))
    return MetaSampler(labels, MetaSamplerLogits(counts, init_pow=init_pow), batch_size=batch_size,
                       num_batches=num_batches, num_replicas=num_replicas, rank=rank, seed=seed)


@register_sampler("square_root")
def _square_root(labels: Sequence[int] | Tensor, *, q: float = 0.5, num_samples: int | None = None,
                 num_replicas: int = 1, rank: int = 0, seed: int = 0, drop_last: bool = False) -> ShardedSampler:
    """Class j drawn with probability n_j^q / sum n^q (Kang et al. 2020, Eq. 1; q = 1/2 square-root)."""
    from .square_root import SquareRootSampler

    return SquareRootSampler(labels, q=q, num_samples=num_samples, num_replicas=num_replicas, rank=rank, seed=seed,
                             drop_last=drop_last)


@register_sampler("progressive")
def _progressive(labels: Sequence[int] | Tensor, *, total_epochs: int, num_samples: int | None = None,
                 num_replicas: int = 1, rank: int = 0, seed: int = 0, drop_last: bool = False) -> ShardedSampler:
    """Instance- to class-balanced over ``total_epochs`` (Kang et al. 2020, Eq. 2); the CLI passes its epochs."""
    from .progressive import ProgressivelyBalancedSampler

    return ProgressivelyBalancedSampler(labels, total_epochs=total_epochs, num_samples=num_samples,
                                        num_replicas=num_replicas, rank=rank, seed=seed, drop_last=drop_last)


def create_sampler(name: str, labels: Sequence[int] | Tensor, **kwargs: Any) -> ShardedSampler:
    return SAMPLERS.create(name, labels, **kwargs)
