"""An in-memory image dataset over a uint8 array, with torchvision transforms v2.

Small benchmarks (Fashion-MNIST, CIFAR) fit in memory; indexing a uint8 tensor and transforming a
``tv_tensors.Image`` avoids a PIL round trip per sample.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset, default_collate
from torchvision import tv_tensors


class BatchSamples(list):
    """What ``__getitems__`` returns for a batched transform: the list of (image, label) pairs the
    DataLoader's default collate expects, which also holds the batch already stacked
    (:func:`collate` hands that back without copying)."""

    def __init__(self, images: Tensor, labels: Tensor) -> None:
        super().__init__(zip(images, labels.tolist()))
        self.images, self.labels = images, labels


def collate(samples: list):
    """``default_collate``, except that a batch from ``__getitems__`` is returned as it is."""
    if isinstance(samples, BatchSamples):
        return samples.images, samples.labels
    return default_collate(samples)


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
        if getattr(self.transform, "batched", False):
            return self.transform(self.images[index:index + 1])[0], int(self.targets[index])
        image = tv_tensors.Image(self.images[index])
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])

    def __getitems__(self, indices: list[int]) -> list:
        """A whole batch at once (the DataLoader calls this instead of ``__getitem__`` per index). With
        a batched transform (``transform.batched``) the batch is transformed in one call."""
        if not getattr(self.transform, "batched", False):
            return [self[i] for i in indices]
        index = torch.as_tensor(indices, dtype=torch.int64)
        return BatchSamples(self.transform(self.images[index]), self.targets[index])

    def subset(self, indices: Tensor, transform: Callable | None = None) -> "ArrayImageDataset":
        """A new dataset over ``indices`` (copies the selected images; cheap at this scale)."""
        indices = torch.as_tensor(indices, dtype=torch.int64)
        sub = ArrayImageDataset.__new__(ArrayImageDataset)
        sub.images, sub.targets, sub.transform = self.images[indices], self.targets[indices], transform
        return sub
