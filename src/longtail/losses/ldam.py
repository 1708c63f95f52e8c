"""LDAM loss with deferred re-weighting (Cao et al., "Learning Imbalanced Datasets with
Label-Distribution-Aware Margin Loss", NeurIPS 2019, Eqs. 10-13 and Alg. 1):

    L(z, y) = -log( e^{s (z_y - m_y)} / (e^{s (z_y - m_y)} + sum_{j != y} e^{s z_j}) ),
    m_j = C / n_j^{1/4},  C chosen so that max_j m_j = max_margin (0.5),  s = 30.

The margins assume logits in [-1, 1]: use the cosine head (``head: cosine``), as the official code
does. DRW: from epoch ``drw_epoch`` on, each sample is weighted by the class-balanced weight of its
class (effective number, beta 0.9999, Cui et al. 2019); 'mean' then divides by the batch's weight
sum, like ``F.cross_entropy(weight=...)`` in the official code.
"""

from __future__ import annotations

from typing import Sequence

import torch.nn.functional as F
from torch import Tensor

from .base import ClassCountLoss, Reduction, as_class_counts, check_logits_target, check_reduction, reduce_loss
from .class_balanced import effective_number_weights
from .registry import register_loss


def ldam_margins(class_counts: Sequence[float] | Tensor, max_margin: float = 0.5) -> Tensor:
    """(C,) float64 margins m_j ∝ n_j^{-1/4}, scaled so the largest (rarest class) is ``max_margin``."""
    if not max_margin > 0:
        raise ValueError(f"max_margin must be > 0 (0.5 in Cao et al.), got {max_margin}")
    margins = as_class_counts(class_counts).pow(-0.25)
    return margins * (max_margin / margins.max())


def ldam_per_sample(logits: Tensor, target: Tensor, margins: Tensor, scale: float) -> Tensor:
    """(B,) LDAM losses: cross-entropy of s * (z - m_y e_y). margins (C,) in logits' dtype."""
    shifted = logits - F.one_hot(target, logits.shape[1]).to(logits.dtype) * margins[target][:, None]
    return F.cross_entropy(scale * shifted, target, reduction="none")


def ldam_loss(logits: Tensor, target: Tensor, class_counts: Sequence[float] | Tensor, max_margin: float = 0.5,
              scale: float = 30.0, weights: Tensor | None = None, reduction: Reduction = "mean") -> Tensor:
    """Functional LDAM. logits (B, C), target (B,); ``weights`` (C,) optional class weights (DRW)."""
    margins = ldam_margins(class_counts, max_margin).to(logits.device, logits.dtype)
    check_logits_target(logits, target, margins.numel())
    per_sample = ldam_per_sample(logits, target, margins, scale)
    sample_weights = None if weights is None else weights.to(logits.device, logits.dtype)[target]
    return reduce_loss(per_sample, check_reduction(reduction), sample_weights)


@register_loss("ldam")
class LDAMLoss(ClassCountLoss):
    """LDAM (+ DRW) as an ``nn.Module``.

    Args:
        class_counts: (C,) training samples per class (all > 0).
        max_margin: the rarest class's margin (0.5 in the paper).
        scale: logit scale s (30 in the paper, for cosine logits).
        drw_epoch: first epoch (0-based, as passed to :meth:`set_epoch`) with class-balanced
            weights; ``None`` = plain LDAM (the paper: 160 of 200 epochs).
        beta: effective-number parameter of the DRW weights.
        reduction: 'mean' | 'sum' | 'none'.
    """

    def __init__(self, class_counts: Sequence[float] | Tensor, *, max_margin: float = 0.5, scale: float = 30.0,
                 drw_epoch: int | None = None, beta: float = 0.9999, reduction: Reduction = "mean") -> None:
        super().__init__(class_counts, reduction=reduction)
        if not scale > 0:
            raise ValueError(f"scale must be > 0 (30 in Cao et al.), got {scale}")
        if drw_epoch is not None and drw_epoch < 0:
            raise ValueError(f"drw_epoch must be >= 0 or None (no re-weighting), got {drw_epoch}")
        self.max_margin, self.scale, self.drw_epoch, self.beta = float(max_margin), float(scale), drw_epoch, beta
        self.register_buffer("margins", ldam_margins(self.class_counts, max_margin))
        self.register_buffer("drw_weights", effective_number_weights(self.class_counts, beta))
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Called at the start of every epoch; switches the re-weighting on at ``drw_epoch``."""
        self.epoch = int(epoch)

    @property
    def reweighting(self) -> bool:
        return self.drw_epoch is not None and self.epoch >= self.drw_epoch

    def per_sample(self, logits: Tensor, target: Tensor) -> Tensor:
        """Unweighted (B,) losses; :meth:`forward` applies the DRW weights when active."""
        return ldam_per_sample(logits, target, self.margins.to(logits.dtype), self.scale)

    def class_weights(self) -> Tensor | None:
        return self.drw_weights if self.reweighting else None

    @property
    def probability_scale(self) -> float:
        """The loss trains softmax(s z) (margins apart, which apply in training only), so these are the
        model's probabilities; the softmax of the raw cosines z is nearly uniform."""
        return self.scale

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, max_margin={self.max_margin}, scale={self.scale}, "
                f"drw_epoch={self.drw_epoch}, beta={self.beta}")
