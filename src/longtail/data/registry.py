"""Datasets by name. A factory returns a :class:`LongTailedData`: train / val / test datasets and
the training class counts every long-tail method needs."""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import Tensor
from torch.utils.data import Dataset

from ..registry import Registry, non_bool_flags
from . import sources, transforms
from .array_dataset import ArrayImageDataset
from .image_folder import load_image_folders
from .long_tail import Profile, long_tailed_counts, long_tailed_split
from .split_file import SplitFileDataset, class_names_from_paths, find_split_file, read_split_file


@dataclass
class LongTailedData:
    """train: the long-tailed training set; val: balanced, for model selection; test: balanced.

    ``train_labels`` (N,) lets samplers work without touching images."""

    name: str
    train: Dataset
    val: Dataset
    test: Dataset
    train_labels: Tensor
    class_counts: list[int]
    class_names: list[str]
    in_channels: int
    image_size: int
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
    wrong = non_bool_flags(factory, given)
    if wrong:
        raise ValueError(f"dataset {name!r}: {', '.join(wrong)} must be true or false")
    return factory(**given)


def _from_arrays(name: str, train_images: Tensor, train_labels: Tensor, test_images: Tensor,
                 test_labels: Tensor, *, counts: list[int], val_per_class: int, seed: int,
                 transform_factory: Callable[..., Any], augment: bool, class_names: list[str],
                 partial_val: bool = False) -> LongTailedData:
    split = long_tailed_split(train_labels, counts, val_per_class=val_per_class, seed=seed, partial_val=partial_val)
    source = ArrayImageDataset(train_images, train_labels)
    train_tf, test_tf = transform_factory(train=True, augment=augment), transform_factory(train=False)
    train = source.subset(split.train, train_tf)
    val = source.subset(split.val, test_tf)
    notes = {}
    short = [c for c, n in enumerate(torch.bincount(val.targets, minlength=len(counts)).tolist()) if n < val_per_class]
    if short:
        notes["val"] = (f"classes {short} have fewer than {val_per_class} validation images (none left over by the "
                        "subsampling); val metrics average over the classes that have some")
    return LongTailedData(
        name=name, train=train, val=val,
        test=ArrayImageDataset(test_images, test_labels, test_tf), train_labels=train.targets,
        class_counts=split.class_counts, class_names=class_names, in_channels=source.images.shape[1],
        image_size=source.images.shape[-1], notes=notes)


@register_dataset("fashion_mnist_lt")
def fashion_mnist_lt(root: str | Path | None = None, imbalance_factor: float = 100.0, n_max: int = 1000,
                     profile: Profile = "exp", val_per_class: int = 200, seed: int = 0,
                     download: bool = False, augment: bool = True, batched: bool = True) -> LongTailedData:
    """Fashion-MNIST-LT, the embedded default: 10 classes, exponential profile from ``n_max`` = 1000
    (IF 100: 2,478 training images, counts 1000 ... 10, so many / medium / few = 5 / 3 / 2 classes),
    balanced val drawn from the leftover training images, the balanced 10,000-image test set.
    Augmentation: RandomCrop(28, pad 2) + flip; ``batched``: applied to whole batches (the per-sample
    pipeline made validation and test passes several times slower than the model)."""
    if root is not None and not Path(root).exists() and not download:
        # a mistyped data_root must not be created (and filled with 53 MB) somewhere on disk
        raise sources.DatasetNotFoundError(f"data_root {root} does not exist. Fix the path, leave data_root unset to use "
                                           f"{sources.default_data_root()}, or pass download=true to create it")
    root = Path(root) if root is not None else sources.default_data_root()
    tr_x, tr_y = sources.load_fashion_mnist(root, train=True, download=download)
    te_x, te_y = sources.load_fashion_mnist(root, train=False, download=download)
    counts = long_tailed_counts(10, n_max, imbalance_factor, profile)
    make = transforms.fashion_mnist_batch_transforms if batched else transforms.fashion_mnist_transforms
    return _from_arrays("fashion_mnist_lt", tr_x, tr_y, te_x, te_y, counts=counts, val_per_class=val_per_class,
                        seed=seed, transform_factory=make, augment=augment,
                        class_names=list(sources.FASHION_MNIST_CLASSES))


def _cifar_lt(num_classes: int, root, imbalance_factor, n_max, profile, val_per_class, seed, download,
              augment, autoaugment, cutout, batched, presampled) -> LongTailedData:
    root = Path(root) if root is not None else sources.default_data_root()
    counts = long_tailed_counts(num_classes, n_max or 50000 // num_classes, imbalance_factor, profile)
    make = transforms.cifar_batch_transforms if batched else transforms.cifar_transforms
    cutout = autoaugment if cutout is None else cutout

    def tf(train: bool, augment: bool = True):
        return make(train, augment=augment, autoaugment=autoaugment, cutout=cutout)

    if presampled:
        return _presampled_cifar(num_classes, root, counts, tf, augment)
    tr_x, tr_y, names = sources.load_cifar(root, num_classes, train=True, download=download)
    te_x, te_y, _ = sources.load_cifar(root, num_classes, train=False, download=download)

    return _from_arrays(f"cifar{num_classes}_lt", tr_x, tr_y, te_x, te_y, counts=counts,
                        val_per_class=val_per_class, seed=seed, transform_factory=tf, augment=augment,
                        class_names=names, partial_val=True)


def _presampled_cifar(num_classes: int, root: Path, counts: list[int], tf, augment: bool) -> LongTailedData:
    """A copy whose train/ already is the long-tailed subset (``write_long_tailed_copy``): taken as it is,
    after checking that its class counts are the ones the imbalance settings give."""
    from .cifar_images import CLASSES, load_cifar_images

    splits = load_cifar_images(root, num_classes)
    have = torch.bincount(splits["train"].labels, minlength=num_classes).tolist()
    if have != counts:
        raise ValueError(f"{root}: presampled train/ holds {have} images per class, but imbalance_factor / n_max / "
                         f"profile give {counts}; pass the settings the copy was written with")
    empty = torch.empty(0, 32, 32, 3, dtype=torch.uint8)
    val = splits.get("val")
    val_set = ArrayImageDataset(val.images if val else empty, val.labels if val else torch.empty(0), tf(False))
    train = ArrayImageDataset(splits["train"].images, splits["train"].labels, tf(True, augment))
    return LongTailedData(
        name=f"cifar{num_classes}_lt", train=train, val=val_set,
        test=ArrayImageDataset(splits["test"].images, splits["test"].labels, tf(False)), train_labels=train.targets,
        class_counts=counts, class_names=list(CLASSES[num_classes]), in_channels=3, image_size=32,
        notes={"presampled": str(root)})


_CIFAR_DOC = """
    ``root``: torchvision's CIFAR folder, or a tar / folder of ``train/<class>/*.jpg`` and
    ``test/<class>/*.jpg`` images (e.g. the public JPEG copy of CIFAR-10); decoded once into memory.
    Test: the 10,000 test images. Validation: ``val_per_class`` images per class from the training
    images the subsampling left over; a class with fewer left over gives what it has (at n_max =
    images per class, the head class keeps all of its images and has none). The configs therefore
    select on the last epoch, as the papers' cosine schedules do, and use val for monitoring.
    Augmentation: RandomCrop(32, pad 4) + flip, plus AutoAugment (CIFAR-10 policy) when
    ``autoaugment`` and Cutout(16) when ``cutout`` (default: = autoaugment), the BALMS recipe;
    ``batched``: the same pipeline applied to whole batches (much faster, same distribution).
    ``presampled``: ``root`` is a compact copy of one subset (``benchmarks/cifar10_lt_gpu.py pack``),
    whose train/ and val/ are used as they are."""


@register_dataset("cifar10_lt")
def cifar10_lt(root: str | Path | None = None, imbalance_factor: float = 100.0, n_max: int = 5000,
               profile: Profile = "exp", val_per_class: int = 20, seed: int = 0, download: bool = False,
               augment: bool = True, autoaugment: bool = True, cutout: bool | None = None,
               batched: bool = True, presampled: bool = False) -> LongTailedData:
    return _cifar_lt(10, root, imbalance_factor, n_max, profile, val_per_class, seed, download, augment, autoaugment,
                     cutout, batched, presampled)


@register_dataset("cifar100_lt")
def cifar100_lt(root: str | Path | None = None, imbalance_factor: float = 100.0, n_max: int = 500,
                profile: Profile = "exp", val_per_class: int = 20, seed: int = 0, download: bool = False,
                augment: bool = True, autoaugment: bool = True, cutout: bool | None = None,
                batched: bool = True, presampled: bool = False) -> LongTailedData:
    return _cifar_lt(100, root, imbalance_factor, n_max, profile, val_per_class, seed, download, augment,
                     autoaugment, cutout, batched, presampled)


cifar10_lt.__doc__ = "CIFAR-10-LT (n_max 5000; IF 100: 12,406 images, IF 200: 11,203)." + _CIFAR_DOC
cifar100_lt.__doc__ = "CIFAR-100-LT (n_max 500; IF 100: 10,847 images, IF 200: 9,502)." + _CIFAR_DOC


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


# --- file-based datasets: split lists over an image root (ImageNet-LT, Places-LT, iNaturalist 2018) and
# --- a user's own image folders. Images are decoded only when indexed.

def _file_data(name: str, train: SplitFileDataset, val: SplitFileDataset, test: SplitFileDataset, *,
               num_classes: int, class_names: list[str] | None, transform_factory: Callable[..., Any], augment: bool,
               image_size: int, notes: dict[str, Any]) -> LongTailedData:
    """``num_classes``: from the dataset's definition (never the largest label seen)."""
    counts = torch.bincount(train.targets, minlength=num_classes).tolist()
    test_tf = transform_factory(train=False, size=image_size)
    if not class_names:  # from all three lists: a class may be absent from a (subset) training list
        splits = (train, val, test)
        class_names = class_names_from_paths([p for d in splits for p in d.paths],
                                             [y for d in splits for y in d.targets.tolist()], num_classes)
    return LongTailedData(
        name=name, train=train.with_transform(transform_factory(train=True, augment=augment, size=image_size)),
        val=val.with_transform(test_tf), test=test.with_transform(test_tf), train_labels=train.targets,
        class_counts=counts, class_names=class_names,
        in_channels=3, image_size=image_size, notes=notes)


def _from_split_lists(name: str, root: str | Path | None, files: dict[str, str], *, split_dir, shipped: str | None,
                      check_files: bool, num_classes: int, hints: dict[str, str] | None = None,
                      **kwargs: Any) -> LongTailedData:
    """``files``: split -> list file name; val and test may name the same file (read once)."""
    root = Path(root) if root is not None else sources.default_data_root() / name
    hints = hints or {}
    lists = {split: find_split_file(f, split_dir=split_dir, shipped=shipped, root=root, hint=hints.get(split, ""))
             for split, f in files.items()}
    built: dict[Path, SplitFileDataset] = {}
    for path in dict.fromkeys(lists.values()):
        paths, labels = read_split_file(path, num_classes)
        built[path] = SplitFileDataset(root, paths, labels, check_files=check_files, source=str(path))
    notes = {"root": str(root), **{f"{split}_list": str(path) for split, path in lists.items()}}
    return _file_data(name, *(built[lists[s]] for s in ("train", "val", "test")), num_classes=num_classes,
                      class_names=None, notes=notes, **kwargs)


@register_dataset("places_lt")
def places_lt(root: str | Path | None = None, split_dir: str | Path | None = None, image_size: int = 224,
              augment: bool = True, check_files: bool = True, seed: int = 0, num_classes: int = 365) -> LongTailedData:
    """Places-LT (Liu et al. 2019): 365 classes, 62,500 training images (4,980 ... 5 per class; many /
    medium / few = 131 / 163 / 71 classes), val 20 and test 100 images per class, from the OLTR lists
    shipped with longtail. ``root``: the Places365-Standard folder the lists' paths are relative to
    (``train/<class>/...``, ``val/<class>/...``). ``split_dir``: a folder of lists that replace the
    shipped ones. ``seed`` is unused (the lists fix the splits)."""
    files = {"train": "Places_LT_train.txt", "val": "Places_LT_val.txt", "test": "Places_LT_test.txt"}
    return _from_split_lists("places_lt", root, files, split_dir=split_dir, shipped="places_lt", check_files=check_files,
                             num_classes=num_classes, transform_factory=transforms.imagenet_transforms, augment=augment,
                             image_size=image_size)


IMAGENET_LT_TRAIN_HINT = (
    "The ImageNet-LT training list (ImageNet_LT_train.txt, 115,846 lines) does not ship with longtail: download "
    "it from the OLTR release (https://github.com/zhmiao/OpenLongTailRecognition-OLTR, README 'Data "
    "Preparation', Google Drive folder) and pass dataset_options={split_dir: FOLDER_WITH_THE_LIST}, or put it "
    "in data_root.")


@register_dataset("imagenet_lt")
def imagenet_lt(root: str | Path | None = None, split_dir: str | Path | None = None, image_size: int = 224,
                augment: bool = True, check_files: bool = True, seed: int = 0, num_classes: int = 1000) -> LongTailedData:
    """ImageNet-LT (Liu et al. 2019): 1,000 classes, 115,846 training images (1,280 ... 5 per class),
    val 20 and test 50 images per class. The val and test lists ship with longtail; the train list
    comes from the OLTR release (see ``split_dir``). ``root``: the ImageNet-2012 folder with
    ``train/<wnid>/...`` and ``val/<wnid>/...``. ``seed`` is unused."""
    files = {"train": "ImageNet_LT_train.txt", "val": "ImageNet_LT_val.txt", "test": "ImageNet_LT_test.txt"}
    return _from_split_lists("imagenet_lt", root, files, split_dir=split_dir, shipped="imagenet_lt",
                             check_files=check_files, num_classes=num_classes, hints={"train": IMAGENET_LT_TRAIN_HINT},
                             transform_factory=transforms.imagenet_transforms, augment=augment, image_size=image_size)


INAT_HINT = ("The iNaturalist 2018 lists (iNaturalist18_train.txt / iNaturalist18_val.txt, 'relative/path label' "
             "lines) come with the code of Kang et al. 2020 (https://github.com/facebookresearch/classifier-balancing,"
             " data/iNaturalist18), or convert the official train2018.json / val2018.json with its gen_lists.py; "
             "pass dataset_options={split_dir: FOLDER} or put them in data_root.")


@register_dataset("inat2018")
def inat2018(root: str | Path | None = None, split_dir: str | Path | None = None, image_size: int = 224,
             augment: bool = True, check_files: bool = True, seed: int = 0, num_classes: int = 8142) -> LongTailedData:
    """iNaturalist 2018 (Van Horn et al. 2018): 8,142 classes, 437,513 training images, from the
    ``iNaturalist18_{train,val}.txt`` lists (the json annotations of the official release are not read:
    convert them once, see INAT_HINT). The official val set (3 images per class) is the test set of the
    literature and has no labelled sibling, so val and test are both that list: use select_on=last.
    ``root``: the folder holding ``train_val2018/``. ``seed`` is unused."""
    files = {"train": "iNaturalist18_train.txt", "val": "iNaturalist18_val.txt", "test": "iNaturalist18_val.txt"}
    data = _from_split_lists("inat2018", root, files, split_dir=split_dir, shipped=None, check_files=check_files,
                             num_classes=num_classes, hints={"train": INAT_HINT, "val": INAT_HINT, "test": INAT_HINT},
                             transform_factory=transforms.inaturalist_transforms, augment=augment, image_size=image_size)
    data.notes["val"] = "val and test are the same list (iNaturalist18_val.txt): select_on=last"
    return data


@register_dataset("image_folder")
def image_folder(root: str | Path | None = None, val_per_class: int = 20, image_size: int = 224,
                 augment: bool = True, seed: int = 0) -> LongTailedData:
    """A user's own long-tailed images in ImageFolder layout (``longtail.data.image_folder``): class
    counts are counted from the files; without a val folder, ``min(val_per_class, n_c // 2)`` images
    per class are drawn (seeded) from train; without a test folder, test is the val split."""
    root = Path(root) if root is not None else sources.default_data_root() / "image_folder"
    splits = load_image_folders(root, val_per_class=val_per_class, seed=seed)
    return _file_data("image_folder", splits.train, splits.val, splits.test, num_classes=len(splits.classes),
                      class_names=splits.classes,
                      transform_factory=transforms.imagenet_transforms, augment=augment, image_size=image_size,
                      notes={"root": str(root), **splits.notes})

