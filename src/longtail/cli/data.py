"""`longtail data stats DATASET`: the training split's class counts, shot groups and a histogram."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..evaluation import shot_groups
from ..evaluation.plots import plot_class_histogram
from . import build
from .config import ConfigError, TrainConfig, load_config

console = Console(highlight=False)


def run_stats(dataset: str, overrides: list[str], plot: str | None = None) -> dict:
    if dataset.endswith((".yaml", ".yml")):
        cfg = load_config(TrainConfig, dataset, overrides)
    else:
        cfg = load_config(TrainConfig, None, [f"dataset={dataset}", *overrides])
    cfg.augment = False if cfg.augment is None else cfg.augment
    data = build.build_data(cfg)
    counts = data.class_counts
    groups = shot_groups(counts, cfg.many_threshold, cfg.few_threshold)
    table = Table(title=f"{data.name}: {sum(counts):,} training images, {len(counts)} classes, "
                        f"imbalance {max(counts) / max(min(counts), 1):.1f}")
    for col, justify in (("class", "right"), ("name", "left"), ("train", "right"), ("group", "left")):
        table.add_column(col, justify=justify)
    group_of = {c: g for g, cs in groups.items() for c in cs}
    order = sorted(range(len(counts)), key=lambda c: -counts[c])
    shown = order if len(order) <= 40 else order[:20] + order[-20:]
    for i, c in enumerate(shown):
        if len(order) > 40 and i == 20:
            table.add_row("...", f"({len(order) - 40} classes)", "", "")
        table.add_row(str(c), data.class_names[c] if c < len(data.class_names) else "", f"{counts[c]:,}", group_of[c])
    console.print(table)
    console.print(f"many (> {cfg.many_threshold}) / medium / few (< {cfg.few_threshold}) classes: "
                  f"{len(groups['many'])} / {len(groups['medium'])} / {len(groups['few'])};  "
                  f"val {len(data.val):,} images, test {len(data.test):,} images")
    if plot:
        path = plot_class_histogram(counts, Path(plot), title=data.name, many=cfg.many_threshold, few=cfg.few_threshold)
        console.print(f"histogram -> {path}")
    return {"class_counts": counts, "groups": {k: len(v) for k, v in groups.items()}}


__all__ = ["run_stats", "ConfigError"]
