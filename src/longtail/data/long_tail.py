"""Long-tailed class profiles and seeded subsampling (Cui et al. 2019; Cao et al. 2019).

``long_tailed_counts`` returns the per-class counts of the literature, head = class 0:
    exp:  n_i = int(n_max * (1/IF) ** (i / (C - 1)))   (CIFAR-10-LT IF100: 12,406 images)
    step: the first ``C - int(C * minority)`` classes keep n_max, the rest int(n_max / IF).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, Sequence

import torch
from torch import Tensor

Profile = Literal["exp", "step"]


def long_tailed_counts(num_classes: int, n_max: int, imbalance_factor: float, profile: Profile = "exp",
                       minority_fraction: float = 0.5) -> list[int]:
    """Per-class image counts of a long-tailed split (class 0 is the head)."""
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if n_max < 1:
        raise ValueError(f"n_max must be >= 1, got {n_max}")
    if not math.isfinite(imbalance_factor) or imbalance_factor < 1:
        raise ValueError(f"imbalance_factor is n_max / n_min and must be a finite number >= 1, got {imbalance_factor}")
    if profile == "exp":
        # Same float expression as the reference CIFAR-LT code, so totals match to the image.
        ratio = 1.0 / imbalance_factor
        counts = [int(n_max * ratio ** (i / (num_classes - 1.0))) for i in range(num_classes)]
    elif profile == "step":
        minority = int(num_classes * minority_fraction)
        counts = [n_max] * (num_classes - minority) + [int(n_max / imbalance_factor)] * minority
    else:
        raise ValueError(f"profile must be 'exp' or 'step', got {profile!r}")
    empty = [c for c, n in enumerate(counts) if n == 0]
    if empty:
        raise ValueError(f"imbalance_factor {imbalance_factor:g} with n_max {n_max} leaves class(es) {empty} without "
                         f"a training image (n_min = n_max / imbalance_factor < 1): lower imbalance_factor to at most "
                         f"{n_max} or raise n_max to at least {math.ceil(imbalance_factor)}")
    return counts


@dataclass(frozen=True)
class LongTailedSplit:
    """Indices into a balanced source: the long-tailed training subset and a balanced validation
    split drawn from the images the subsampling left over (never from the test set)."""

    train: Tensor  # (N_train,) int64
    val: Tensor  # (C * val_per_class,) int64
    class_counts: list[int]


def long_tailed_split(labels: Sequence[int] | Tensor, counts: Sequence[int], *, val_per_class: int = 0,
                      seed: int = 0, partial_val: bool = False) -> LongTailedSplit:
    """Draw, per class c, ``counts[c]`` training and ``val_per_class`` validation indices at random
    (seeded: the reference code does not seed, and users report 1.5-point swings from it).

    The training draw comes first and never depends on ``val_per_class``. ``partial_val``: a class
    with fewer than ``val_per_class`` images left over gives what is left (CIFAR-10-LT's head class
    keeps all 5,000 of its images) instead of an error."""
    labels = torch.as_tensor(labels, dtype=torch.int64)
    generator = torch.Generator().manual_seed(seed)
    train, val = [], []
    for c, n in enumerate(counts):
        pool = torch.nonzero(labels == c).flatten()
        pool = pool[torch.randperm(pool.numel(), generator=generator)]
        if pool.numel() < n or (pool.numel() < n + val_per_class and not partial_val):
            raise ValueError(f"class {c} has {pool.numel()} images, fewer than the {n} training + "
                             f"{val_per_class} validation images asked for; lower n_max or val_per_class")
        train.append(pool[:n])
        val.append(pool[n:n + val_per_class])
    return LongTailedSplit(torch.cat(train), torch.cat(val), [int(n) for n in counts])
