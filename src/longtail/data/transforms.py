"""Train/test pipelines from torchvision transforms v2, by dataset family.

Inputs are ``tv_tensors.Image`` uint8 (C, H, W) for the in-memory datasets, or PIL images for the
file-based ones; outputs are float32 normalised (C, H, W) tensors. Each pipeline follows the official
code of the papers whose numbers we compare with (noted per function).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.transforms import v2

# Channel mean / std used for normalisation.
STATS = {
    "fashion_mnist": ((0.2860,), (0.3530,)),
    # The values of the BALMS / LDAM CIFAR-LT code (used for CIFAR-100 too). The true per-pixel std of
    # CIFAR-10 is (0.247, 0.243, 0.261); the difference is a per-channel input scale that the first
    # BatchNorm absorbs, and keeping the official values keeps the recipe identical.
    "cifar": ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),  # ImageNet-LT and Places-LT
    "inaturalist": ((0.466, 0.471, 0.380), (0.195, 0.194, 0.192)),  # iNaturalist 2018 (Kang et al. 2020 code)
    "synthetic": ((0.5,), (0.25,)),
}


def _to_float() -> list:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True)]


def _normalise(family: str) -> list:
    mean, std = STATS[family]
    return _to_float() + [v2.Normalize(mean, std)]


class Cutout(nn.Module):
    """Cutout (DeVries & Taylor 2017, Sec. 3), as in the BALMS CIFAR code: one ``length`` x ``length``
    square whose centre is uniform over the image, clipped at the border (so squares near an edge
    are smaller), set to 0 on the [0, 1] image, before normalisation.

    torchvision's RandomErasing keeps the whole square inside the image, so it erases more on
    average; this is the paper's version. Input/output: float (C, H, W); draws from torch's RNG.
    """

    def __init__(self, length: int = 16) -> None:
        super().__init__()
        if length < 1:
            raise ValueError(f"Cutout length must be >= 1, got {length}")
        self.length = length

    def forward(self, image: Tensor) -> Tensor:
        h, w = image.shape[-2:]
        cy, cx = int(torch.randint(h, ())), int(torch.randint(w, ()))
        half = self.length // 2
        out = image.clone()
        out[..., max(cy - half, 0):min(cy + half, h), max(cx - half, 0):min(cx + half, w)] = 0
        return out

    def extra_repr(self) -> str:
        return f"length={self.length}"


def fashion_mnist_transforms(train: bool, augment: bool = True) -> v2.Compose:
    """28x28 grayscale: pad-and-crop + horizontal flip (clothes are left-right symmetric)."""
    aug = [v2.RandomCrop(28, padding=2), v2.RandomHorizontalFlip()] if train and augment else []
    return v2.Compose(aug + _normalise("fashion_mnist"))


def cifar_transforms(train: bool, augment: bool = True, autoaugment: bool = True,
                     cutout: bool = True) -> v2.Compose:
    """The BALMS CIFAR-LT recipe (Ren et al. 2020, official code): RandomCrop(32, pad 4) + flip +
    AutoAugment (CIFAR-10 policy, Cubuk et al. 2019; also for CIFAR-100) + ToTensor + Cutout(16) +
    Normalize. Test: ToTensor + Normalize."""
    if not (train and augment):
        return v2.Compose(_normalise("cifar"))
    aug = [v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip()]
    if autoaugment:
        aug.append(v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10))
    mean, std = STATS["cifar"]
    return v2.Compose(aug + _to_float() + ([Cutout(16)] if cutout else []) + [v2.Normalize(mean, std)])


def imagenet_transforms(train: bool, augment: bool = True, size: int = 224, family: str = "imagenet",
                        color_jitter: bool = True) -> v2.Compose:
    """ImageNet-LT / Places-LT (OLTR, Liu et al. 2019; Kang et al. 2020; BALMS): train =
    RandomResizedCrop(size) + flip + ColorJitter(0.4, 0.4, 0.4, 0); test = Resize(size * 256/224)
    + CenterCrop(size) (256 / 224 at the papers' size). ``family`` picks the normalisation stats.

    The crops and colour jitter run on the PIL image (uint8), then ToImage + ToDtype + Normalize, the
    order of the papers' code; ``size`` lets tests and smoke runs use tiny images."""
    if size < 1:
        raise ValueError(f"image size must be >= 1, got {size}")
    if train and augment:
        aug = [v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip()]
        if color_jitter:
            aug.append(v2.ColorJitter(brightness=0.4, contrast=0.4, saturation=0.4, hue=0))
    else:
        aug = [v2.Resize(round(size * 256 / 224), antialias=True), v2.CenterCrop(size)]
    return v2.Compose(aug + _normalise(family))


def inaturalist_transforms(train: bool, augment: bool = True, size: int = 224) -> v2.Compose:
    """iNaturalist 2018 (Kang et al. 2020 code, reused by BALMS): the ImageNet pipeline without colour
    jitter (colour tells species apart), normalised with iNaturalist's own channel statistics."""
    return imagenet_transforms(train, augment, size, family="inaturalist", color_jitter=False)


def synthetic_transforms(train: bool, augment: bool = True) -> v2.Compose:
    return v2.Compose(_normalise("synthetic"))
