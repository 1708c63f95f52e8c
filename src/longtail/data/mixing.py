"""Mixing augmentations on training batches, which turn the labels into soft targets (B, C):

- mixup (Zhang et al., ICLR 2018) and CutMix (Yun et al., ICCV 2019): torchvision's ``transforms.v2.MixUp`` and
  ``CutMix`` (one lambda ~ Beta(alpha, alpha) per batch, each sample mixed with its neighbour in the batch);
- ReMix (Chou et al., "Remix: Rebalanced Mixup", ECCV 2020 workshops): the images are mixed as mixup mixes them,
  but the label favours the minority class: with n_a, n_b the training counts of the two classes,
  lambda_y = 0 if n_a / n_b >= kappa and lambda < tau, 1 if n_a / n_b <= 1 / kappa and 1 - lambda < tau,
  else lambda (the paper's kappa = 3, tau = 0.5).

Every classification loss of :mod:`longtail.losses` takes the soft targets (the mix of the two labels' losses).
The mixing draws from the global torch RNG, which the trainer re-seeds every epoch (exact resume).
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor

MIXES = ("mixup", "cutmix", "mixup_cutmix", "remix")
BatchTransform = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


class ReMix:
    """``(images (B, ...), labels (B,)) -> (mixed images, soft targets (B, C))``; see the module docstring."""

    def __init__(self, class_counts: Sequence[float], *, alpha: float = 1.0, kappa: float = 3.0, tau: float = 0.5) -> None:
        if not alpha > 0 or not kappa >= 1 or not 0 <= tau <= 1:
            raise ValueError(f"ReMix needs alpha > 0, kappa >= 1 and tau in [0, 1], got {alpha=}, {kappa=}, {tau=}")
        self.counts = torch.as_tensor(class_counts, dtype=torch.float64)
        self.beta = torch.distributions.Beta(torch.tensor([float(alpha)]), torch.tensor([float(alpha)]))
        self.kappa, self.tau = float(kappa), float(tau)

    def __call__(self, images: Tensor, labels: Tensor) -> tuple[Tensor, Tensor]:
        lam = float(self.beta.sample())
        partner = labels.roll(1, 0)  # as torchvision's MixUp pairs the samples
        mixed = images.mul(lam).add_(images.roll(1, 0), alpha=1 - lam)
        counts = self.counts.to(labels.device)
        ratio = counts[labels] / counts[partner]
        lam_y = torch.full(labels.shape, lam, dtype=torch.float64, device=labels.device)
        lam_y[(ratio >= self.kappa) & (lam < self.tau)] = 0.0  # the first label's class is the head: the partner's label
        lam_y[(ratio <= 1 / self.kappa) & (1 - lam < self.tau)] = 1.0  # the first label is the minority: keep it
        num_classes = self.counts.numel()
        targets = lam_y[:, None] * torch.nn.functional.one_hot(labels, num_classes)
        targets = targets + (1 - lam_y)[:, None] * torch.nn.functional.one_hot(partner, num_classes)
        return mixed, targets.to(images.dtype if images.is_floating_point() else torch.float32)

    def __repr__(self) -> str:
        return f"ReMix(kappa={self.kappa}, tau={self.tau})"


def batch_mixer(kind: str, class_counts: Sequence[float], *, alpha: float = 1.0, kappa: float = 3.0,
                tau: float = 0.5) -> BatchTransform:
    """The batch transform ``kind`` ('mixup', 'cutmix', 'mixup_cutmix': one of the two per batch, 'remix')."""
    from torchvision.transforms import v2

    num_classes = len(class_counts)
    if kind not in MIXES:
        raise ValueError(f"mix must be one of {list(MIXES)}, got {kind!r}")
    if not alpha > 0:
        raise ValueError(f"mix_alpha must be > 0 (lambda ~ Beta(alpha, alpha)), got {alpha}")
    if kind == "remix":
        return ReMix(class_counts, alpha=alpha, kappa=kappa, tau=tau)
    mixup, cutmix = v2.MixUp(alpha=alpha, num_classes=num_classes), v2.CutMix(alpha=alpha, num_classes=num_classes)
    return {"mixup": mixup, "cutmix": cutmix, "mixup_cutmix": v2.RandomChoice([mixup, cutmix])}[kind]
