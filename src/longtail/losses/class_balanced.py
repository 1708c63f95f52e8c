"""Class-balanced loss (Cui et al., "Class-Balanced Loss Based on Effective Number of Samples",
CVPR 2019, Eqs. 3-5): each sample's loss is weighted by the inverse effective number of its class,

    E_n = (1 - beta^n) / (1 - beta),   w_j ∝ 1 / E_{n_j} = (1 - beta) / (1 - beta^{n_j}),

normalised so that sum_j w_j = C. beta = 0 gives no re-weighting, beta -> 1 inverse frequency.
The per-sample loss is the softmax focal loss (gamma = 0: cross-entropy).

'mean' divides by the sum of the batch's weights, as ``F.cross_entropy(weight=...)`` and the
LDAM-DRW code do (Cui et al.'s TensorFlow code divides by the batch size instead: a per-batch
factor that, with weights ~ 1/n, shrinks the effective learning rate several-fold).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from .base import ClassCountLoss, Reduction, as_class_counts, check_logits_target, check_reduction, reduce_loss
from .focal import check_gamma, focal_per_sample
from .registry import register_loss


def effective_number_weights(class_counts: Sequence[float] | Tensor, beta: float = 0.9999) -> Tensor:
    """(C,) float64 weights (1 - beta) / (1 - beta^n_j), normalised to sum C (Cui et al., Eq. 5)."""
    if not 0 <= beta < 1:
        raise ValueError(f"beta must lie in [0, 1) (0.9999 in Cui et al. for CIFAR), got {beta}")
    counts = as_class_counts(class_counts)
    if beta == 0:
        return torch.ones_like(counts)
    # 1 - beta^n = -expm1(n log beta): exact even when beta^n is close to 1
    weights = (1 - beta) / -torch.expm1(counts * torch.log(torch.tensor(beta, dtype=torch.float64)))
    return weights * counts.numel() / weights.sum()


def class_balanced_loss(logits: Tensor, target: Tensor, class_counts: Sequence[float] | Tensor,
                        beta: float = 0.9999, gamma: float = 0.0, reduction: Reduction = "mean") -> Tensor:
    """Functional class-balanced focal loss (gamma 0: class-balanced cross-entropy)."""
    weights = effective_number_weights(class_counts, beta).to(logits.device, logits.dtype)
    check_logits_target(logits, target, weights.numel())
    per_sample = focal_per_sample(logits, target, check_gamma(gamma))
    return reduce_loss(per_sample, check_reduction(reduction), weights[target])


@register_loss("class_balanced")
class ClassBalancedLoss(ClassCountLoss):
    """Class-balanced focal / cross-entropy loss as an ``nn.Module``.

    Args:
        class_counts: (C,) training samples per class (all > 0).
        beta: effective-number hyper-parameter in [0, 1).
        gamma: focal focusing parameter; 0 (default) gives class-balanced cross-entropy.
        reduction: 'mean' (weighted mean over the batch) | 'sum' | 'none' (weighted per-sample).
    """

    def __init__(self, class_counts: Sequence[float] | Tensor, *, beta: float = 0.9999, gamma: float = 0.0,
                 reduction: Reduction = "mean") -> None:
        super().__init__(class_counts, reduction=reduction)
        self.beta, self.gamma = float(beta), check_gamma(gamma)
        self.register_buffer("weights", effective_number_weights(self.class_counts, beta))

    def per_sample(self, logits: Tensor, target: Tensor) -> Tensor:
        """Unweighted (B,) losses; :meth:`forward` applies the class weights."""
        return focal_per_sample(logits, target, self.gamma)

    def class_weights(self) -> Tensor:
        return self.weights

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, beta={self.beta}, gamma={self.gamma}"
