"""A run directory on disk: its weights, its training config, and the data it was trained on (wherever it is now).
Shared by `longtail eval`, `predict`, `export` and `posthoc`."""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import yaml

from ..config import ConfigError, TrainConfig, _check_keys
from ..data.sources import DatasetNotFoundError
from ..engine.checkpoint import CheckpointError, find_weights
from ..engine.trainer import BEST_FILE, CHECKPOINT_FILE, METRICS_FILE
from . import build


def locate(target: str | Path) -> tuple[Path, Path]:
    """(run directory, weights file) from a run directory or a checkpoint path."""
    try:
        return find_weights(target, hint="give a longtail run directory such as runs/ce, or a .pt file")
    except CheckpointError:
        posthoc = posthoc_record(Path(target))
        if posthoc:
            raise CheckpointError(
                f"{target} is a post-hoc run ({posthoc.get('method')} of {posthoc.get('from_run')}, tau "
                f"{posthoc.get('tau')}) with no weights of its own: `longtail eval`, `predict` and `export` apply it "
                f"(its stage-1 model with the correction); to start from weights, give its stage-1 run") from None
        raise


def posthoc_record(path: Path) -> dict | None:
    """The ``posthoc`` entry of a post-hoc run directory's metrics.json (None for anything else: a trained run has
    weights)."""
    metrics = path / METRICS_FILE
    if not path.is_dir() or holds_weights(path) or not metrics.is_file():
        return None
    return json.loads(metrics.read_text()).get("posthoc")


def holds_weights(run_dir: Path) -> bool:
    """Whether ``run_dir`` holds a trained run's weights (its best or last checkpoint)."""
    return any((run_dir / name).is_file() for name in (BEST_FILE, CHECKPOINT_FILE))


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
    check_training_counts(run_dir, data.class_counts, cfg.data_root)
    return data


def same_path(a: str | Path, b: str | Path | None) -> bool:
    return b is not None and Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def check_training_counts(run_dir: Path, counts: list[int], data_root: str | None) -> None:
    """The data's long-tailed training counts must be the run's (metrics.json records them): other counts mean
    another dataset, imbalance or draw, whose many / medium / few groups and prior the run never saw."""
    path = run_dir / "metrics.json"
    recorded = json.loads(path.read_text()).get("class_counts") if path.is_file() else None
    if recorded is not None and list(counts) != list(recorded):
        raise ConfigError(f"the data at {data_root} gives training class counts {list(counts)}, but {run_dir.name} "
                          f"was trained on {list(recorded)}: not the same long-tailed dataset (give the data the "
                          f"run was trained on, wherever it is now)")
