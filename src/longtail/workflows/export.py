"""`longtail export RUN [--out DIR]`: the run's selected weights as a plain state dict, a TorchScript
module and a JSON card (architecture, class names and counts, input size, normalisation)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..data.transforms import normalisation_of
from ..models.export import export_classifier
from .output import make_console
from .trained_model import RunInputs, load_trained_model

console = make_console()


def run_export(target: str | Path, out: str | Path | None = None, data_root: str | Path | None = None) -> dict[str, Path]:
    """``target``: a run directory, weights file or post-hoc run (its stage-1 model with the correction in the
    head). The card's classes, counts and input size come from the run's ``metrics.json``; ``data_root``: rebuild
    them from the run's dataset there instead (runs trained before longtail recorded them, whose data moved)."""
    trained = load_trained_model(target, data_root, f"longtail export {target} --data-root PATH")
    cfg, data = trained.cfg, trained.inputs
    example = example_batch(data)
    mean, std = normalisation_of(cfg.dataset)
    card = {"run": str(trained.run_dir), "weights": str(trained.weights), "dataset": cfg.dataset, "model": cfg.model,
            "model_options": cfg.model_options, "head": cfg.head, "loss": cfg.loss, "sampler": cfg.sampler,
            "num_classes": data.num_classes, "in_channels": data.in_channels, "class_names": data.class_names,
            "class_counts": data.class_counts, "normalise": {"scale": "uint8 / 255", "mean": list(mean), "std": list(std)},
            "preprocess": data.pipeline or f"the test transform of {cfg.dataset}", "probability_scale": trained.probability_scale,
            "output": "plain logits (no training-time prior correction); softmax(probability_scale * logits) for "
                      "probabilities (the scale is 1 but for losses such as LDAM that scale cosine logits)"}
    if trained.posthoc is not None:
        card["posthoc"] = {k: trained.posthoc[k] for k in ("method", "tau", "from_run")}
        card["output"] = (f"logits with the post-hoc correction ({trained.posthoc['method']}, tau "
                          f"{trained.posthoc['tau']:g}) in the head; softmax(probability_scale * logits) for probabilities")
    run_dir, model = trained.run_dir, trained.model
    paths = export_classifier(model, Path(out) if out else run_dir / "export", card=card, example=example)
    for kind, path in paths.items():
        console.print(f"{kind:<12} -> {path}")
    return paths


def example_batch(data: RunInputs) -> torch.Tensor:
    """Two images the model's preprocessing made (seeded noise: tracing needs only the shape and dtype)."""
    rng = np.random.default_rng(0)
    size, mode = data.image_size, "L" if data.in_channels == 1 else "RGB"
    shape = (size, size) if mode == "L" else (size, size, 3)
    return torch.stack([data.preprocess(Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8)))
                        for _ in range(2)])
