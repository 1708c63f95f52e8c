"""An in-memory image dataset over a uint8 array, with torchvision transforms v2.

Small benchmarks (Fashion-MNIST, CIFAR) fit in memory; indexing a uint8 tensor and transforming a
``tv_tensors.Image`` avoids a PIL round trip per sample.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors


class ArrayImageDataset(Dataset):
    """images: uint8 (N, H, W) or (N, H, W, C); labels: (N,). Returns (transformed image, label)."""

    def __init__(self, images: Tensor | np.ndarray, labels: Sequence[int] | Tensor,
                 transform: Callable | None = None) -> None:
        images = torch.as_tensor(images)
        if images.dtype != torch.uint8:
            raise TypeError(f"images must be uint8, got {images.dtype}")
        if images.ndim == 3:
            images = images.unsqueeze(-1)
        if images.ndim != 4:
            raise ValueError(f"images must be (N, H, W) or (N, H, W, C), got {tuple(images.shape)}")
        self.images = images.permute(0, 3, 1, 2).contiguous()  # (N, C, H, W)
        self.targets = torch.as_tensor(labels, dtype=torch.int64)
        if len(self.targets) != len(self.images):
            raise ValueError(f"{len(self.images)} images but {len(self.targets)} labels")
        self.transform = transform

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int):
        image = tv_tensors.Image(self.images[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])

    def subset(self, indices: Tensor, transform: Callable | None = None) -> "ArrayImageDataset":
        """A new dataset over ``indices`` (copies the selected images; cheap at this scale)."""
        indices = torch.as_tensor(indices, dtype=torch.int64)
        sub = ArrayImageDataset.__new__(ArrayImageDataset)
        sub.images, sub.targets, sub.transform = self.images[indices], self.targets[indices], transform
        return sub
