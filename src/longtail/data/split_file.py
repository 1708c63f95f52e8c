"""Image datasets over split lists: one line per image, ``relative/path label`` (the format of the
OLTR release of ImageNet-LT and Places-LT, Liu et al. 2019, and of the iNaturalist 2018 lists of
Kang et al. 2020), with the paths relative to an image root the user points at.

Images are decoded with torchvision's default loader (PIL, RGB) only when indexed. A missing file is
reported when the dataset is built (how many, which); a file that cannot be decoded at training time
raises :class:`ImageLoadError` naming it, also from inside a DataLoader worker.
"""

from __future__ import annotations

import copy
import os
from importlib import resources
from pathlib import Path
from typing import Callable, Sequence

import torch
from torch.utils.data import Dataset
from torchvision.datasets.folder import default_loader

from .check import find_missing, first_few
from .sources import DatasetNotFoundError


class MissingImagesError(DatasetNotFoundError):
    """Images named by a split list are not under the image root (raised when the dataset is built)."""


class ImageLoadError(RuntimeError):
    """An image could not be decoded when a batch was loaded; the message names the file."""

    def __str__(self) -> str:
        # A DataLoader worker re-raises our error as ImageLoadError("Caught ImageLoadError in DataLoader
        # worker process 0.\nOriginal Traceback ... ImageLoadError: <message>"): keep just the message.
        text = super().__str__()
        at = text.rfind(f"{type(self).__name__}: ") if "Original Traceback" in text else -1
        return text[at + len(type(self).__name__) + 2:].strip() if at >= 0 else text


def read_split_file(path: str | Path, num_classes: int | None = None) -> tuple[list[str], list[int]]:
    """Paths and labels of a ``relative/path label`` list. Blank lines are skipped; the label is the
    last field, so paths may hold spaces. With ``num_classes``, a label outside [0, num_classes) is an
    error naming the file and line (a typo must not silently add classes)."""
    path = Path(path)
    paths, labels = [], []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.rsplit(maxsplit=1)
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit() or int(parts[1]) < 0:
                raise ValueError(f"{path}:{lineno}: expected 'relative/path label' with a label >= 0, got {line!r}")
            if num_classes is not None and int(parts[1]) >= num_classes:
                raise ValueError(f"{path}:{lineno}: label {parts[1]} is outside 0..{num_classes - 1} (the dataset has "
                                 f"{num_classes} classes): {line!r}. Fix the list, or set dataset_options="
                                 "{num_classes: N} if it really has more classes")
            paths.append(parts[0])
            labels.append(int(parts[1]))
    if not paths:
        raise ValueError(f"{path} lists no images")
    return paths, labels


def shipped_split_dir(name: str) -> Path:
    """Folder of the split lists shipped with the package (``resources/splits/<name>``)."""
    return Path(str(resources.files("longtail") / "resources" / "splits" / name))


def find_split_file(filename: str, *, split_dir: str | Path | None, shipped: str | None,
                    root: str | Path | None, hint: str = "") -> Path:
    """Look for a list in ``split_dir`` (when given), then in the shipped lists, then in the image
    root; a list found nowhere is an error that says where it looked and how to get it."""
    places = [Path(split_dir)] if split_dir is not None else []
    places += [shipped_split_dir(shipped)] if shipped is not None else []
    places += [Path(root)] if root is not None else []
    for place in places:
        if (place / filename).is_file():
            return place / filename
    where = ", ".join(str(p) for p in places) or "nowhere (no split_dir or root given)"
    raise DatasetNotFoundError(f"split list {filename} not found (looked in {where}). {hint}".strip())


class SplitFileDataset(Dataset):
    """Images at ``root / paths[i]`` with labels ``targets[i]``; item i is ``(transform(image), label)``.

    Args:
        root: the folder the paths are relative to (absolute paths are used as they are).
        paths: (N,) relative image paths; labels: (N,) integer class labels.
        transform: applied to the PIL image. loader: path -> image (torchvision's default loader).
        check_files: list the folders once and raise :class:`MissingImagesError` naming the missing
            files (cheap: no image is opened). ``source`` names the list in messages.
    """

    def __init__(self, root: str | Path, paths: Sequence[str], labels: Sequence[int], *,
                 transform: Callable | None = None, loader: Callable = default_loader, check_files: bool = True,
                 source: str = "") -> None:
        self.root = Path(root)
        self.paths = list(paths)
        self.targets = torch.as_tensor(list(labels), dtype=torch.int64)
        if len(self.paths) != len(self.targets):
            raise ValueError(f"{len(self.paths)} paths but {len(self.targets)} labels")
        self.transform, self.loader, self.source = transform, loader, source
        if check_files:
            missing = find_missing(self.root, self.paths)
            if missing:
                listed = f" listed in {source}" if source else ""
                where = "" if self.root.is_dir() else f" (the image root {self.root} does not exist)"
                raise MissingImagesError(
                    f"{len(missing):,} of {len(self.paths):,} images{listed} are missing under {self.root}{where}: "
                    f"{first_few(missing)}. Point data_root at the folder these paths are relative to, or run "
                    f"`longtail data check` on the dataset to list every missing or unreadable file.")

    @classmethod
    def from_split_file(cls, list_file: str | Path, root: str | Path, **kwargs) -> "SplitFileDataset":
        paths, labels = read_split_file(list_file)
        return cls(root, paths, labels, source=kwargs.pop("source", str(list_file)), **kwargs)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        path = os.path.join(self.root, self.paths[index])
        try:
            image = self.loader(path)
        except Exception as err:  # name the file: a bare PIL traceback from a worker says nothing useful
            raise ImageLoadError(
                f"cannot read image {path} (item {index}{' of ' + self.source if self.source else ''}): "
                f"{type(err).__name__}: {err}. Run `longtail data check` on the dataset to find every "
                f"unreadable file, then replace or remove them.") from err
        if self.transform is not None:
            image = self.transform(image)
        return image, int(self.targets[index])

    def with_transform(self, transform: Callable | None) -> "SplitFileDataset":
        """The same images and labels with another transform (shares the lists, checks nothing)."""
        twin = copy.copy(self)
        twin.transform = transform
        return twin

    def subset(self, indices: Sequence[int], transform: Callable | None = None) -> "SplitFileDataset":
        """The items at ``indices`` (no file check: the files were checked, or not, when built)."""
        idx = torch.as_tensor(indices, dtype=torch.int64).tolist()
        return SplitFileDataset(self.root, [self.paths[i] for i in idx], self.targets[idx].tolist(),
                                transform=transform, loader=self.loader, check_files=False, source=self.source)


def class_names_from_paths(paths: Sequence[str], labels: Sequence[int], num_classes: int) -> list[str]:
    """Name class c after the folder of its first image (``train/airfield/x.jpg`` -> ``airfield``,
    ``train/n01440764/x.JPEG`` -> ``n01440764``); ``class_<c>`` when no image has label c."""
    names = [f"class_{c}" for c in range(num_classes)]
    seen: set[int] = set()
    for p, y in zip(paths, labels):
        if y not in seen:
            seen.add(y)
            names[y] = os.path.basename(os.path.dirname(p)) or names[y]
    return names
