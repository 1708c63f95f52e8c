"""Training samplers by name for the CLI. A factory takes ``labels`` (N,) and explicit keyword arguments
(``num_replicas``, ``rank``, ``seed`` and the sampler's own options)."""

from __future__ import annotations

from typing import Any, Sequence

from torch import Tensor

from ..registry import Registry
from .base import RandomSampler, ShardedSampler

SAMPLERS: Registry[ShardedSampler] = Registry("sampler")
register_sampler = SAMPLERS.register


@register_sampler("random")
def _random(labels: Sequence[int] | Tensor, *, num_samples: int | None = None, num_replicas: int = 1,
            rank: int = 0, seed: int = 0, drop_last: bool = False) -> ShardedSampler:
    return RandomSampler(len(labels), num_samples=num_samples, num_replicas=num_replicas, rank=rank, seed=seed,
                         drop_last=drop_last)


def create_sampler(name: str, labels: Sequence[int] | Tensor, **kwargs: Any) -> ShardedSampler:
    return SAMPLERS.create(name, labels, **kwargs)
