"""A generated stand-in for an image copy of CIFAR: the layout of the public JPEG copy
(``cifar10_jpeg/{train,test}/<class>/NNNN.png``), every image a 32x32 square whose pixel value encodes
its class (``PIXEL_STEP * label``), so a test can tell which label each decoded image carries."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

from PIL import Image

from longtail.data.cifar_images import CLASSES

PIXEL_STEP = 2


def png_of(value: int, size: int = 32) -> bytes:
    # PIL, not torchvision.io: torchvision deprecates its image codecs from 0.29 on
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), (value, value, value)).save(buffer, format="PNG")
    return buffer.getvalue()


def write_stand_in(path: Path, num_classes: int = 10, per_class: dict[str, int] | None = None,
                   class_names: tuple[str, ...] | None = None, prefix: str = "cifar10_jpeg") -> Path:
    """A tar of ``per_class[split]`` images per class (default: CIFAR's 50,000 / 10,000 split)."""
    per_class = per_class or {"train": 50000 // num_classes, "test": 10000 // num_classes}
    names = class_names or CLASSES[num_classes]
    with tarfile.open(path, "w") as tar:
        for label, name in enumerate(names):
            data = png_of(PIXEL_STEP * label)
            for split, n in per_class.items():
                for i in range(n):
                    info = tarfile.TarInfo(f"{prefix}/{split}/{name}/{i:04d}.png")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return path
