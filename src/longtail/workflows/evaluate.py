"""`longtail eval RUN_OR_CHECKPOINT`: rebuild the data and model from the run's resolved config and
evaluate the selected weights (a post-hoc run: its stage-1 model with the correction in the head)."""

from __future__ import annotations

import json
from pathlib import Path

from rich.table import Table

from ..engine import distributed as dist_utils
from ..engine import extract_features, load_checkpoint, predict
from ..evaluation import score_logits, write_prediction_reports
from . import build
from .output import make_console
from .run_files import load_run_config, other_data_dir, rebuild_run_data, same_path
from .trained_model import apply_posthoc, resolve_run

console = make_console()


def run_eval(target: str | Path, *, split: str = "test", device: str = "auto", as_json: bool = False,
             features: bool = False, data_root: str | Path | None = None) -> dict:
    """Score a run's selected weights on ``split`` and save the split's logits and reports next to the run;
    ``features``: also the backbone features (``{split}_features.npz``, what `longtail posthoc` tau-norm reads
    instead of recomputing them). ``data_root``: the data at this path instead of the run's own data_root
    (the data moved, or another copy of the same dataset); its reports go to :func:`other_data_dir`, and a copy
    whose long-tailed training counts differ from the run's is refused (it is not the dataset the run learned)."""
    run_dir, stage1_dir, weights, posthoc = resolve_run(target)  # a post-hoc run: its stage-1 run's weights
    cfg = load_run_config(stage1_dir)
    cfg.device = device
    other_data = data_root is not None and not same_path(data_root, cfg.data_root)
    out_dir = other_data_dir(run_dir, data_root) if other_data else run_dir
    info = dist_utils.setup(device)
    data = rebuild_run_data(stage1_dir, cfg, data_root, f"longtail eval {target} --data-root PATH")
    model = build.build_model(cfg, data)
    state = load_checkpoint(weights)
    model.load_state_dict(state["model"])
    scale = build.probability_scale(cfg, data)
    apply_posthoc(model, run_dir, posthoc, data.class_counts, scale)  # the corrected head, for a post-hoc run
    model = model.to(info.device)
    loader = build.eval_loader(data.test if split == "test" else data.val, cfg, info)
    logits, targets = predict(model, loader, info.device)
    metrics = score_logits(logits, targets, data.class_counts, cfg.many_threshold, cfg.few_threshold, scale)
    if other_data:
        metrics["data_root"] = cfg.data_root
    if info.is_main:  # logits, confusion matrix, per-class precision / recall of the split, next to the run
        out_dir.mkdir(parents=True, exist_ok=True)
        written = write_prediction_reports(out_dir, logits, targets, data.class_names, prefix=split,
                                           weights_epoch=state.get("epoch"), probability_scale=scale)
        metrics["reports"] = [str(p) for p in written]
        if features:  # one process computes them over the whole split, in order
            import numpy as np
            from torch.utils.data import DataLoader

            feats, labels = extract_features(model.backbone, DataLoader(loader.dataset, batch_size=cfg.eval_batch_size),
                                             info.device)
            path = out_dir / f"{split}_features.npz"
            np.savez_compressed(path, features=feats.numpy(), targets=labels.numpy(), weights_epoch=state.get("epoch", -1))
            metrics["reports"].append(str(path))
    if as_json:
        print(json.dumps(metrics, indent=2))
    else:
        where = f" of {cfg.data_root}" if other_data else ""
        what = (f"{posthoc['method']} tau {posthoc['tau']:g} on {stage1_dir.name}/{weights.name}" if posthoc
                else weights.name)
        table = Table(title=f"{run_dir.name} ({what}) on {split}{where}")
        for col in ("top-1", "mean-class", "many", "medium", "few", "top-5", "ECE"):
            table.add_column(col, justify="right")
        table.add_row(*[_fmt(metrics[k]) for k in ("top1", "mean_class", "many", "medium", "few", "top5", "ece")])
        console.print(table)
        console.print(f"logits, confusion matrix and per-class precision / recall -> {out_dir}/{split}_*")
    return metrics


def _fmt(x: float) -> str:
    return "-" if x != x else f"{100 * x:.2f}"
