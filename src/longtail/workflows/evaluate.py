"""`longtail eval RUN_OR_CHECKPOINT`: rebuild the data and model from the run's resolved config and
evaluate the selected weights."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import yaml
from rich.table import Table

from ..config import ConfigError, TrainConfig, _check_keys
from ..data.sources import DatasetNotFoundError
from ..engine import distributed as dist_utils
from ..engine import extract_features, load_checkpoint, predict
from ..engine.checkpoint import CheckpointError, find_weights
from ..evaluation import score_logits, write_prediction_reports
from . import build
from .output import make_console

console = make_console()


def locate(target: str | Path) -> tuple[Path, Path]:
    """(run directory, weights file) from a run directory or a checkpoint path."""
    try:
        return find_weights(target, hint="give a longtail run directory such as runs/ce, or a .pt file")
    except CheckpointError:
        metrics = Path(target) / "metrics.json"
        posthoc = json.loads(metrics.read_text()).get("posthoc") if metrics.is_file() else None
        if posthoc:
            raise CheckpointError(
                f"{target} is a post-hoc run ({posthoc.get('method')} of {posthoc.get('from_run')}, tau "
                f"{posthoc.get('tau')}) with no weights of its own: its test scores are in its metrics.json; "
                "`longtail predict` and `longtail export` apply it (the stage-1 model with the correction)") from None
        raise


def load_run_config(run_dir: Path) -> TrainConfig:
    path = run_dir / "config.yaml"
    if not path.exists():
        raise CheckpointError(f"{run_dir} has no config.yaml, so the model cannot be rebuilt")
    values = yaml.safe_load(path.read_text())
    _check_keys(TrainConfig, values, str(path))
    return TrainConfig(**values)


def other_data_dir(run_dir: Path, data_root: str | Path) -> Path:
    """Where the reports of a run scored on data other than its own go: ``RUN/eval_on/<name>-<hash of the path>``,
    so they never replace the run's own (``longtail posthoc`` reuses those logits)."""
    resolved = str(Path(data_root).expanduser().resolve())
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(resolved).name) or "root"
    return run_dir / "eval_on" / f"{name}-{hashlib.sha1(resolved.encode()).hexdigest()[:6]}"


def run_eval(target: str | Path, *, split: str = "test", device: str = "auto", as_json: bool = False,
             features: bool = False, data_root: str | Path | None = None) -> dict:
    """Score a run's selected weights on ``split`` and save the split's logits and reports next to the run;
    ``features``: also the backbone features (``{split}_features.npz``, what `longtail posthoc` tau-norm reads
    instead of recomputing them). ``data_root``: the data at this path instead of the run's own data_root
    (the data moved, or another copy of the same dataset); its reports go to :func:`other_data_dir`, and a copy
    whose long-tailed training counts differ from the run's is refused (it is not the dataset the run learned)."""
    run_dir, weights = locate(target)
    cfg = load_run_config(run_dir)
    cfg.device = device
    other_data = data_root is not None and not _same_path(data_root, cfg.data_root)
    out_dir = other_data_dir(run_dir, data_root) if other_data else run_dir
    info = dist_utils.setup(device)
    data = rebuild_run_data(run_dir, cfg, data_root, f"longtail eval {target} --data-root PATH")
    model = build.build_model(cfg, data).to(info.device)
    state = load_checkpoint(weights)
    model.load_state_dict(state["model"])
    loader = build.eval_loader(data.test if split == "test" else data.val, cfg, info)
    logits, targets = predict(model, loader, info.device)
    scale = build.probability_scale(cfg, data)
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
        table = Table(title=f"{run_dir.name} ({weights.name}) on {split}{where}")
        for col in ("top-1", "mean-class", "many", "medium", "few", "top-5", "ECE"):
            table.add_column(col, justify="right")
        table.add_row(*[_fmt(metrics[k]) for k in ("top1", "mean_class", "many", "medium", "few", "top5", "ece")])
        console.print(table)
        console.print(f"logits, confusion matrix and per-class precision / recall -> {out_dir}/{split}_*")
    return metrics


def rebuild_run_data(run_dir: Path, cfg: TrainConfig, data_root: str | Path | None, how_to_pass: str):
    """The dataset ``run_dir`` was trained on: from ``data_root`` when given (the data moved, or another copy of
    it; ``cfg.data_root`` is set to it), else from the run's own data_root. Its long-tailed training counts must
    be the run's. ``how_to_pass``: how the user names the path, for the error when the run's own is gone."""
    if data_root is not None:
        if not Path(data_root).expanduser().exists():
            raise DatasetNotFoundError(f"{data_root} does not exist: give the file or folder that holds "
                                       f"{cfg.dataset} now ({how_to_pass})")
        cfg.data_root = str(data_root)
    elif cfg.data_root and not cfg.download and not Path(cfg.data_root).expanduser().exists():
        raise DatasetNotFoundError(f"{run_dir.name} was trained on data_root {cfg.data_root}, which does not exist "
                                   f"here: if the data moved, pass where it is now: {how_to_pass}")
    data = build.build_data(cfg)
    _check_training_counts(run_dir, data.class_counts, cfg.data_root)
    return data


def _same_path(a: str | Path, b: str | Path | None) -> bool:
    return b is not None and Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def _check_training_counts(run_dir: Path, counts: list[int], data_root: str | None) -> None:
    """The data's long-tailed training counts must be the run's (metrics.json records them): other counts mean
    another dataset, imbalance or draw, whose many / medium / few groups and prior the run never saw."""
    path = run_dir / "metrics.json"
    recorded = json.loads(path.read_text()).get("class_counts") if path.is_file() else None
    if recorded is not None and list(counts) != list(recorded):
        raise ConfigError(f"the data at {data_root} gives training class counts {list(counts)}, but {run_dir.name} "
                          f"was trained on {list(recorded)}: not the same long-tailed dataset (give the data the "
                          f"run was trained on, wherever it is now)")


def _fmt(x: float) -> str:
    return "-" if x != x else f"{100 * x:.2f}"
