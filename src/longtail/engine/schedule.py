"""Learning-rate schedules, per iteration: the BALMS recipes' linear warm-up then cosine decay to 0, and linear
warm-up then steps (the detection recipes' (BAGS, mmdetection 1x) x0.1, the LDAM-DRW CIFAR code's x0.01)."""

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


class WarmupStep:
    """lr factor at iteration t: linear from ``start_factor`` to 1 over ``warmup`` iterations, times ``gamma``
    for each of ``milestones`` (iterations) already reached. A callable object so it pickles. The detection
    recipes use the defaults (from 0.001, x0.1); the LDAM-DRW CIFAR code x0.01 at epochs 160 and 180."""

    def __init__(self, milestones: list[int], warmup: int = 0, start_factor: float = 0.001, gamma: float = 0.1) -> None:
        self.milestones, self.warmup, self.start_factor, self.gamma = sorted(milestones), warmup, start_factor, gamma

    def __call__(self, t: int) -> float:
        warm = self.start_factor + (1 - self.start_factor) * t / self.warmup if t < self.warmup else 1.0
        return warm * self.gamma ** sum(t >= m for m in self.milestones)


def warmup_step(optimizer: Optimizer, milestones: list[int], warmup_steps: int = 0, start_factor: float = 0.001,
                gamma: float = 0.1) -> LambdaLR:
    return LambdaLR(optimizer, WarmupStep(milestones, warmup_steps, start_factor, gamma))
