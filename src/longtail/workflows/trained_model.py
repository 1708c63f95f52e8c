"""What `longtail predict` and `longtail export` need of a run: its model and data pipeline, read from the run itself.

A run records its class names, training counts and test-time input pipeline (:class:`~longtail.data.inputs.
InputSpec`) in ``metrics.json``, so applying or exporting it needs neither the dataset nor the time to load
it (CIFAR: decoding 60,000 JPEGs). Runs that predate the record, datasets whose pipeline the record cannot
describe, and an explicit ``--data-root`` rebuild the data as `longtail eval` does.

A post-hoc run (`longtail posthoc`: tau-norm or logit adjustment of a stage-1 run, no weights of its own) is
its stage-1 model with the chosen correction baked into the linear head, so its plain logits are the
corrected ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from PIL import Image

from ..config import ConfigError, TrainConfig
from ..data import ArrayImageDataset
from ..data.inputs import InputSpec, to_pixels
from ..engine import load_checkpoint
from ..engine.trainer import METRICS_FILE
from ..evaluation import correct_linear_head
from . import build
from .run_files import load_run_config, locate, posthoc_record, rebuild_run_data


@dataclass
class RunInputs:
    """The run's classes and input pipeline. Has what :func:`~longtail.workflows.build.build_model` and
    ``build_loss`` read of a dataset (``num_classes``, ``in_channels``, ``class_counts``)."""

    class_names: list[str]
    class_counts: list[int]
    in_channels: int
    image_size: int
    preprocess: Callable[[Image.Image], torch.Tensor]  # PIL image -> the tensor the model was tested on
    pipeline: str | None = None  # that preprocessing in words (None: the dataset's own transform, undescribed)

    @property
    def num_classes(self) -> int:
        return len(self.class_counts)


@dataclass
class TrainedModel:
    run_dir: Path  # the run asked for (a post-hoc run's own directory: outputs default there)
    weights: Path  # the weights file loaded (a post-hoc run's: its stage-1 run's)
    cfg: TrainConfig  # the training config of the weights
    model: torch.nn.Module  # on the CPU, eval mode; a post-hoc correction already in its head
    inputs: RunInputs
    probability_scale: float  # softmax(scale * logits) are the model's probabilities (LDAM: s, else 1)
    posthoc: dict | None  # method, tau and stage-1 run of a post-hoc run


def load_trained_model(target: str | Path, data_root: str | Path | None = None,
                       how_to_pass: str = "data_root=PATH") -> TrainedModel:
    """The model of a run directory or weights file, or of a post-hoc run (see the module's docstring), with
    its classes and test-time preprocessing. ``data_root`` and ``how_to_pass``: for runs that must rebuild their
    data (no record), where it is now and how the caller names that in an error."""
    run_dir, stage1_dir, weights, posthoc = resolve_run(target)
    cfg = load_run_config(stage1_dir)
    inputs = run_inputs(stage1_dir, cfg, data_root, how_to_pass)
    model = build.build_model(cfg, inputs)
    model.load_state_dict(load_checkpoint(weights)["model"])
    scale = build.probability_scale(cfg, inputs)
    apply_posthoc(model, run_dir, posthoc, inputs.class_counts, scale)
    return TrainedModel(run_dir, weights, cfg, model.eval(), inputs, scale, posthoc)


def resolve_run(target: str | Path) -> tuple[Path, Path, Path, dict | None]:
    """(the run asked for, the run whose weights and training config it uses, the weights file, the post-hoc
    record or None): for a trained run the first two are the same directory."""
    run_dir = Path(target)
    posthoc = posthoc_record(run_dir)
    if posthoc is not None:
        stage1_dir = _stage1_of(run_dir, posthoc)
        return run_dir, stage1_dir, stage1_dir / posthoc["weights"], posthoc
    run_dir, weights = locate(target)
    return run_dir, run_dir, weights, None


def apply_posthoc(model: torch.nn.Module, run_dir: Path, posthoc: dict | None, class_counts: list[int],
                  scale: float) -> None:
    """Bake a post-hoc run's correction into the stage-1 model's head (nothing for a trained run)."""
    if posthoc is None:
        return
    try:
        correct_linear_head(model.head, posthoc["method"], float(posthoc["tau"]), class_counts, scale)
    except ValueError as err:
        raise ConfigError(f"{run_dir}: {err}") from None


def _stage1_of(run_dir: Path, posthoc: dict) -> Path:
    """The stage-1 run of a post-hoc run: its ``from_run`` as given to `longtail posthoc` (relative to where that
    ran), else the run of that name beside the post-hoc run (a suite's folder, moved as a whole)."""
    given = Path(posthoc["from_run"])
    for candidate in (given, run_dir.parent / given.name):
        if (candidate / posthoc["weights"]).is_file():
            return candidate
    raise ConfigError(f"{run_dir} is a post-hoc correction of the run {given}, whose {posthoc['weights']} is not found "
                      f"there nor beside it ({run_dir.parent / given.name}): run from the folder `longtail posthoc` "
                      "ran in, or apply the stage-1 run directly")


def run_inputs(run_dir: Path, cfg: TrainConfig, data_root: str | Path | None, how_to_pass: str) -> RunInputs:
    """From the run's record unless ``data_root`` is given or the run has none; else from its rebuilt data."""
    path = run_dir / METRICS_FILE
    recorded = json.loads(path.read_text()) if path.is_file() else {}
    if data_root is None and all(recorded.get(k) for k in ("inputs", "class_names", "class_counts")):
        spec = InputSpec.from_dict(recorded["inputs"])
        return RunInputs(list(recorded["class_names"]), [int(n) for n in recorded["class_counts"]], spec.in_channels,
                         spec.image_size, spec.preprocess(), spec.describe())
    data = rebuild_run_data(run_dir, cfg, data_root, how_to_pass)
    spec = InputSpec.of(data)
    preprocess = spec.preprocess() if spec is not None else _dataset_preprocess(data)
    return RunInputs(list(data.class_names), list(data.class_counts), data.in_channels, data.image_size, preprocess,
                     spec.describe() if spec is not None else None)


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
