"""`longtail eval RUN_OR_CHECKPOINT`: rebuild the data and model from the run's resolved config and
evaluate the selected weights."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from rich.table import Table

from ..config import TrainConfig, _check_keys
from ..engine import distributed as dist_utils
from ..engine import extract_features, load_checkpoint, predict
from ..engine.checkpoint import CheckpointError, find_weights
from ..evaluation import score_logits, write_prediction_reports
from . import build
from .output import make_console

console = make_console()


def locate(target: str | Path) -> tuple[Path, Path]:
    """(run directory, weights file) from a run directory or a checkpoint path."""
    return find_weights(target, hint="give a longtail run directory such as runs/ce, or a .pt file")


def load_run_config(run_dir: Path) -> TrainConfig:
    path = run_dir / "config.yaml"
    if not path.exists():
        raise CheckpointError(f"{run_dir} has no config.yaml, so the model cannot be rebuilt")
    values = yaml.safe_load(path.read_text())
    _check_keys(TrainConfig, values, str(path))
    return TrainConfig(**values)


def run_eval(target: str | Path, *, split: str = "test", device: str = "auto", as_json: bool = False,
             features: bool = False) -> dict:
    """Score a run's selected weights on ``split`` and save the split's logits and reports next to the run;
    ``features``: also the backbone features (``{split}_features.npz``, what `longtail posthoc` tau-norm reads
    instead of recomputing them)."""
    run_dir, weights = locate(target)
    cfg = load_run_config(run_dir)
    cfg.device = device
    info = dist_utils.setup(device)
    data = build.build_data(cfg)
    model = build.build_model(cfg, data).to(info.device)
    state = load_checkpoint(weights)
    model.load_state_dict(state["model"])
    loader = build.eval_loader(data.test if split == "test" else data.val, cfg, info)
    logits, targets = predict(model, loader, info.device)
    scale = build.probability_scale(cfg, data)
    metrics = score_logits(logits, targets, data.class_counts, cfg.many_threshold, cfg.few_threshold, scale)
    if info.is_main:  # logits, confusion matrix, per-class precision / recall of the split, next to the run
        written = write_prediction_reports(run_dir, logits, targets, data.class_names, prefix=split,
                                           weights_epoch=state.get("epoch"), probability_scale=scale)
        metrics["reports"] = [str(p) for p in written]
        if features:  # one process computes them over the whole split, in order
            import numpy as np
            from torch.utils.data import DataLoader

            feats, labels = extract_features(model.backbone, DataLoader(loader.dataset, batch_size=cfg.eval_batch_size),
                                             info.device)
            path = run_dir / f"{split}_features.npz"
            np.savez_compressed(path, features=feats.numpy(), targets=labels.numpy(), weights_epoch=state.get("epoch", -1))
            metrics["reports"].append(str(path))
    if as_json:
        print(json.dumps(metrics, indent=2))
    else:
        table = Table(title=f"{run_dir.name} ({weights.name}) on {split}")
        for col in ("top-1", "mean-class", "many", "medium", "few", "top-5", "ECE"):
            table.add_column(col, justify="right")
        table.add_row(*[_fmt(metrics[k]) for k in ("top1", "mean_class", "many", "medium", "few", "top5", "ece")])
        console.print(table)
        console.print(f"logits, confusion matrix and per-class precision / recall -> {run_dir}/{split}_*")
    return metrics


def _fmt(x: float) -> str:
    return "-" if x != x else f"{100 * x:.2f}"
