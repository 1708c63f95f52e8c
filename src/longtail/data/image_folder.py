"""A user's own long-tailed image folders, in torchvision's ImageFolder layout::

    ROOT/train/<class>/*.jpg     (or ROOT/<class>/*.jpg: then ROOT itself is the training folder)
    ROOT/val/<class>/*.jpg       optional: else drawn per class from train (see ``split_off_val``)
    ROOT/test/<class>/*.jpg      optional: else the test split is the val split

Class indices follow the sorted training class folders; the training class counts are counted from
the files found (no image is opened). Loading and its errors are those of :class:`SplitFileDataset`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torchvision.datasets import ImageFolder

from .check import first_few
from .sources import DatasetNotFoundError
from .split_file import SplitFileDataset


@dataclass
class FolderSplits:
    """Datasets without transforms (the caller adds them), class names, and how the splits were made."""

    train: SplitFileDataset
    val: SplitFileDataset
    test: SplitFileDataset
    classes: list[str]
    notes: dict[str, Any] = field(default_factory=dict)


def scan_folder(folder: Path, classes: list[str] | None = None) -> tuple[list[str], list[str], list[int]]:
    """(class names, paths relative to ``folder``, labels) of an ImageFolder tree. With ``classes``
    (the training classes), labels follow that order and an unknown class folder is an error."""
    try:
        found = ImageFolder(str(folder), allow_empty=True)  # lists files and classes, decodes nothing
    except FileNotFoundError as err:
        raise DatasetNotFoundError(f"{folder} holds no class folders ({err}). Expected {folder}/<class>/<image>, "
                                   "one folder per class.") from None
    names = found.classes if classes is None else classes
    index = {name: i for i, name in enumerate(names)}
    unknown = [c for c in found.classes if c not in index]
    if unknown:
        raise ValueError(f"{folder} has class folder(s) not in the training folder: {first_few(unknown)}. "
                         "Every val/test class must also be a training class.")
    paths = [os.path.relpath(p, folder) for p, _ in found.samples]
    labels = [index[found.classes[y]] for _, y in found.samples]
    return list(names), paths, labels


def split_off_val(labels: torch.Tensor, num_classes: int, val_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train indices, val indices): per class c, ``min(val_per_class, n_c // 2)`` images drawn at
    random (seeded) for validation, so a tail class never gives up more than half of its images
    (a class of 1 image gives none). Indices keep the original order within each split."""
    if val_per_class < 0:
        raise ValueError(f"val_per_class must be >= 0, got {val_per_class}")
    generator = torch.Generator().manual_seed(seed)
    is_val = torch.zeros(len(labels), dtype=torch.bool)
    for c in range(num_classes):
        pool = torch.nonzero(labels == c).flatten()
        take = min(val_per_class, pool.numel() // 2)
        is_val[pool[torch.randperm(pool.numel(), generator=generator)[:take]]] = True
    return torch.nonzero(~is_val).flatten(), torch.nonzero(is_val).flatten()


def load_image_folders(root: str | Path, *, val_per_class: int = 20, seed: int = 0) -> FolderSplits:
    """Scan ``root`` (layout in the module docstring) into train / val / test datasets."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetNotFoundError(f"image folder root {root} does not exist. Set data_root to a folder holding "
                                   "train/<class>/<image> (and optionally val/ and test/), or <class>/<image>.")
    train_dir = root / "train" if (root / "train").is_dir() else root
    classes, paths, labels = scan_folder(train_dir)
    counts = torch.bincount(torch.as_tensor(labels, dtype=torch.int64), minlength=len(classes))
    empty = [classes[c] for c in torch.nonzero(counts == 0).flatten().tolist()]
    if empty:
        raise ValueError(f"{len(empty)} training class folder(s) in {train_dir} hold no images: {first_few(empty)}. "
                         "Add images or remove the folders (a class with no training image has no prior).")
    train = SplitFileDataset(train_dir, paths, labels, check_files=False, source=str(train_dir))
    notes: dict[str, Any] = {"train": str(train_dir)}
    if (root / "val").is_dir():
        _, vp, vl = scan_folder(root / "val", classes)
        val = SplitFileDataset(root / "val", vp, vl, check_files=False, source=str(root / "val"))
        notes["val"] = str(root / "val")
    else:
        tr_idx, va_idx = split_off_val(train.targets, len(classes), val_per_class, seed)
        train, val = train.subset(tr_idx), train.subset(va_idx)
        notes["val"] = (f"drawn from {train_dir}: min({val_per_class}, n_c // 2) images per class, seed {seed} "
                        f"({len(va_idx)} images)")
    if (root / "test").is_dir():
        _, tp, tl = scan_folder(root / "test", classes)
        test = SplitFileDataset(root / "test", tp, tl, check_files=False, source=str(root / "test"))
        notes["test"] = str(root / "test")
    else:
        test = val
        notes["test"] = "no test folder: the test split is the val split (select_on=last avoids selecting on it)"
    return FolderSplits(train, val, test, classes, notes)
