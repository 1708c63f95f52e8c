"""Classification metrics of the long-tail literature (Liu et al. 2019, OLTR): overall top-1, mean
per-class accuracy, and the mean per-class accuracy of the many- (> many), medium- (few..many) and
few-shot (< few) classes, grouped by training count."""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor


def shot_groups(train_counts: Sequence[int] | Tensor, many: int = 100, few: int = 20) -> dict[str, list[int]]:
    """Class indices of each group: many (n > many), medium (few <= n <= many), few (n < few)."""
    counts = torch.as_tensor(train_counts).tolist()
    return {"many": [c for c, n in enumerate(counts) if n > many],
            "medium": [c for c, n in enumerate(counts) if few <= n <= many],
            "few": [c for c, n in enumerate(counts) if n < few]}


def shot_accuracy(predictions: Sequence[int] | Tensor, targets: Sequence[int] | Tensor,
                  train_counts: Sequence[int] | Tensor, many: int = 100, few: int = 20) -> dict:
    """Accuracies in [0, 1].

    Args:
        predictions: (N,) predicted class per test sample (or (N, C) scores, argmax taken).
        targets: (N,) true class.
        train_counts: (C,) training samples per class (defines the shot groups).

    Returns a dict with ``top1`` (over samples), ``mean_class`` (over classes with test samples),
    ``many`` / ``medium`` / ``few`` (mean per-class accuracy of each group; NaN for an empty group),
    ``per_class`` (list of C floats, NaN where a class has no test sample) and ``group_sizes``.
    """
    predictions, targets = torch.as_tensor(predictions), torch.as_tensor(targets).long()
    if predictions.ndim == 2:
        predictions = predictions.argmax(dim=1)
    predictions = predictions.long()
    if predictions.shape != targets.shape or targets.ndim != 1:
        raise ValueError(f"predictions {tuple(predictions.shape)} and targets {tuple(targets.shape)} must be (N,)")
    num_classes = len(train_counts)
    if targets.numel() and (targets.min() < 0 or targets.max() >= num_classes):
        raise ValueError(f"targets must lie in [0, {num_classes}) (the length of train_counts)")
    correct = (predictions == targets).double()
    hits = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, targets, correct)
    totals = torch.zeros(num_classes, dtype=torch.float64).index_add_(0, targets, torch.ones_like(correct))
    per_class = torch.where(totals > 0, hits / totals.clamp_min(1), torch.full_like(hits, math.nan))

    def mean_over(classes: list[int]) -> float:
        vals = per_class[classes] if classes else torch.empty(0, dtype=torch.float64)
        vals = vals[~torch.isnan(vals)]
        return float(vals.mean()) if vals.numel() else math.nan

    groups = shot_groups(train_counts, many, few)
    return {
        "top1": float(correct.mean()) if correct.numel() else math.nan,
        "mean_class": mean_over(list(range(num_classes))),
        "many": mean_over(groups["many"]),
        "medium": mean_over(groups["medium"]),
        "few": mean_over(groups["few"]),
        "per_class": per_class.tolist(),
        "group_sizes": {k: len(v) for k, v in groups.items()},
    }
