"""Metrics of a model's scores beyond top-1: top-k accuracy, expected calibration error (overall and per
shot group), the confusion matrix and per-class precision / recall. Pure functions of logits (N, C) and
targets (N,).

ECE (Guo et al. 2017; the form MiSLAS, Zhong et al. CVPR 2021, reports for long-tailed recognition):
samples are binned by confidence (the top softmax probability) into ``num_bins`` equal-width bins over
[0, 1]; ECE = sum_b |B_b| / N * |acc(B_b) - conf(B_b)|, in [0, 1]. The per-group ECE of the many-,
medium- and few-shot classes bins the samples whose true class lies in the group.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from .shot_accuracy import shot_groups


def topk_accuracy(logits: Tensor, targets: Tensor, k: int = 5) -> float:
    """Fraction of samples whose target is among the ``k`` highest scores (NaN when k > C)."""
    if logits.ndim != 2 or logits.shape[0] != targets.shape[0]:
        raise ValueError(f"logits (N, C) and targets (N,) must agree, got {tuple(logits.shape)} and {tuple(targets.shape)}")
    if k > logits.shape[1] or targets.numel() == 0:
        return math.nan
    top = logits.topk(k, dim=1).indices
    return float((top == targets[:, None]).any(dim=1).double().mean())


def _binned_confidence(logits: Tensor, targets: Tensor, num_bins: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per confidence bin: sample count, sum of confidences, number correct (float64)."""
    probs = logits.double().softmax(dim=1)
    confidence, predicted = probs.max(dim=1)
    correct = (predicted == targets).double()
    # bin b holds confidences in (b / B, (b + 1) / B]; confidence is > 0, so every sample has a bin
    bins = (confidence * num_bins).ceil().long().clamp(1, num_bins) - 1
    count = torch.zeros(num_bins, dtype=torch.float64).index_add_(0, bins, torch.ones_like(confidence))
    conf_sum = torch.zeros(num_bins, dtype=torch.float64).index_add_(0, bins, confidence)
    acc_sum = torch.zeros(num_bins, dtype=torch.float64).index_add_(0, bins, correct)
    return count, conf_sum, acc_sum


def expected_calibration_error(logits: Tensor, targets: Tensor, num_bins: int = 15) -> float:
    """ECE of the softmax of ``logits`` (NaN for no sample)."""
    if targets.numel() == 0:
        return math.nan
    _, conf_sum, acc_sum = _binned_confidence(logits, targets, num_bins)
    return float((conf_sum - acc_sum).abs().sum() / targets.numel())


def calibration_bins(logits: Tensor, targets: Tensor, num_bins: int = 15) -> dict[str, Tensor]:
    """The reliability diagram's data, in the bins :func:`expected_calibration_error` uses: per bin
    ``(b / B, (b + 1) / B]`` of softmax confidence, the sample ``count``, the mean ``confidence`` and the
    ``accuracy`` (NaN for an empty bin). ECE = sum_b count_b / N * |accuracy_b - confidence_b|."""
    count, conf_sum, acc_sum = _binned_confidence(logits, targets, num_bins)
    return {"count": count.long(), "confidence": conf_sum / count, "accuracy": acc_sum / count}


def calibration_by_group(logits: Tensor, targets: Tensor, train_counts: Sequence[int] | Tensor, many: int = 100,
                         few: int = 20, num_bins: int = 15) -> dict[str, float]:
    """``ece`` over all samples and ``ece_many`` / ``ece_medium`` / ``ece_few`` over the samples of each
    shot group's classes (NaN for an empty group)."""
    out = {"ece": expected_calibration_error(logits, targets, num_bins)}
    for group, classes in shot_groups(train_counts, many, few).items():
        member = torch.isin(targets, torch.tensor(classes, dtype=targets.dtype))
        out[f"ece_{group}"] = expected_calibration_error(logits[member], targets[member], num_bins)
    return out


def confusion_matrix(predictions: Tensor, targets: Tensor, num_classes: int) -> Tensor:
    """(C, C) int64 counts: row = true class, column = predicted class."""
    index = targets.long() * num_classes + predictions.long()
    return torch.bincount(index, minlength=num_classes * num_classes).view(num_classes, num_classes)


def precision_recall(confusion: Tensor) -> tuple[Tensor, Tensor]:
    """Per-class precision (of the predictions of c, the fraction that are c) and recall (= per-class
    accuracy), float64, NaN where undefined (nothing predicted as c / no sample of c)."""
    confusion = confusion.double()
    hits = confusion.diagonal()
    predicted, actual = confusion.sum(dim=0), confusion.sum(dim=1)
    nan = torch.full_like(hits, math.nan)
    return (torch.where(predicted > 0, hits / predicted.clamp_min(1), nan),
            torch.where(actual > 0, hits / actual.clamp_min(1), nan))


def score_logits(logits: Tensor, targets: Tensor, train_counts: Sequence[int] | Tensor, many: int = 100,
                 few: int = 20, probability_scale: float = 1.0) -> dict:
    """Everything longtail reports about a split from its logits: :func:`shot_accuracy` (top-1,
    mean per-class, many / medium / few, per-class), ``top5``, ``ece`` and ``ece_many`` / ``_medium`` /
    ``_few``, and ``num_samples``. The ECE is of softmax(``probability_scale`` * logits) (the loss's
    ``probability_scale``: LDAM's s for cosine logits, else 1)."""
    from .shot_accuracy import shot_accuracy

    metrics = shot_accuracy(logits.argmax(1), targets, train_counts, many=many, few=few)
    metrics["top5"] = topk_accuracy(logits, targets, 5)
    metrics.update(calibration_by_group(logits * probability_scale, targets, train_counts, many, few))
    metrics["num_samples"] = int(targets.numel())
    return metrics


def write_prediction_reports(out_dir, logits: Tensor, targets: Tensor, class_names: Sequence[str],
                             prefix: str = "test", plot_max_classes: int = 100, weights_epoch: int | None = None,
                             logits_only: bool = False, probability_scale: float = 1.0) -> list:
    """Write ``<prefix>_logits.npz`` (logits, targets), ``<prefix>_confusion_matrix.csv`` (rows = true class),
    ``<prefix>_per_class.csv`` (name, support, precision, recall), ``<prefix>_calibration.csv`` and
    ``<prefix>_reliability.png`` (the reliability diagram, 15 confidence bins) and, for up to ``plot_max_classes``
    classes, ``<prefix>_confusion_matrix.png``. ``weights_epoch``: the epoch of the weights that gave
    the logits, saved with them (``longtail posthoc`` reuses logits of the weights it corrects only).
    ``logits_only``: just the .npz. The logits are saved as the model gave them; the calibration files use
    softmax(``probability_scale`` * logits), as :func:`score_logits` does. Returns the paths written."""
    import csv
    from pathlib import Path

    import numpy as np

    out_dir = Path(out_dir)
    num_classes = logits.shape[1]
    conf = confusion_matrix(logits.argmax(1), targets, num_classes)
    precision, recall = precision_recall(conf)
    paths = [out_dir / f"{prefix}_logits.npz", out_dir / f"{prefix}_confusion_matrix.csv", out_dir / f"{prefix}_per_class.csv"]
    np.savez_compressed(paths[0], logits=logits.float().numpy(), targets=targets.numpy(),
                        weights_epoch=-1 if weights_epoch is None else weights_epoch)
    if logits_only:
        return paths[:1]
    with open(paths[1], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["true \\ predicted", *class_names])
        for name, row in zip(class_names, conf.tolist()):
            writer.writerow([name, *row])
    with open(paths[2], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["class", "name", "support", "precision", "recall"])
        for c, name in enumerate(class_names):
            writer.writerow([c, name, int(conf[c].sum()), f"{precision[c]:.6f}", f"{recall[c]:.6f}"])
    bins = calibration_bins(logits * probability_scale, targets)
    num_bins = len(bins["count"])
    paths.append(out_dir / f"{prefix}_calibration.csv")
    with open(paths[-1], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["bin", "confidence_from", "confidence_to", "count", "mean_confidence", "accuracy"])
        for b in range(num_bins):
            writer.writerow([b, f"{b / num_bins:.6f}", f"{(b + 1) / num_bins:.6f}", int(bins["count"][b]),
                             f"{bins['confidence'][b]:.6f}", f"{bins['accuracy'][b]:.6f}"])
    from .plots import plot_confusion_matrix, plot_reliability_diagram
    paths.append(plot_reliability_diagram(bins, expected_calibration_error(logits * probability_scale, targets),
                                          out_dir / f"{prefix}_reliability.png"))
    if num_classes <= plot_max_classes:
        paths.append(plot_confusion_matrix(conf, class_names, out_dir / f"{prefix}_confusion_matrix.png"))
    return paths
