"""`longtail bench SUITE --status`: where every run of a suite stands, read from its run directories without
training, locking or writing anything, so it is safe beside the processes that run the suite.

Each run is finished (with its test overall), running (a live process holds its directory; its epoch),
interrupted (a checkpoint the next `longtail bench` resumes from), to run, or made with other settings.
The training time left is estimated from the seconds per epoch the suite's own runs recorded.
"""

from __future__ import annotations

import json
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from rich.markup import escape
from rich.table import Table

from ..config import ConfigError, TrainConfig
from ..engine import load_checkpoint
from ..engine.checkpoint import CheckpointError
from ..engine.run_dir import RunDirectory
from ..engine.trainer import CHECKPOINT_FILE, METRICS_FILE
from .bench import check_existing, load_suite, plan
from .output import duration, make_console
from .suite import Run, if_tag

console = make_console(soft_wrap=True)


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


def suite_status(suite_path: str | Path, *, output_dir: str | None = None,
                 overrides: Sequence[str] = ()) -> tuple[list[RunStatus], float]:
    """(the status of every run of the suite, in the order `longtail bench` runs them; training seconds left)."""
    suite = load_suite(suite_path, output_dir)
    statuses = [run_status(run) for run in plan(suite, tuple(overrides))]
    state_of = {s.run.run_dir: s.state for s in statuses}
    for s in statuses:  # a stage-2 or post-hoc run can only start once its stage-1 run has finished
        if s.state == "to run" and s.run.stage1_dir is not None and state_of.get(s.run.stage1_dir) != "finished":
            s.note = f"after {s.run.method.stage1}"
    return statuses, estimate_seconds_left(statuses)


def print_status(suite_path: str | Path, *, output_dir: str | None = None, overrides: Sequence[str] = ()) -> list[RunStatus]:
    statuses, left = suite_status(suite_path, output_dir=output_dir, overrides=overrides)
    table = Table(title=f"{suite_path} -> {load_suite(suite_path, output_dir).output_dir}")
    for col in ("IF", "seed", "method", "state", "epochs", "test overall", "note"):
        table.add_column(col, justify="right" if col in ("IF", "seed", "epochs", "test overall") else "left")
    colour = {"finished": "green", "running": "cyan", "interrupted": "yellow", "other settings": "red"}
    for s in statuses:
        epochs = "-" if s.epochs is None else f"{s.epochs_done}/{s.epochs}"
        overall = "" if s.test_overall is None else f"{100 * s.test_overall:.2f}"
        state = f"[{colour[s.state]}]{s.state}[/]" if s.state in colour else s.state
        table.add_row(if_tag(s.run.imbalance_factor), str(s.run.seed), s.run.method.name, state, epochs, overall,
                      escape(s.note))
    console.print(table)
    counts = {state: sum(s.state == state for s in statuses)
              for state in ("finished", "running", "interrupted", "to run", "other settings")}
    known = any(s.seconds_per_epoch is not None for s in statuses)
    time_left = (f"about {duration(left)} of training left for one process (from the seconds per epoch recorded "
                 f"so far)" if known else "no run has recorded its speed yet, so no estimate of the time left")
    console.print(", ".join(f"{n} {state}" for state, n in counts.items() if n) + f" of {len(statuses)} runs; {time_left}")
    return statuses
