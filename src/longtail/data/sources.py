"""Where the balanced source datasets come from: torchvision's dataset classes over a data root.

Fashion-MNIST is found, in order, in ``ROOT/FashionMNIST/raw``, in the Debian package
``dataset-fashion-mnist`` (copied into the root), or downloaded by torchvision when allowed.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                       "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot"]


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is not on disk and could not be obtained; the message says how to get it."""


def default_data_root() -> Path:
    return Path(os.environ.get("LONGTAIL_DATA", "data"))


def _install_debian_fashion_mnist(raw: Path) -> bool:
    if not all((DEBIAN_FASHION_MNIST / f"{name}.gz").exists() for name in FASHION_MNIST_FILES):
        return False
    raw.mkdir(parents=True, exist_ok=True)
    for name in FASHION_MNIST_FILES:
        target = raw / name
        if target.exists():
            continue
        tmp = target.with_suffix(".tmp")
        with gzip.open(DEBIAN_FASHION_MNIST / f"{name}.gz", "rb") as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        os.replace(tmp, target)  # atomic: a half-copied file never looks complete
    return True


def load_fashion_mnist(root: Path, train: bool, download: bool = False) -> tuple[Tensor, Tensor]:
    """uint8 images (N, 28, 28) and int64 labels (N,) of the train or test split."""
    from torchvision.datasets import FashionMNIST

    raw = Path(root) / "FashionMNIST" / "raw"
    if not all((raw / name).exists() for name in FASHION_MNIST_FILES):
        if not _install_debian_fashion_mnist(raw) and not download:
            raise DatasetNotFoundError(
                f"Fashion-MNIST is not in {raw}. Install it with `apt-get install dataset-fashion-mnist` "
                f"(Debian/Ubuntu), or allow download (download=true) on a machine with internet access.")
    try:
        ds = FashionMNIST(str(root), train=train, download=download)
    except Exception as err:  # torchvision raises RuntimeError / URLError when offline
        raise DatasetNotFoundError(f"could not load or download Fashion-MNIST into {root}: {err}. "
                                   "Install `dataset-fashion-mnist` or copy the IDX files there.") from err
    return ds.data.clone(), ds.targets.clone()


def load_cifar(root: Path, num_classes: int, train: bool, download: bool = False) -> tuple[Tensor, Tensor, list[str]]:
    """uint8 images (N, 32, 32, 3), labels (N,), class names of CIFAR-10 or CIFAR-100.

    ``root`` is either torchvision's folder (``cifar-10-batches-py`` / ``cifar-100-python`` inside,
    checked against torchvision's checksums) or an image copy: a tar, or a folder, of
    ``train/<class>/*.jpg`` and ``test/<class>/*.jpg`` (see :mod:`longtail.data.cifar_images`)."""
    from torchvision.datasets import CIFAR10, CIFAR100

    from .cifar_images import CLASSES, is_image_copy, load_cifar_images

    root = Path(root)
    if not root.exists() and not download:
        raise DatasetNotFoundError(
            f"CIFAR-{num_classes} data_root {root} does not exist. Point data_root at torchvision's CIFAR folder, or at "
            f"a tar or folder of train/<class>/*.jpg and test/<class>/*.jpg images (docs/datasets.md), or set "
            "download=true on a machine with internet access.")
    if root.exists() and is_image_copy(root):
        split = load_cifar_images(root, num_classes)["train" if train else "test"]
        return split.images, split.labels, list(CLASSES[num_classes])
    cls = {10: CIFAR10, 100: CIFAR100}[num_classes]
    try:
        ds = cls(str(root), train=train, download=download)
    except Exception as err:
        raise DatasetNotFoundError(
            f"CIFAR-{num_classes} is not in {root} (torchvision: {str(err).split('.')[0]}). "
            f"Point data_root at torchvision's CIFAR folder (with "
            f"cifar-{num_classes}-python.tar.gz extracted into it), at a tar or folder of train/<class>/*.jpg and "
            f"test/<class>/*.jpg images, or set download=true on a machine with internet access.") from err
    return torch.from_numpy(ds.data), torch.as_tensor(ds.targets, dtype=torch.int64), list(ds.classes)


def make_synthetic(num_classes: int, per_class: int, *, image_size: int = 16, seed: int = 0,
                   noise: float = 60.0) -> tuple[Tensor, Tensor]:
    """A generated, learnable image dataset for tests: each class is a fixed random grayscale
    prototype; samples are the prototype plus Gaussian noise, as uint8 (N, S, S)."""
    rng = np.random.default_rng(seed)
    prototypes = rng.uniform(40, 215, size=(num_classes, image_size, image_size))
    labels = np.repeat(np.arange(num_classes), per_class)
    images = prototypes[labels] + rng.normal(0, noise, size=(len(labels), image_size, image_size))
    return (torch.from_numpy(np.clip(images, 0, 255).astype(np.uint8)),
            torch.from_numpy(labels.astype(np.int64)))
