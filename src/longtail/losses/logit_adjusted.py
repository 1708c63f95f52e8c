"""Logit-adjusted loss (Menon et al., "Long-Tail Learning via Logit Adjustment", ICLR 2021, Eq. 10):

    L(z, y) = CE(z + tau log p, y),   p_j = n_j / sum n.

tau = 1 is Balanced Softmax (Ren et al. 2020). Test time uses the plain logits z. The post-hoc
variant (Eq. 9, z - tau log p at test time after plain training) is in
:mod:`longtail.evaluation.posthoc`.
"""

from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor

from .balanced_softmax import log_prior
from .base import ClassCountLoss, Reduction, check_logits_target, check_reduction, reduce_loss
from .registry import register_loss


def check_tau(tau: float) -> float:
    if not tau >= 0:
        raise ValueError(f"tau must be >= 0 (Menon et al. use 1; 0 is cross-entropy), got {tau}")
    return float(tau)


def logit_adjusted_loss(logits: Tensor, target: Tensor, class_counts: Sequence[float] | Tensor,
                        tau: float = 1.0, reduction: Reduction = "mean") -> Tensor:
    """Functional logit-adjusted cross-entropy. logits (B, C), target (B,), class_counts (C,) > 0."""
    prior = log_prior(class_counts).to(logits.device, logits.dtype)
    check_logits_target(logits, target, prior.numel())
    per_sample = F.cross_entropy(logits + check_tau(tau) * prior, target, reduction="none")
    return reduce_loss(per_sample, check_reduction(reduction))


@register_loss("logit_adjusted")
class LogitAdjustedLoss(ClassCountLoss):
    """Logit-adjusted cross-entropy as an ``nn.Module``.

    Args:
        class_counts: (C,) training samples per class (all > 0).
        tau: strength of the adjustment (1 in the paper).
        reduction: 'mean' | 'sum' | 'none'.
    """

    def __init__(self, class_counts: Sequence[float] | Tensor, *, tau: float = 1.0,
                 reduction: Reduction = "mean") -> None:
        super().__init__(class_counts, reduction=reduction)
        self.tau = check_tau(tau)
        self.register_buffer("log_prior", log_prior(self.class_counts))

    def per_sample(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(logits + self.tau * self.log_prior.to(logits.dtype), target, reduction="none")

    def per_sample_soft(self, logits: Tensor, probs: Tensor) -> Tensor:
        return self.per_sample(logits, probs)  # cross-entropy against q of the adjusted logits

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, tau={self.tau}"
