"""Softmax Equalization Loss (Tan et al., "Equalization Loss for Long-Tailed Object Recognition",
CVPR 2020, the softmax form used for image classification):

    L(z, y) = -log( e^{z_y} / sum_k w_k e^{z_k} ),   w_k = 1 - beta T_lambda(f_k) (1 - y_k),

f_k = n_k / sum n the class's training frequency, T_lambda(f) = 1 if f < lambda else 0, and beta a
Bernoulli(gamma) variable drawn per sample. With beta = 1 the rare classes' logits are dropped
from the denominator of every sample of another class, so a rare class is not pushed down by the
head classes' samples (the "discouraging gradients" of the paper). In classification there is no
background, so the paper's E(r) is replaced by beta.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import ClassCountLoss, Reduction, as_class_counts, check_logits_target, check_reduction, reduce_loss
from .registry import register_loss


def rare_class_mask(class_counts: Sequence[float] | Tensor, freq_threshold: float) -> Tensor:
    """(C,) bool: T_lambda(f_j), True where the class frequency n_j / sum n is below the threshold."""
    if not 0 <= freq_threshold <= 1:
        raise ValueError(f"freq_threshold (lambda) is a frequency in [0, 1], got {freq_threshold}")
    counts = as_class_counts(class_counts, allow_zero=True)
    return counts / counts.sum() < freq_threshold


def softmax_eql_per_sample(logits: Tensor, target: Tensor, rare: Tensor, beta: Tensor) -> Tensor:
    """(B,) losses. rare (C,) bool, beta (B,) in {0, 1}. w_k in {0, 1}, so sum_k w_k e^{z_k} is a
    logsumexp over the kept logits (the target's own logit is always kept)."""
    not_target = 1 - F.one_hot(target, logits.shape[1]).to(logits.dtype)  # (B, C)
    dropped = beta.to(logits.dtype)[:, None] * rare.to(logits.dtype)[None, :] * not_target > 0  # w_k == 0
    denom = torch.logsumexp(logits.masked_fill(dropped, float("-inf")), dim=1)
    return denom - logits.gather(1, target[:, None]).squeeze(1)


def softmax_eql_loss(logits: Tensor, target: Tensor, class_counts: Sequence[float] | Tensor, freq_threshold: float,
                     beta: Tensor, reduction: Reduction = "mean") -> Tensor:
    """Functional softmax EQL with an explicit (B,) ``beta`` draw (so the result is deterministic)."""
    rare = rare_class_mask(class_counts, freq_threshold).to(logits.device)
    check_logits_target(logits, target, rare.numel())
    if beta.shape != target.shape:
        raise ValueError(f"beta must have shape {tuple(target.shape)}, got {tuple(beta.shape)}")
    return reduce_loss(softmax_eql_per_sample(logits, target, rare, beta), check_reduction(reduction))


@register_loss("equalization")
class EqualizationLoss(ClassCountLoss):
    """Softmax Equalization Loss as an ``nn.Module``.

    Args:
        class_counts: (C,) training samples per class.
        freq_threshold: lambda; classes with n_j / sum n below it are "rare" (their suppression by
            other classes' samples is removed). Pick it from the class-frequency table
            (``longtail data stats``): e.g. 0.02 makes the 4 rarest Fashion-MNIST-LT IF100 classes rare.
        gamma: probability that beta = 1 for a sample (the paper's gamma).
        reduction: 'mean' | 'sum' | 'none'.

    beta is drawn with the global torch RNG, which ``longtail train`` re-seeds every epoch (so runs
    resume exactly); use :func:`softmax_eql_loss` with an explicit ``beta`` for a fixed draw.
    """

    def __init__(self, class_counts: Sequence[float] | Tensor, *, freq_threshold: float, gamma: float = 0.9,
                 reduction: Reduction = "mean") -> None:
        super().__init__(class_counts, reduction=reduction, allow_zero=True)
        if not 0 <= gamma <= 1:
            raise ValueError(f"gamma is a probability in [0, 1], got {gamma}")
        self.freq_threshold, self.gamma = float(freq_threshold), float(gamma)
        self.register_buffer("rare", rare_class_mask(self.class_counts, freq_threshold))

    def per_sample(self, logits: Tensor, target: Tensor) -> Tensor:
        return softmax_eql_per_sample(logits, target, self.rare, self._draw_beta(logits))

    def per_sample_soft(self, logits: Tensor, probs: Tensor) -> Tensor:
        """sum_j q_j EQL(z, j) with one draw of beta per sample (as for a hard label)."""
        beta = self._draw_beta(logits)
        total = torch.zeros(logits.shape[0], dtype=logits.dtype, device=logits.device)
        for c in torch.nonzero(probs.detach().sum(0) > 0).flatten().tolist():
            target = torch.full_like(total, c, dtype=torch.long)
            total = total + probs[:, c] * softmax_eql_per_sample(logits, target, self.rare, beta)
        return total / probs.sum(1).clamp_min(torch.finfo(logits.dtype).tiny)

    def _draw_beta(self, logits: Tensor) -> Tensor:
        return (torch.rand(logits.shape[0], device=logits.device) < self.gamma).to(logits.dtype)

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, freq_threshold={self.freq_threshold}, gamma={self.gamma}, "
                f"rare_classes={torch.nonzero(self.rare).flatten().tolist()}")
