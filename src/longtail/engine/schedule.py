"""Learning-rate schedules, per iteration: the BALMS recipes' linear warm-up then cosine decay to 0, and the
detection recipes' (BAGS, mmdetection 1x) linear warm-up then steps of 0.1."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR


class WarmupCosine:
    """lr factor at iteration t: linear from ``start_factor`` to 1 over ``warmup`` iterations, then
    0.5 * (1 + cos(pi * (t - warmup) / (total - warmup))). A callable object so it pickles."""

    def __init__(self, total: int, warmup: int = 0, start_factor: float = 0.5) -> None:
        if total <= 0 or not 0 <= warmup < max(total, 1) + 1:
            raise ValueError(f"need total > 0 and 0 <= warmup <= total, got {total=}, {warmup=}")
        self.total, self.warmup, self.start_factor = total, warmup, start_factor

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return self.start_factor + (1 - self.start_factor) * step / self.warmup
        span = max(self.total - self.warmup, 1)
        return 0.5 * (1 + math.cos(math.pi * min(step - self.warmup, span) / span))


def warmup_cosine(optimizer: Optimizer, total_steps: int, warmup_steps: int = 0, start_factor: float = 0.5) -> LambdaLR:
    return LambdaLR(optimizer, WarmupCosine(total_steps, warmup_steps, start_factor))


class StepWarmup:
    """lr factor at iteration t: linear warm-up from 0.001 over ``warmup`` iterations, times 0.1 for
    each entry of ``steps`` (in iterations) already passed. A callable object so it pickles."""

    def __init__(self, steps: list[int], warmup: int) -> None:
        self.steps, self.warmup = sorted(steps), warmup

    def __call__(self, t: int) -> float:
        warm = 0.001 + (1 - 0.001) * t / self.warmup if t < self.warmup else 1.0
        return warm * 0.1 ** sum(t >= s for s in self.steps)
