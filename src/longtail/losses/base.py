"""What every class-count-aware loss shares: count validation, reduction, the module shell."""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import Tensor, nn

Reduction = Literal["mean", "sum", "none"]
REDUCTIONS = ("mean", "sum", "none")


def as_class_counts(class_counts: Sequence[float] | Tensor, *, allow_zero: bool = False) -> Tensor:
    """Validate per-class training counts and return them as a float64 tensor of shape (C,).

    Counts must be a 1-D, finite, non-negative sequence. Zero counts are rejected unless
    ``allow_zero`` (a class with no training sample has ``log n = -inf``: callers decide).
    """
    counts = torch.as_tensor(class_counts, dtype=torch.float64).detach().cpu()
    if counts.ndim != 1 or counts.numel() == 0:
        raise ValueError(f"class_counts must be a non-empty 1-D sequence, got shape {tuple(counts.shape)}")
    if not torch.isfinite(counts).all() or (counts < 0).any():
        bad = [i for i, c in enumerate(counts.tolist()) if not (c >= 0 and c != float("inf"))]
        raise ValueError(f"class_counts must be finite and >= 0; bad entries at classes {bad[:10]}")
    if not allow_zero and (counts == 0).any():
        zero = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(
            f"classes {zero[:10]}{' ...' if len(zero) > 10 else ''} have 0 training samples, so log n = -inf. "
            "Check that the counts come from the training split, or pass zero_counts='absent' to treat "
            "those classes as absent (never predicted during training, targets of them are an error)."
        )
    if counts.sum() <= 0:
        raise ValueError("class_counts sum to 0: there is no training sample at all")
    return counts


def reduce_loss(per_sample: Tensor, reduction: Reduction, weights: Tensor | None = None) -> Tensor:
    """Reduce a (B,) tensor of per-sample losses. With ``weights``, 'mean' divides by their sum."""
    if reduction == "none":
        return per_sample if weights is None else per_sample * weights
    if weights is not None:
        total = (per_sample * weights).sum()
        return total / weights.sum().clamp_min(torch.finfo(per_sample.dtype).tiny) if reduction == "mean" else total
    return per_sample.mean() if reduction == "mean" else per_sample.sum()


def check_reduction(reduction: str) -> Reduction:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction  # type: ignore[return-value]


def check_logits_target(logits: Tensor, target: Tensor, num_classes: int) -> bool:
    """Logits must be (B, C); the target (B,) class indices or (B, C) soft targets (a distribution over the
    classes per sample: mixup, CutMix, label smoothing). Returns True for soft targets. Catches the classic
    'wrong number of classes' mistake early."""
    if logits.ndim != 2 or logits.shape[1] != num_classes:
        raise ValueError(f"logits must have shape (B, {num_classes}), got {tuple(logits.shape)}")
    if target.ndim == 2:
        if tuple(target.shape) != tuple(logits.shape) or not target.is_floating_point():
            raise ValueError(f"soft targets must be floating point of the logits' shape {tuple(logits.shape)}, got "
                             f"{target.dtype} {tuple(target.shape)}")
        return True
    if target.ndim != 1 or target.shape[0] != logits.shape[0]:
        raise ValueError(f"target must have shape ({logits.shape[0]},) (class indices) or {tuple(logits.shape)} "
                         f"(soft targets), got {tuple(target.shape)}")
    return False


class ClassCountLoss(nn.Module):
    """Base of losses built from training class counts.

    Holds ``class_counts`` (C,) as a float64 buffer so it moves with ``.to(device)`` and is saved in
    ``state_dict``; subclasses implement :meth:`per_sample` returning (B,) losses.
    """

    def __init__(self, class_counts: Sequence[float] | Tensor, *, reduction: Reduction = "mean",
                 allow_zero: bool = False) -> None:
        super().__init__()
        self.register_buffer("class_counts", as_class_counts(class_counts, allow_zero=allow_zero))
        self.reduction = check_reduction(reduction)

    #: softmax(probability_scale * logits) are the class probabilities the loss trains the model to output:
    #: 1 for softmax losses; LDAM's scale s for its cosine logits. Used for ECE, calibration and predict only
    #: (accuracy and the saved logits do not depend on it).
    probability_scale: float = 1.0

    @property
    def num_classes(self) -> int:
        return int(self.class_counts.numel())

    def per_sample(self, logits: Tensor, target: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def class_weights(self) -> Tensor | None:
        """(C,) per-class loss weights the reduction applies (class-balanced, DRW), or None."""
        return None

    def per_sample_soft(self, logits: Tensor, probs: Tensor) -> Tensor:
        """(B,) losses for soft targets ``probs`` (B, C): the target distribution's expected loss,
        sum_j q_j w_j L(z, j) / sum_j q_j w_j with w the class weights (1 without), i.e. mixup's mix of the
        two labels' losses; with a one-hot q it is the hard-label loss. Evaluated on the classes that carry
        target mass in the batch; cross-entropy-like losses override it with cross-entropy against q."""
        weights = self.class_weights()
        total = torch.zeros(logits.shape[0], dtype=logits.dtype, device=logits.device)
        norm = torch.zeros_like(total)
        for c in torch.nonzero(probs.detach().sum(0) > 0).flatten().tolist():
            mass = probs[:, c] * (weights[c].to(logits.dtype) if weights is not None else 1.0)
            total = total + mass * self.per_sample(logits, torch.full_like(total, c, dtype=torch.long))
            norm = norm + mass
        return total / norm.clamp_min(torch.finfo(logits.dtype).tiny)

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        soft = check_logits_target(logits, target, self.num_classes)
        if logits.dtype in (torch.float16, torch.bfloat16):  # mixed precision: the loss itself in float32
            logits = logits.float()
            target = target.float() if soft else target
        weights = self.class_weights()
        if weights is not None:
            weights = weights.to(logits.dtype)
            weights = target @ weights if soft else weights[target]
        per_sample = self.per_sample_soft(logits, target) if soft else self.per_sample(logits, target)
        return reduce_loss(per_sample, self.reduction, weights)

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, reduction={self.reduction!r}"
