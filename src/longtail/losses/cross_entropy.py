"""Plain softmax cross-entropy behind the same interface as the long-tail losses."""

from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor

from .base import ClassCountLoss, Reduction
from .registry import register_loss


@register_loss("ce")
class CrossEntropyLoss(ClassCountLoss):
    """Softmax cross-entropy, ``-log softmax(z)_y``. The counts are only kept for a uniform interface
    (and to check the number of classes); zero counts are allowed since CE does not use them."""

    def __init__(self, class_counts: Sequence[float] | Tensor, *, reduction: Reduction = "mean") -> None:
        super().__init__(class_counts, reduction=reduction, allow_zero=True)

    def per_sample(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(logits, target, reduction="none")

    def per_sample_soft(self, logits: Tensor, probs: Tensor) -> Tensor:
        return F.cross_entropy(logits, probs, reduction="none")  # -sum_j q_j log softmax(z)_j
