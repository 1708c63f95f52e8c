"""Focal loss (Lin et al., "Focal Loss for Dense Object Detection", ICCV 2017, Eq. 5), softmax form:

    FL(z, y) = -(1 - p_y)^gamma log p_y,   p = softmax(z).

gamma = 0 is cross-entropy. The down-weighting of easy samples is the only long-tail device here;
the class-balanced variant (Cui et al. 2019) multiplies it by per-class weights (class_balanced.py).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import ClassCountLoss, Reduction, check_reduction, reduce_loss
from .registry import register_loss


def check_gamma(gamma: float) -> float:
    if not gamma >= 0:
        raise ValueError(f"the focusing parameter gamma must be >= 0 (0 = cross-entropy), got {gamma}")
    return float(gamma)


def focal_per_sample(logits: Tensor, target: Tensor, gamma: float) -> Tensor:
    """(B,) focal losses of logits (B, C) and targets (B,)."""
    log_p = F.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)  # (B,)
    if gamma == 0:
        return -log_p
    # 1 - p via expm1 keeps precision when p is close to 1; the clamp avoids 0 ** gamma's infinite
    # derivative for gamma < 1 (the true gradient there is 0, which the clamp gives).
    one_minus_p = (-torch.expm1(log_p)).clamp_min(torch.finfo(log_p.dtype).tiny)
    return -one_minus_p.pow(gamma) * log_p


def focal_loss(logits: Tensor, target: Tensor, gamma: float = 2.0, reduction: Reduction = "mean") -> Tensor:
    """Functional focal loss. logits (B, C), target (B,) int64."""
    return reduce_loss(focal_per_sample(logits, target, check_gamma(gamma)), check_reduction(reduction))


@register_loss("focal")
class FocalLoss(ClassCountLoss):
    """Softmax focal loss as an ``nn.Module``.

    Args:
        class_counts: (C,) training samples per class (only the number of classes is used; zero
            counts are allowed).
        gamma: focusing parameter, >= 0 (Lin et al. use 2; 0 is cross-entropy).
        reduction: 'mean' | 'sum' | 'none'.
    """

    def __init__(self, class_counts: Sequence[float] | Tensor, *, gamma: float = 2.0,
                 reduction: Reduction = "mean") -> None:
        super().__init__(class_counts, reduction=reduction, allow_zero=True)
        self.gamma = check_gamma(gamma)

    def per_sample(self, logits: Tensor, target: Tensor) -> Tensor:
        return focal_per_sample(logits, target, self.gamma)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, gamma={self.gamma}"
