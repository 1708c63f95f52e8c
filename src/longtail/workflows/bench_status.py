"""`longtail bench SUITE --status`: where every run of a suite stands, read from its run directories without
training, locking or writing anything, so it is safe beside the processes that run the suite.

Each run is finished (with its test overall), running (a live process holds its directory; its epoch),
interrupted (a checkpoint the next `longtail bench` resumes from), to run, or made with other settings.
The training time left is estimated from the seconds per epoch the suite's own runs recorded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from rich.markup import escape
from rich.table import Table

from .bench import load_suite, plan
from .output import duration, make_console
from .run_state import RunStatus, estimate_seconds_left, run_status
from .suite import if_tag

console = make_console(soft_wrap=True)


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
    if not (counts["running"] or counts["interrupted"] or counts["to run"]):
        time_left = "nothing left to train"
    elif any(s.seconds_per_epoch is not None for s in statuses):
        time_left = f"about {duration(left)} of training left for one process (from the seconds per epoch recorded so far)"
    else:
        time_left = "no run has recorded its speed yet, so no estimate of the time left"
    console.print(", ".join(f"{n} {state}" for state, n in counts.items() if n) + f" of {len(statuses)} runs; {time_left}")
    return statuses
