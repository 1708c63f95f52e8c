"""Balanced Softmax (Ren et al., "Balanced Meta-Softmax for Long-Tailed Visual Recognition",
NeurIPS 2020, Eq. 4): cross-entropy of the logits shifted by the log training prior,

    L(z, y) = -log( n_y exp(z_y) / sum_j n_j exp(z_j) ) = CE(z + log n, y).

Only ratios of counts matter: adding log(sum n) to every logit leaves the softmax unchanged, so we
use the normalised prior log p. Test time uses the plain logits z.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import ClassCountLoss, Reduction, as_class_counts, check_logits_target, check_reduction, reduce_loss
from .registry import register_loss

ZeroCounts = Literal["error", "absent"]


def log_prior(class_counts: Sequence[float] | Tensor, zero_counts: ZeroCounts = "error") -> Tensor:
    """log p_j = log(n_j / sum n), shape (C,), float64. Zero counts give -inf (only with 'absent')."""
    if zero_counts not in ("error", "absent"):
        raise ValueError(f"zero_counts must be 'error' or 'absent', got {zero_counts!r}")
    counts = as_class_counts(class_counts, allow_zero=(zero_counts == "absent"))
    return torch.log(counts / counts.sum())


def balanced_softmax_loss(logits: Tensor, target: Tensor, class_counts: Sequence[float] | Tensor,
                          reduction: Reduction = "mean", zero_counts: ZeroCounts = "error") -> Tensor:
    """Functional Balanced Softmax. logits (B, C), target (B,) int64, class_counts (C,)."""
    # counts go straight to float64: torch.as_tensor(list of floats) would round them to float32 first
    prior = log_prior(class_counts, zero_counts)
    check_logits_target(logits, target, prior.numel())
    absent = bool(torch.isinf(prior).any())  # decided on the CPU copy: no device sync per call
    per_sample = _shifted_cross_entropy(logits, target, prior.to(logits.device, logits.dtype), absent)
    return reduce_loss(per_sample, check_reduction(reduction))


def _shifted_cross_entropy(logits: Tensor, target: Tensor, shift: Tensor, absent: bool) -> Tensor:
    """CE(z + shift, y), (B,), for class indices y (B,) or soft targets q (B, C) (then -sum_j q_j log softmax(z +
    shift)_j, Balanced Softmax with mixup's targets). ``absent``: some shift is -inf, so targets must be checked."""
    if absent:
        if target.ndim == 2:
            named = torch.nonzero((target > 0).any(0) & torch.isinf(shift)).flatten().tolist()
        else:
            named = sorted(set(target[torch.isinf(shift[target])].tolist()))
        if named:
            raise ValueError(f"targets name classes {named} whose training count is 0 (treated as absent)")
        if target.ndim == 2:  # 0 * (-inf) would be NaN: absent classes carry no mass, leave them out
            keep = ~torch.isinf(shift)
            return F.cross_entropy((logits + shift)[:, keep], target[:, keep], reduction="none")
    return F.cross_entropy(logits + shift, target, reduction="none")


@register_loss("balanced_softmax")
class BalancedSoftmaxLoss(ClassCountLoss):
    """Balanced Softmax as an ``nn.Module``.

    Args:
        class_counts: (C,) training samples per class.
        reduction: 'mean' | 'sum' | 'none'.
        zero_counts: 'error' (default) rejects classes without training samples; 'absent' gives them
            log prior -inf, so they take no probability mass in training and a target naming one is
            an error. Their logits receive zero gradient.
    """

    def __init__(self, class_counts: Sequence[float] | Tensor, *, reduction: Reduction = "mean",
                 zero_counts: ZeroCounts = "error") -> None:
        if zero_counts not in ("error", "absent"):
            raise ValueError(f"zero_counts must be 'error' or 'absent', got {zero_counts!r}")
        super().__init__(class_counts, reduction=reduction, allow_zero=(zero_counts == "absent"))
        self.zero_counts = zero_counts
        self.register_buffer("log_prior", log_prior(self.class_counts, zero_counts))  # float64; cast per call
        self.has_absent = bool(torch.isinf(self.log_prior).any())

    def per_sample(self, logits: Tensor, target: Tensor) -> Tensor:
        return _shifted_cross_entropy(logits, target, self.log_prior.to(logits.dtype), self.has_absent)

    def per_sample_soft(self, logits: Tensor, probs: Tensor) -> Tensor:
        return self.per_sample(logits, probs)  # CE(z + log p, q)
