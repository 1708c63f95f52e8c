"""CIFAR-10 / CIFAR-100 from image files: a class-folder tree or a tar of one, laid out like the public
JPEG copy of CIFAR-10 (``[PREFIX/]{train,test}/<class name>/<file>.{jpg,png}``).

The images are decoded once, in one pass over the tar or the folders, into a uint8 (N, 32, 32, 3)
tensor per split (the layout of torchvision's CIFAR arrays, so both sources feed the same long-tail
subsampling). Class index = position of the class name in the canonical CIFAR class list, so a
folder copy and torchvision's files give the same labels; a folder that is not a CIFAR class, a
missing class, an empty class or an image that is not 32x32 is an error naming what is wrong.
"""

from __future__ import annotations

import functools
import io
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch import Tensor

# torchvision's CIFAR10.classes / CIFAR100.classes (the order of the labels in the python batches).
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl", "boy",
    "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair", "chimpanzee", "clock",
    "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish",
    "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
    "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom", "oak_tree", "orange", "orchid",
    "otter", "palm_tree", "pear", "pickup_truck", "pine_tree", "plain", "plate", "poppy", "porcupine", "possum",
    "rabbit", "raccoon", "ray", "road", "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper",
    "snail", "snake", "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank",
    "telephone", "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
    "willow_tree", "wolf", "woman", "worm")
CLASSES = {10: CIFAR10_CLASSES, 100: CIFAR100_CLASSES}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
SPLITS = ("train", "test")
OPTIONAL_SPLITS = ("val",)  # present in a long-tailed copy written by write_long_tailed_copy


class CifarImagesError(ValueError):
    """An image copy of CIFAR that cannot be used as it is; the message names the file and the problem."""


@dataclass(frozen=True)
class CifarImages:
    """One split: uint8 images (N, 32, 32, 3) in (class, file name) order and int64 labels (N,)."""

    images: Tensor
    labels: Tensor


def is_image_copy(root: Path) -> bool:
    """True if ``root`` is a tar file or a folder holding ``train/`` (directly or one level down)."""
    root = Path(root)
    if root.is_file():
        return tarfile.is_tarfile(root)
    return (root / "train").is_dir() or any((d / "train").is_dir() for d in _subdirs(root))


def _subdirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def load_cifar_images(root: str | Path, num_classes: int) -> dict[str, CifarImages]:
    """Both splits of an image copy of CIFAR-``num_classes`` (``root``: a tar or a folder), decoded
    once per process (the result is cached on the path and its modification time)."""
    root = Path(root)
    if not root.exists():
        raise CifarImagesError(f"{root} does not exist: point data_root at the CIFAR image tar or folder")
    return _load_cached(root.resolve(), root.stat().st_mtime_ns, num_classes)


@functools.lru_cache(maxsize=2)
def _load_cached(root: Path, mtime: int, num_classes: int) -> dict[str, CifarImages]:
    del mtime  # part of the cache key only: a replaced file is read again
    files = _read_tar(root) if root.is_file() else _read_folder(root)
    present = SPLITS + tuple(s for s in OPTIONAL_SPLITS if any(split == s for split, _ in files))
    return {split: _decode_split(files, split, num_classes, root) for split in present}


def _split_class_of(path: PurePosixPath) -> tuple[str, str] | None:
    """('train' | 'val' | 'test', class name) of ``[prefix/]split/class/file.jpg``, or None for other paths."""
    parts = path.parts
    if len(parts) < 3 or path.suffix.lower() not in IMAGE_SUFFIXES or parts[-3] not in SPLITS + OPTIONAL_SPLITS:
        return None
    return parts[-3], parts[-2]


def _read_tar(path: Path) -> dict[tuple[str, str], list[tuple[str, bytes]]]:
    files: dict[tuple[str, str], list[tuple[str, bytes]]] = {}
    try:
        with tarfile.open(path) as tar:
            for member in tar:
                key = _split_class_of(PurePosixPath(member.name)) if member.isfile() else None
                if key is not None:
                    files.setdefault(key, []).append((member.name, tar.extractfile(member).read()))
    except (tarfile.TarError, EOFError, OSError) as err:
        raise CifarImagesError(f"{path} is not a readable tar ({err}); the archive may be truncated: "
                               "copy it again") from None
    return files


def _read_folder(root: Path) -> dict[tuple[str, str], list[tuple[str, bytes]]]:
    base = root if (root / "train").is_dir() else next(d for d in _subdirs(root) if (d / "train").is_dir())
    files: dict[tuple[str, str], list[tuple[str, bytes]]] = {}
    for split in SPLITS + OPTIONAL_SPLITS:
        for class_dir in _subdirs(base / split):
            for file in sorted(class_dir.iterdir()):
                if file.suffix.lower() in IMAGE_SUFFIXES:
                    files.setdefault((split, class_dir.name), []).append((str(file), file.read_bytes()))
    return files


def _decode_split(files, split: str, num_classes: int, root: Path) -> CifarImages:
    names = CLASSES[num_classes]
    found = {name for s, name in files if s == split}
    unknown = sorted(found - set(names))
    if unknown:
        raise CifarImagesError(f"{root}: {split}/ holds folder(s) {unknown[:5]} that are not CIFAR-{num_classes} "
                               f"classes (expected {', '.join(names[:10])}{', ...' if num_classes > 10 else ''}); "
                               "is this a copy of another dataset?")
    missing = [n for n in names if n not in found]
    if missing and split in SPLITS:
        raise CifarImagesError(f"{root}: {split}/ lacks class folder(s) {missing[:5]} (or they hold no "
                               ".jpg/.png image); the copy is incomplete")
    images, labels = [], []
    for label, name in enumerate(names):
        for file, data in sorted(files.get((split, name), [])):
            try:
                with Image.open(io.BytesIO(data)) as image:
                    pixels = np.asarray(image.convert("RGB"))
            except (UnidentifiedImageError, OSError) as err:
                raise CifarImagesError(f"{file} in {root} cannot be decoded ({err}); the copy is damaged") from None
            if pixels.shape[:2] != (32, 32):
                raise CifarImagesError(f"{file} in {root} is {pixels.shape[:2]}, not a 32x32 CIFAR image")
            images.append(pixels)
            labels.append(label)
    return CifarImages(torch.from_numpy(np.stack(images)), torch.tensor(labels, dtype=torch.int64))


def write_long_tailed_copy(source: str | Path, out: str | Path, num_classes: int, train_indices: Tensor,
                           val_indices: Tensor) -> Path:
    """A compact tar of one long-tailed subset: ``train/`` holds the chosen training images, ``val/`` the
    chosen validation images, ``test/`` the whole test split, each file copied byte for byte (no
    re-encoding) from the image copy ``source``. Indices are into the training split as
    :func:`load_cifar_images` orders it. Read it back with ``presampled=true`` (the subset is taken
    as it is). CIFAR-10-LT IF 100 from the JPEG copy: 33 MB as .tar, ~24 MB as .tar.gz, instead of ~90 MB."""
    source, out = Path(source), Path(out)
    if not is_image_copy(source):
        raise CifarImagesError(f"{source} is not an image copy of CIFAR (a tar or folder of train/<class>/*.jpg); "
                               "only those can be packed without re-encoding")
    files = _read_tar(source) if source.is_file() else _read_folder(source)
    names = CLASSES[num_classes]
    ordered = {split: [(label, name, f, d) for label, name in enumerate(names)
                       for f, d in sorted(files.get((split, name), []))] for split in SPLITS}
    chosen = {"train": [ordered["train"][i] for i in train_indices.tolist()],
              "val": [ordered["train"][i] for i in val_indices.tolist()], "test": ordered["test"]}
    tmp = out.with_suffix(out.suffix + ".tmp")
    # gzip takes the tar's per-file padding back out (33 -> ~24 MB for IF 100); the JPEG bytes stay as they are
    with tarfile.open(tmp, "w:gz" if out.suffix in (".gz", ".tgz") else "w") as tar:
        for split, entries in chosen.items():
            for _, name, file, data in entries:
                info = tarfile.TarInfo(f"{split}/{name}/{PurePosixPath(file).name}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    tmp.replace(out)
    return out
