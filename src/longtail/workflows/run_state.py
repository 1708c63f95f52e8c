"""The state of one run of a `longtail bench` suite, read from its run directory without locking or writing:
finished, partial (a checkpoint to resume) or pending, made with other settings (an error: a suite never mixes
results of different configs), and how long its training still takes. `longtail bench` reads it before each run
and for its time estimates, `longtail bench --status` for the table."""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path

import yaml

from ..config import ConfigError, TrainConfig, changed_settings, to_dict
from ..engine import load_checkpoint
from ..engine.checkpoint import CheckpointError
from ..engine.run_dir import RunDirectory
from ..engine.trainer import CHECKPOINT_FILE, METRICS_FILE
from .suite import Run

# a finished run is reused when its settings differ only in keys that do not change what is computed (its
# config class's NOT_COMPUTED_KEYS), or in the stage-1 path (it moves with the output directory)
STAGE1_PATH_KEYS = ("init_from", "from_run")


def check_existing(run: Run) -> str:
    """'finished', 'partial' (a checkpoint to resume) or 'pending'. A run made with other settings
    is an error: the suite never mixes results of different configs silently."""
    saved_path = run.run_dir / "config.yaml"
    if saved_path.is_file():
        saved = yaml.safe_load(saved_path.read_text()) or {}
        current = to_dict(run.config)
        diff = changed_settings(saved, current, type(run.config).NOT_COMPUTED_KEYS + STAGE1_PATH_KEYS)
        if diff:
            raise ConfigError(f"{run.run_dir} was made with other settings ({diff}). Delete that run directory to "
                              f"redo it with the suite's settings, or give the bench another --output-dir")
    metrics_path = run.run_dir / METRICS_FILE
    if metrics_path.is_file():
        try:
            if json.loads(metrics_path.read_text()).get("finished"):
                return "finished"
        except json.JSONDecodeError:
            pass  # a torn file from a kill: the run is redone or resumed
    return "partial" if (run.run_dir / CHECKPOINT_FILE).is_file() else "pending"


@dataclass
class RunStatus:
    run: Run
    state: str  # finished | running | interrupted | to run | other settings
    epochs_done: int = 0
    epochs: int | None = None  # None for a post-hoc run (no training)
    seconds_per_epoch: float | None = None  # this run's own, from its record or checkpoint
    test_overall: float | None = None
    note: str = ""


def _epoch_seconds(history: list[dict]) -> float | None:
    seconds = [h["seconds"] for h in history if "seconds" in h]
    return statistics.fmean(seconds) if seconds else None


def run_status(run: Run) -> RunStatus:
    epochs = run.config.epochs if isinstance(run.config, TrainConfig) else None
    try:
        existing = check_existing(run)
    except ConfigError as err:
        return RunStatus(run, "other settings", epochs=epochs, note=str(err))
    if existing == "finished":
        record = json.loads((run.run_dir / METRICS_FILE).read_text())
        return RunStatus(run, "finished", epochs_done=epochs or 0, epochs=epochs,
                         seconds_per_epoch=_epoch_seconds(record.get("history", [])),
                         test_overall=record["test"]["mean_class"])
    holder = RunDirectory(run.run_dir, (), CHECKPOINT_FILE).live_holder() if run.run_dir.is_dir() else None
    state = "running" if holder else ("interrupted" if existing == "partial" else "to run")
    status = RunStatus(run, state, epochs=epochs, note=f"pid {holder.get('pid')} on {holder.get('host')}" if holder else "")
    if existing == "partial":
        try:
            checkpoint = load_checkpoint(run.run_dir / CHECKPOINT_FILE)
            status.epochs_done = int(checkpoint.get("epoch", 0))
            status.seconds_per_epoch = _epoch_seconds(checkpoint.get("history", []))
        except CheckpointError as err:  # being written this instant, or damaged: say so, the count stays 0
            status.note = f"{status.note}; checkpoint unreadable ({err})".lstrip("; ")
    return status


def estimate_seconds_left(statuses: list[RunStatus], among: set[Path] | None = None) -> float:
    """Training seconds left, one process: each unfinished run's remaining epochs times its own seconds per
    epoch, else the mean of its method's runs, else of all runs (post-hoc runs count as nothing). ``among``:
    the run directories to count (default all); the speeds come from every run either way."""
    by_method: dict[str, list[float]] = {}
    for s in statuses:
        if s.seconds_per_epoch is not None:
            by_method.setdefault(s.run.method.name, []).append(s.seconds_per_epoch)
    every = [v for values in by_method.values() for v in values]
    left = 0.0
    for s in statuses:
        if s.state in ("finished", "other settings") or s.epochs is None or (among is not None and s.run.run_dir not in among):
            continue
        per_epoch = s.seconds_per_epoch or (statistics.fmean(by_method[s.run.method.name])
                                            if s.run.method.name in by_method else
                                            statistics.fmean(every) if every else 0.0)
        left += (s.epochs - s.epochs_done) * per_epoch
    return left
