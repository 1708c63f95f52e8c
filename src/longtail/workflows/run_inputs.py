"""What `longtail predict` and `longtail export` need of a run's data, read from the run itself.

A run records its class names, training counts and test-time input pipeline (:class:`~longtail.data.inputs.
InputSpec`) in ``metrics.json``, so applying or exporting it needs neither the dataset nor the time to load
it (CIFAR: decoding 60,000 JPEGs). Runs that predate the record, datasets whose pipeline the record cannot
describe, and an explicit ``--data-root`` rebuild the data as `longtail eval` does.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from PIL import Image

from ..config import TrainConfig
from ..data import ArrayImageDataset
from ..data.inputs import InputSpec, to_pixels
from ..engine.trainer import METRICS_FILE
from .evaluate import rebuild_run_data


@dataclass
class RunInputs:
    """The run's classes and input pipeline. Has what :func:`~longtail.workflows.build.build_model` and
    ``build_loss`` read of a dataset (``num_classes``, ``in_channels``, ``class_counts``)."""

    class_names: list[str]
    class_counts: list[int]
    in_channels: int
    image_size: int
    preprocess: Callable[[Image.Image], torch.Tensor]  # PIL image -> the tensor the model was tested on
    source: str  # "recorded in metrics.json" or "rebuilt from <data_root>"

    @property
    def num_classes(self) -> int:
        return len(self.class_counts)


def run_inputs(run_dir: Path, cfg: TrainConfig, data_root: str | Path | None, how_to_pass: str) -> RunInputs:
    """From the run's record unless ``data_root`` is given or the run has none; else from its rebuilt data."""
    path = run_dir / METRICS_FILE
    recorded = json.loads(path.read_text()) if path.is_file() else {}
    if data_root is None and all(recorded.get(k) for k in ("inputs", "class_names", "class_counts")):
        spec = InputSpec.from_dict(recorded["inputs"])
        return RunInputs(list(recorded["class_names"]), [int(n) for n in recorded["class_counts"]], spec.in_channels,
                         spec.image_size, spec.preprocess(), f"recorded in {path}")
    data = rebuild_run_data(run_dir, cfg, data_root, how_to_pass)
    spec = InputSpec.of(data)
    preprocess = spec.preprocess() if spec is not None else _dataset_preprocess(data)
    return RunInputs(list(data.class_names), list(data.class_counts), data.in_channels, data.image_size, preprocess,
                     f"rebuilt from {cfg.data_root}")


def _dataset_preprocess(data) -> Callable[[Image.Image], torch.Tensor]:
    """The dataset's own test transform applied to a PIL image (a pipeline :class:`InputSpec` cannot describe)."""
    from torchvision import tv_tensors

    test = data.test
    mode = "L" if data.in_channels == 1 else "RGB"
    if not isinstance(test, ArrayImageDataset):
        return lambda image: test.transform(image.convert(mode))  # file-based datasets transform PIL images

    def preprocess(image: Image.Image) -> torch.Tensor:  # in-memory datasets: uint8 (C, H, W) at the dataset's size
        pixels = to_pixels(image, data.in_channels, data.image_size)
        if getattr(test.transform, "batched", False):
            return test.transform(pixels[None])[0]
        return test.transform(tv_tensors.Image(pixels))
    return preprocess
