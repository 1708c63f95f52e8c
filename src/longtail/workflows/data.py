"""`longtail data stats DATASET`: the training split's class counts, shot groups and a histogram.
`longtail data check DATASET`: how many and which images are missing or unreadable, per split."""

from __future__ import annotations

import inspect
import os
from pathlib import Path

from rich.console import Console
from rich.table import Table

from ..config import ConfigError, TrainConfig, load_config
from ..data import DATASETS
from ..data.check import SplitReport, check_split
from ..evaluation import shot_groups
from ..evaluation.plots import plot_class_histogram
from . import build

console = Console(highlight=False)


def _load(dataset: str, overrides: list[str]) -> TrainConfig:
    if dataset.endswith((".yaml", ".yml")):
        cfg = load_config(TrainConfig, dataset, overrides)
    else:
        cfg = load_config(TrainConfig, None, [f"dataset={dataset}", *overrides])
    # File-based datasets: stats reads only the split lists, and check reports missing files itself,
    # so neither should stop at the existence check that training runs.
    params = inspect.signature(DATASETS.get(cfg.dataset)).parameters if cfg.dataset in DATASETS else {}
    if "check_files" in params and "check_files" not in cfg.dataset_options:
        cfg.dataset_options = {**cfg.dataset_options, "check_files": False}
    return cfg


def run_stats(dataset: str, overrides: list[str], plot: str | None = None) -> dict:
    cfg = _load(dataset, overrides)
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


def run_check(dataset: str, overrides: list[str], *, workers: int | None = None, exists_only: bool = False,
              limit: int = 10) -> dict:
    """Check every split of a file-based dataset; returns {"ok": bool, "splits": {split: counts}}."""
    cfg = _load(dataset, overrides)
    data = build.build_data(cfg)
    splits: dict[str, object] = {}
    for split in ("train", "val", "test"):
        ds = getattr(data, split)
        if not hasattr(ds, "paths"):
            console.print(f"{data.name} is held in memory (no image files): nothing to check")
            return {"ok": True, "splits": {}}
        if not any(ds.paths is other.paths for other in splits.values()):  # iNaturalist: val is test
            splits[split] = ds
    workers = min(8, os.cpu_count() or 1) if workers is None else workers
    reports: list[SplitReport] = []
    for split, ds in splits.items():
        console.print(f"checking {split}: {len(ds.paths):,} images under {ds.root}"
                      + ("" if exists_only else f" (decoding each, {workers} workers)"))
        reports.append(check_split(split, ds, decode=not exists_only, num_workers=workers))
    table = Table(title=f"{data.name}: missing and unreadable images")
    for col in ("split", "images", "missing", "unreadable", "root"):
        table.add_column(col, justify="left" if col in ("split", "root") else "right")
    for r in reports:
        table.add_row(r.split, f"{r.total:,}", f"{len(r.missing):,}",
                      f"{len(r.unreadable):,}" if r.decoded else "not checked", r.root)
    console.print(table)
    for r in reports:
        for path in r.missing[:limit]:
            console.print(f"  {r.split}: missing     {path}")
        for path, reason in r.unreadable[:limit]:
            console.print(f"  {r.split}: unreadable  {path}  ({reason})")
        hidden = max(len(r.missing) - limit, 0) + max(len(r.unreadable) - limit, 0)
        if hidden:
            console.print(f"  {r.split}: ... and {hidden:,} more (raise --limit to list them)")
    ok = all(r.ok for r in reports)
    console.print("all images present" + ("" if exists_only else " and readable") if ok else
                  "[bold red]problems found[/]: fix or remove these files (or fix data_root) before training")
    return {"ok": ok, "splits": {r.split: {"images": r.total, "missing": len(r.missing),
                                           "unreadable": len(r.unreadable)} for r in reports}}


__all__ = ["run_stats", "run_check", "ConfigError"]
