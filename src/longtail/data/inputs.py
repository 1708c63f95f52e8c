"""What a trained model needs to see a new image as it saw its test images, known without the dataset.

`longtail predict` and `longtail export` used to rebuild the whole training dataset for this (decoding
60,000 CIFAR JPEGs to classify one image, and failing wherever the data is not). The test pipelines of the
registered datasets are fixed by a few facts a run records in its ``metrics.json`` (``"inputs"``): the
number of channels, the image size, and whether the images are held in memory at that size (Fashion-MNIST,
CIFAR, the generated set: a new image is resized to it, then scaled and normalised) or read from files
(ImageNet-LT, Places-LT, iNaturalist, image folders: resized to size * 256/224 and centre-cropped); the
normalisation follows from the dataset's name. :meth:`InputSpec.of` checks the facts against the dataset's
own first test image before a run records them, so a dataset with another test pipeline (one a user
registered) records nothing, and predict / export then rebuild its data as before.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from .array_dataset import ArrayImageDataset
from .split_file import ImageLoadError, SplitFileDataset
from .transforms import BatchAugment, imagenet_transforms, normalisation_of, stats_family


def to_pixels(image: Image.Image, channels: int, size: int) -> Tensor:
    """A PIL image as the in-memory datasets hold theirs: uint8 (C, H, W), ``size`` x ``size`` (bilinear resize
    where it differs), grayscale for one channel, else RGB."""
    image = image.convert("L" if channels == 1 else "RGB")
    if image.size != (size, size):
        image = image.resize((size, size), Image.BILINEAR)
    pixels = torch.from_numpy(np.array(image, dtype=np.uint8, copy=True))
    return pixels[None] if pixels.ndim == 2 else pixels.permute(2, 0, 1)


@dataclass(frozen=True)
class InputSpec:
    dataset: str
    in_channels: int
    image_size: int
    in_memory: bool  # uint8 tensors at image_size (a new image is resized to it) rather than files (resize + crop)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "InputSpec":
        return cls(dataset=str(values["dataset"]), in_channels=int(values["in_channels"]),
                   image_size=int(values["image_size"]), in_memory=bool(values["in_memory"]))

    def describe(self) -> str:
        """The pipeline in words, for a model used outside longtail (the export card)."""
        mode = "grayscale" if self.in_channels == 1 else "RGB"
        mean, std = normalisation_of(self.dataset)
        size = self.image_size
        geometry = (f"resize to {size}x{size} (bilinear) where the size differs" if self.in_memory else
                    f"resize the shorter side to {round(size * 256 / 224)} (bilinear, antialiased), centre crop {size}x{size}")
        return f"{mode}; {geometry}; uint8 / 255; normalise with mean {list(mean)} and std {list(std)}; (C, H, W)"

    def preprocess(self) -> Callable[[Image.Image], Tensor]:
        """PIL image -> the (C, H, W) float tensor the model was tested on."""
        mode = "L" if self.in_channels == 1 else "RGB"
        if not self.in_memory:
            transform = imagenet_transforms(train=False, size=self.image_size, family=stats_family(self.dataset))
            return lambda image: transform(image.convert(mode))
        mean, std = normalisation_of(self.dataset)
        scale = BatchAugment(train=False, mean=mean, std=std)  # the in-memory datasets' own test transform
        return lambda image: scale(to_pixels(image, self.in_channels, self.image_size)[None])[0]

    @classmethod
    def of(cls, data) -> Optional["InputSpec"]:
        """The spec of a :class:`~longtail.data.LongTailedData`, or None where it does not reproduce the
        dataset's own test tensor for its first test image (another pipeline) or cannot be checked."""
        test = data.test
        if len(test) == 0 or not isinstance(test, (ArrayImageDataset, SplitFileDataset)):
            return None
        spec = cls(data.name, int(data.in_channels), int(data.image_size), isinstance(test, ArrayImageDataset))
        try:
            if isinstance(test, ArrayImageDataset):
                pixels = test.images[0].permute(1, 2, 0).numpy()
                image = Image.fromarray(pixels[..., 0] if pixels.shape[-1] == 1 else pixels)
            else:
                image = test.loader(str(test.root / test.paths[0]))
            mine, theirs = spec.preprocess()(image), test[0][0]
        except (OSError, TypeError, ValueError, RuntimeError, ImageLoadError):  # unreadable, or another pipeline
            return None
        theirs = torch.as_tensor(theirs)
        if mine.shape != theirs.shape or not torch.allclose(mine, theirs.float(), atol=1e-5):
            return None
        return spec
