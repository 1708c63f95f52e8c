"""Train/test pipelines from torchvision transforms v2, by dataset family.

Inputs are ``tv_tensors.Image`` uint8 (C, H, W) for the in-memory datasets, or PIL images for the
file-based ones; outputs are float32 normalised (C, H, W) tensors. Each pipeline follows the official
code of the papers whose numbers we compare with (noted per function).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torchvision.transforms import InterpolationMode, v2

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


def stats_family(dataset: str) -> str:
    """The key of :data:`STATS` whose normalisation a registered dataset's models are trained with."""
    return ("cifar" if dataset.startswith("cifar") else "fashion_mnist" if dataset.startswith("fashion_mnist")
            else "inaturalist" if dataset.startswith("inat") else "synthetic" if dataset.startswith("synthetic")
            else "imagenet")


def normalisation_of(dataset: str) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(mean, std) the models of a registered dataset are trained with (inputs scaled to [0, 1] first)."""
    return STATS[stats_family(dataset)]


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


def fashion_mnist_batch_transforms(train: bool, augment: bool = True) -> BatchAugment:
    """:func:`fashion_mnist_transforms` as one batched transform (same distribution, whole batches)."""
    mean, std = STATS["fashion_mnist"]
    return BatchAugment(train=train and augment, padding=2, mean=mean, std=std)


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


class BatchAugment(nn.Module):
    """The in-memory pipelines (:func:`cifar_transforms`, :func:`fashion_mnist_transforms`) on a whole
    uint8 batch at once: (B, C, H, W) uint8 in, (B, C, H, W) float32 normalised out, every sample drawn
    independently.

    Per-sample v2 transforms cost more than the ResNet-32 step on a small CPU (the loader, not the
    model, set the pace); on a batch each step is a few tensor operations. Each sample gets the same
    distribution as the per-sample pipeline (the defaults are CIFAR's padding and statistics):
    - RandomCrop(32, padding=4): zero padding, crop offsets uniform in [0, 2 * padding] per axis;
    - horizontal flip with probability 1/2;
    - AutoAugment, CIFAR-10 policy: one of the 25 sub-policies uniformly, each of its two operations
      applied with its probability, signed magnitudes negated with probability 1/2; the samples that
      drew the same operation, magnitude and sign are transformed together with torchvision's own
      implementation of that operation;
    - Cutout(16) as :class:`Cutout` (centre uniform, square clipped at the border), on the [0, 1] image;
    - Normalize.
    ``batched = True`` tells :class:`~longtail.data.ArrayImageDataset` to hand it whole batches.
    Randomness comes from torch's global RNG (seeded per epoch by the trainer).
    """

    batched = True

    def __init__(self, *, train: bool = True, padding: int = 4, flip: bool = True, autoaugment: bool = False,
                 cutout: int = 0, mean: tuple = STATS["cifar"][0], std: tuple = STATS["cifar"][1]) -> None:
        super().__init__()
        self.train, self.padding, self.flip, self.cutout = train, padding, flip, cutout
        self.autoaugment = v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10) if autoaugment else None
        self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1), persistent=False)

    def forward(self, images: Tensor) -> Tensor:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise TypeError(f"expected a uint8 (B, C, H, W) batch, got {images.dtype} {tuple(images.shape)}")
        if self.train:
            if self.padding:
                images = random_crop_batch(images, self.padding)
            if self.flip:
                images = torch.where(torch.rand(images.shape[0], 1, 1, 1) < 0.5, images.flip(-1), images)
            if self.autoaugment is not None:
                images = autoaugment_batch(images, self.autoaugment)
        out = images.float().div_(255)
        if self.train and self.cutout:
            out = cutout_batch(out, self.cutout)
        return out.sub_(self.mean).div_(self.std)

    def extra_repr(self) -> str:
        return (f"train={self.train}, padding={self.padding}, flip={self.flip}, "
                f"autoaugment={self.autoaugment is not None}, cutout={self.cutout}")


def random_crop_batch(images: Tensor, padding: int) -> Tensor:
    """v2.RandomCrop(size=(H, W), padding=padding) (zero fill) on each sample of (B, C, H, W).

    The samples that drew the same row offset are sliced together, then likewise per column offset:
    2 * (2 * padding + 1) slices per batch instead of a per-pixel gather."""
    b, _, h, w = images.shape
    padded = nn.functional.pad(images, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (b,))
    dx = torch.randint(0, 2 * padding + 1, (b,))
    rows = padded.new_empty(padded.shape[:2] + (h, padded.shape[-1]))
    out = images.new_empty(images.shape)
    for offset in range(2 * padding + 1):
        members = (dy == offset).nonzero().flatten()
        if members.numel():
            rows[members] = padded[members, :, offset:offset + h]
    for offset in range(2 * padding + 1):
        members = (dx == offset).nonzero().flatten()
        if members.numel():
            out[members] = rows[members, :, :, offset:offset + w]
    return out


def cutout_batch(images: Tensor, length: int) -> Tensor:
    """:class:`Cutout` on each sample of a float (B, C, H, W) batch."""
    b, _, h, w = images.shape
    cy, cx = torch.randint(h, (b,)), torch.randint(w, (b,))
    half = length // 2
    ys, xs = torch.arange(h), torch.arange(w)
    in_rows = (ys[None] >= (cy - half).clamp_min(0)[:, None]) & (ys[None] < (cy + half).clamp_max(h)[:, None])
    in_cols = (xs[None] >= (cx - half).clamp_min(0)[:, None]) & (xs[None] < (cx + half).clamp_max(w)[:, None])
    hole = in_rows[:, None, :, None] & in_cols[:, None, None, :]  # (B, 1, H, W)
    return images.masked_fill(hole, 0.0)


def autoaugment_batch(images: Tensor, augment: v2.AutoAugment) -> Tensor:
    """``augment`` (a v2.AutoAugment) applied to each sample of a uint8 (B, C, H, W) batch with its own
    draws, as its ``forward`` draws them: sub-policy, then per operation apply (p) and sign (1/2)."""
    b, _, h, w = images.shape
    policies = augment._policies
    chosen = torch.randint(len(policies), (b,))
    out = images.clone()
    for op in range(2):
        applied = torch.rand(b) <= torch.tensor([policies[i][op][1] for i in chosen.tolist()])
        negated = torch.rand(b) <= 0.5
        for index in chosen[applied].unique().tolist():
            name, _, magnitude_idx = policies[index][op]
            magnitudes_fn, signed = augment._AUGMENTATION_SPACE[name]
            magnitudes = magnitudes_fn(10, h, w)
            magnitude = float(magnitudes[magnitude_idx]) if magnitudes is not None else 0.0
            for sign in ((True, False) if signed and magnitudes is not None else (None,)):
                members = applied & (chosen == index)
                if sign is not None:
                    members &= negated == sign
                rows = members.nonzero().flatten()
                if rows.numel():
                    m = -magnitude if sign else magnitude
                    out[rows] = augment._apply_image_or_video_transform(
                        out[rows], name, m, interpolation=InterpolationMode.NEAREST, fill=augment._fill)
    return out


def cifar_batch_transforms(train: bool, augment: bool = True, autoaugment: bool = True,
                           cutout: bool = True) -> BatchAugment:
    """:func:`cifar_transforms` as one batched transform (same recipe, same distribution)."""
    on = train and augment
    return BatchAugment(train=on, autoaugment=on and autoaugment, cutout=16 if on and cutout else 0)


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
