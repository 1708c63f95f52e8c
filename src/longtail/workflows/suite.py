"""The grid of a `longtail bench` suite: its methods, and one run per (imbalance factor, seed, method)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..config import PosthocConfig, TrainConfig


@dataclass(frozen=True)
class MethodSpec:
    name: str
    label: str
    config: Path
    kind: str  # "train" | "posthoc"
    stage1: str | None = None
    overrides: tuple[str, ...] = ()
    seeds: tuple[int, ...] | None = None  # a subset of the suite's seeds (None: all of them)


@dataclass(frozen=True)
class Suite:
    name: str
    title: str
    path: Path
    output_dir: Path
    imbalance_factors: tuple[float, ...]
    seeds: tuple[int, ...]
    overrides: tuple[str, ...]
    methods: tuple[MethodSpec, ...]

    @property
    def num_runs(self) -> int:
        return len(self.imbalance_factors) * sum(len(m.seeds or self.seeds) for m in self.methods)


@dataclass
class Run:
    """One cell of the grid, with its fully resolved config."""

    imbalance_factor: float
    seed: int
    method: MethodSpec
    config: TrainConfig | PosthocConfig
    run_dir: Path
    stage1_dir: Path | None = None
    status: str = "pending"  # finished | partial | pending | failed
    error: str | None = None
    seconds: float | None = None


def if_tag(imbalance_factor: float) -> str:
    return f"{imbalance_factor:g}"
