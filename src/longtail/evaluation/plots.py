"""Plots saved into run directories (matplotlib, Agg backend: no display needed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def plot_per_class_accuracy(curves: Mapping[str, Sequence[float]], train_counts: Sequence[int], path: str | Path,
                            title: str = "Per-class accuracy vs training count", many: int = 100, few: int = 20) -> Path:
    """One line per method: test accuracy of each class against its training count (log x-axis),
    classes ordered by count; the shot-group boundaries are drawn as vertical lines."""
    order = sorted(range(len(train_counts)), key=lambda c: -train_counts[c])
    xs = [train_counts[c] for c in order]
    fig, ax = plt.subplots(figsize=(7, 4))
    for label, acc in curves.items():
        ax.plot(xs, [100 * acc[c] for c in order], marker="o", markersize=3, label=label)
    for boundary in (many, few):
        ax.axvline(boundary, color="grey", linestyle=":", linewidth=1)
    ax.set_xscale("log")
    ax.set_xlabel("training images of the class (log)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_class_histogram(train_counts: Sequence[int], path: str | Path, title: str = "Training images per class",
                         many: int = 100, few: int = 20) -> Path:
    """Bar chart of class counts sorted from head to tail, coloured by shot group."""
    counts = sorted(train_counts, reverse=True)
    colours = ["tab:blue" if n > many else "tab:orange" if n >= few else "tab:red" for n in counts]
    fig, ax = plt.subplots(figsize=(7, 3.5))
    ax.bar(range(len(counts)), counts, color=colours, width=1.0)
    ax.set_yscale("log")
    ax.set_xlabel("class rank")
    ax.set_ylabel("training images (log)")
    ax.set_title(f"{title} (blue many > {many}, orange medium, red few < {few})")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_confusion_matrix(confusion, class_names: Sequence[str], path: str | Path) -> Path:
    """Row-normalised confusion matrix (each true class sums to 1), classes in label order."""
    import numpy as np

    conf = np.asarray(confusion, dtype=np.float64)
    rows = conf / np.maximum(conf.sum(axis=1, keepdims=True), 1)
    n = len(class_names)
    fig, ax = plt.subplots(figsize=(min(2 + 0.35 * n, 14), min(1.5 + 0.35 * n, 13)))
    im = ax.imshow(rows, cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        ax.set_xticks(range(n), class_names, rotation=90, fontsize=7)
        ax.set_yticks(range(n), class_names, fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_reliability_diagram(bins: Mapping[str, Any], ece: float, path: str | Path) -> Path:
    """Accuracy against confidence per confidence bin (:func:`~longtail.evaluation.calibration_bins`): bars
    below the diagonal are over-confident bins; the count of each bin is printed above it."""
    import numpy as np

    count = np.asarray(bins["count"], dtype=np.int64)
    acc = np.nan_to_num(np.asarray(bins["accuracy"], dtype=np.float64))
    conf = np.nan_to_num(np.asarray(bins["confidence"], dtype=np.float64))
    edges = np.linspace(0, 1, len(count) + 1)
    width = edges[1] - edges[0]
    fig, ax = plt.subplots(figsize=(5, 5))
    ax.bar(edges[:-1], acc, width=width, align="edge", edgecolor="black", label="accuracy")
    ax.bar(edges[:-1], conf - acc, bottom=acc, width=width, align="edge", color="tab:red", alpha=0.3, label="gap")
    ax.plot([0, 1], [0, 1], "k--", linewidth=1)
    for left, n, a in zip(edges[:-1], count, acc):
        if n:
            ax.text(left + width / 2, min(a, 0.93) + 0.02, str(n), ha="center", fontsize=6, rotation=90)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("confidence (max softmax probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"reliability diagram, ECE {100 * ece:.2f}%")
    ax.legend(loc="upper left")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_sampling_probability(learned: list[float], initial: list[float], class_counts: list[int], path: Path) -> Path:
    """Learned per-class sampling probability against training count, with the initial,
    instance-balanced (n_c / N) and class-balanced (1 / C) references."""
    order = sorted(range(len(class_counts)), key=lambda c: -class_counts[c])
    xs = [class_counts[c] for c in order]
    total = float(sum(class_counts))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(xs, [learned[c] for c in order], marker="o", markersize=3, label="learned (Meta Sampler)")
    ax.plot(xs, [initial[c] for c in order], linestyle="--", label="initial")
    ax.plot(xs, [n / total for n in xs], linestyle=":", color="grey", label="instance-balanced n_c / N")
    ax.axhline(1 / len(class_counts), linestyle="-.", color="black", linewidth=1, label="class-balanced 1 / C")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training images of the class (log)")
    ax.set_ylabel("probability a draw picks the class (log)")
    ax.set_title("Meta Sampler: learned class sampling probability")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
