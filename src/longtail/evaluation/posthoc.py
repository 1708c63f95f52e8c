"""Post-hoc corrections of a trained classifier, as pure functions, with tau chosen on validation.

- Post-hoc logit adjustment (Menon et al., "Long-Tail Learning via Logit Adjustment", ICLR 2021,
  Eq. 9): predict argmax_j z_j - tau log p_j, p the training class prior.
- tau-normalisation (Kang et al., ICLR 2020, Sec. 4.2): logits x @ (w_j / ||w_j||^tau)^T.

Both have one hyper-parameter tau. :func:`select_tau` scores a grid on the *validation* split
(mean per-class accuracy) and returns the best; the test split is never looked at.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch
from torch import Tensor, nn

from ..losses.balanced_softmax import log_prior
from ..models.heads import tau_normalise
from .shot_accuracy import shot_accuracy


def posthoc_adjusted_logits(logits: Tensor, class_counts: Sequence[float] | Tensor, tau: float = 1.0) -> Tensor:
    """(N, C) logits minus tau log p (Menon et al. 2021, Eq. 9). Counts must all be > 0."""
    if not tau >= 0:
        raise ValueError(f"tau must be >= 0 (1 in Menon et al.), got {tau}")
    prior = log_prior(torch.as_tensor(class_counts))
    if logits.ndim != 2 or logits.shape[1] != prior.numel():
        raise ValueError(f"logits must have shape (N, {prior.numel()}), got {tuple(logits.shape)}")
    return logits - tau * prior.to(logits.device, logits.dtype)


def tau_norm_logits(features: Tensor, weight: Tensor, tau: float) -> Tensor:
    """(N, D) features and a (C, D) linear weight -> (N, C) logits of the tau-normalised classifier
    (no bias, as in Kang et al.'s code)."""
    if features.ndim != 2 or features.shape[1] != weight.shape[1]:
        raise ValueError(f"features must have shape (N, {weight.shape[1]}), got {tuple(features.shape)}")
    return features @ tau_normalise(weight.to(features.dtype), tau).t()


@torch.no_grad()
def correct_linear_head(head: nn.Linear, method: str, tau: float, class_counts: Sequence[float] | Tensor,
                        scale: float = 1.0) -> nn.Linear:
    """Bake a post-hoc correction into a linear head, in place, so that the model's plain logits are the
    corrected ones (what `longtail predict` and `export` apply for a post-hoc run):
    ``tau_norm``: rows w_j / ||w_j||^tau and no bias (:func:`tau_norm_logits`); ``logit_adjust``: bias minus
    tau log p / ``scale`` (:func:`posthoc_adjusted_logits` acts on the logits times the loss's probability
    scale, LDAM's s, so on the head's own output it is tau / s)."""
    if not isinstance(head, nn.Linear):
        raise ValueError(f"post-hoc corrections are baked into a linear head; this model has a {type(head).__name__}")
    if method == "tau_norm":
        head.weight.copy_(tau_normalise(head.weight, tau))
        if head.bias is not None:
            head.bias.zero_()
    elif method == "logit_adjust":
        if head.bias is None:
            raise ValueError("post-hoc logit adjustment goes into the head's bias; this linear head has none")
        if not tau >= 0:
            raise ValueError(f"tau must be >= 0 (1 in Menon et al.), got {tau}")
        prior = log_prior(torch.as_tensor(class_counts))
        head.bias.sub_(tau * prior.to(head.bias.device, head.bias.dtype) / scale)
    else:
        raise ValueError(f"method must be tau_norm or logit_adjust, got {method!r}")
    return head


def tau_grid(start: float = 0.0, stop: float = 2.0, step: float = 0.1) -> list[float]:
    """[start, start + step, ..., stop] (inclusive), rounded to avoid 0.30000000000000004."""
    if not step > 0 or stop < start:
        raise ValueError(f"need step > 0 and stop >= start, got {start=}, {stop=}, {step=}")
    n = int(math.floor((stop - start) / step + 1e-9))
    return [round(start + i * step, 10) for i in range(n + 1)]


def select_tau(logits_for: Callable[[float], Tensor], val_targets: Tensor, class_counts: Sequence[int],
               grid: Sequence[float]) -> tuple[float, dict[float, float]]:
    """Return (best tau, {tau: val mean per-class accuracy}) over ``grid``.

    ``logits_for(tau)`` gives the (N_val, C) validation logits at tau. Ties go to the first (smallest)
    tau of the grid, i.e. to the least correction.
    """
    if len(grid) == 0:
        raise ValueError("the tau grid is empty")
    scores = {float(t): shot_accuracy(logits_for(float(t)).argmax(1), val_targets, class_counts)["mean_class"]
              for t in grid}
    # rounding: accuracies that differ only by float summation noise count as ties
    best = max(scores, key=lambda t: (round(scores[t], 9), -t))
    return best, scores


def tau_grid_edge_note(best: float, grid: Sequence[float]) -> str | None:
    """A warning when the chosen tau sits on an edge of the searched grid, where the validation optimum may
    lie outside it (tau = 0, no correction, is a natural end and is not flagged); None otherwise."""
    if len(grid) < 2:
        return None  # a fixed tau: nothing was searched
    low, high = min(grid), max(grid)
    if best == high:
        return (f"tau {best:g} is the largest value of the grid: the validation optimum may lie above it; "
                f"widen the search with tau_max=... (a validation split without some classes, e.g. CIFAR-LT's "
                f"head class at n_max, also pushes tau up)")
    if best == low and low > 0:
        return f"tau {best:g} is the smallest value of the grid: the optimum may lie below it; lower tau_min"
    return None
