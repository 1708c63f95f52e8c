"""Datasets by name. A factory returns a :class:`LongTailedData`: train / val / test datasets and
the training class counts every long-tail method needs."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from torch import Tensor
from torch.utils.data import Dataset

from ..registry import Registry
from . import sources, transforms
from .array_dataset import ArrayImageDataset
from .long_tail import Profile, long_tailed_counts, long_tailed_split


@dataclass
class LongTailedData:
    """train: the long-tailed training set; val: balanced, for model selection; test: balanced.

    ``train_labels`` (N,) lets samplers work without touching images. ``train_eval`` is the training
    set with test-time transforms (used to cache features for decoupled stage 2)."""

    name: str
    train: Dataset
    val: Dataset
    test: Dataset
    train_labels: Tensor
    class_counts: list[int]
    class_names: list[str]
    in_channels: int
    image_size: int
    train_eval: Dataset | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_counts)


DATASETS: Registry[LongTailedData] = Registry("dataset")
register_dataset = DATASETS.register


def build_dataset(name: str, **options: Any) -> LongTailedData:
    """Build dataset ``name``; options that are ``None`` keep the factory's default, options the
    factory does not take are an error naming them."""
    factory = DATASETS.get(name)
    params = inspect.signature(factory).parameters
    given = {k: v for k, v in options.items() if v is not None}
    unknown = sorted(k for k in given if k not in params)
    if unknown:
        raise ValueError(f"dataset {name!r} does not take option(s) {unknown}; it takes {sorted(params)}")
    return factory(**given)


def _from_arrays(name: str, train_images: Tensor, train_labels: Tensor, test_images: Tensor,
                 test_labels: Tensor, *, counts: list[int], val_per_class: int, seed: int,
                 transform_factory: Callable[..., Any], augment: bool, class_names: list[str]) -> LongTailedData:
    split = long_tailed_split(train_labels, counts, val_per_class=val_per_class, seed=seed)
    source = ArrayImageDataset(train_images, train_labels)
    train_tf, test_tf = transform_factory(train=True, augment=augment), transform_factory(train=False)
    train = source.subset(split.train, train_tf)
    return LongTailedData(
        name=name, train=train, val=source.subset(split.val, test_tf),
        test=ArrayImageDataset(test_images, test_labels, test_tf), train_labels=train.targets,
        class_counts=split.class_counts, class_names=class_names, in_channels=source.images.shape[1],
        image_size=source.images.shape[-1], train_eval=source.subset(split.train, test_tf))


@register_dataset("fashion_mnist_lt")
def fashion_mnist_lt(root: str | Path | None = None, imbalance_factor: float = 100.0, n_max: int = 1000,
                     profile: Profile = "exp", val_per_class: int = 200, seed: int = 0,
                     download: bool = False, augment: bool = True) -> LongTailedData:
    """Fashion-MNIST-LT, the embedded default: 10 classes, exponential profile from ``n_max`` = 1000
    (IF 100: 2,478 training images, counts 1000 ... 10, so many / medium / few = 5 / 3 / 2 classes),
    balanced val drawn from the leftover training images, the balanced 10,000-image test set."""
    root = Path(root) if root is not None else sources.default_data_root()
    tr_x, tr_y = sources.load_fashion_mnist(root, train=True, download=download)
    te_x, te_y = sources.load_fashion_mnist(root, train=False, download=download)
    counts = long_tailed_counts(10, n_max, imbalance_factor, profile)
    return _from_arrays("fashion_mnist_lt", tr_x, tr_y, te_x, te_y, counts=counts, val_per_class=val_per_class,
                        seed=seed, transform_factory=transforms.fashion_mnist_transforms, augment=augment,
                        class_names=list(sources.FASHION_MNIST_CLASSES))


def _cifar_lt(num_classes: int, root, imbalance_factor, n_max, profile, val_per_class, seed, download,
              augment, autoaugment) -> LongTailedData:
    root = Path(root) if root is not None else sources.default_data_root()
    tr_x, tr_y, names = sources.load_cifar(root, num_classes, train=True, download=download)
    te_x, te_y, _ = sources.load_cifar(root, num_classes, train=False, download=download)
    counts = long_tailed_counts(num_classes, n_max or 50000 // num_classes, imbalance_factor, profile)

    def tf(train: bool, augment: bool = True):
        return transforms.cifar_transforms(train, augment=augment, autoaugment=autoaugment, cutout=autoaugment)

    return _from_arrays(f"cifar{num_classes}_lt", tr_x, tr_y, te_x, te_y, counts=counts,
                        val_per_class=val_per_class, seed=seed, transform_factory=tf, augment=augment,
                        class_names=names)


@register_dataset("cifar10_lt")
def cifar10_lt(root: str | Path | None = None, imbalance_factor: float = 100.0, n_max: int = 5000,
               profile: Profile = "exp", val_per_class: int = 20, seed: int = 0, download: bool = False,
               augment: bool = True, autoaugment: bool = True) -> LongTailedData:
    """CIFAR-10-LT (n_max 5000; IF 100: 12,406 images). Val: 20 leftover images per class."""
    return _cifar_lt(10, root, imbalance_factor, n_max, profile, val_per_class, seed, download, augment, autoaugment)


@register_dataset("cifar100_lt")
def cifar100_lt(root: str | Path | None = None, imbalance_factor: float = 100.0, n_max: int = 500,
                profile: Profile = "exp", val_per_class: int = 20, seed: int = 0, download: bool = False,
                augment: bool = True, autoaugment: bool = True) -> LongTailedData:
    """CIFAR-100-LT (n_max 500; IF 100: 10,847 images). Val: 20 leftover images per class (the
    tail class keeps 5 of its 500, so at most 495 are left)."""
    return _cifar_lt(100, root, imbalance_factor, n_max, profile, val_per_class, seed, download, augment, autoaugment)


@register_dataset("synthetic_lt")
def synthetic_lt(num_classes: int = 6, imbalance_factor: float = 20.0, n_max: int = 60, image_size: int = 16,
                 val_per_class: int = 10, test_per_class: int = 20, seed: int = 0, noise: float = 60.0,
                 profile: Profile = "exp") -> LongTailedData:
    """A generated dataset for tests and smoke runs (no files needed): class prototypes + noise."""
    counts = long_tailed_counts(num_classes, n_max, imbalance_factor, profile)
    # the data seed is fixed so that every run (and every rank) sees the same images
    tr_x, tr_y = sources.make_synthetic(num_classes, n_max + val_per_class, image_size=image_size, seed=1234, noise=noise)
    te_x, te_y = sources.make_synthetic(num_classes, test_per_class, image_size=image_size, seed=4321, noise=noise)
    return _from_arrays("synthetic_lt", tr_x, tr_y, te_x, te_y, counts=counts, val_per_class=val_per_class,
                        seed=seed, transform_factory=transforms.synthetic_transforms, augment=False,
                        class_names=[f"class_{i}" for i in range(num_classes)])
