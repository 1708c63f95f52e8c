"""The console the commands print results and progress to.

Under torchrun every rank runs the same command; a table printed once per rank is noise, so only rank
0's console prints (the rank comes from torchrun's RANK variable, known before the process group is
joined). Errors go to main.err_console and print on every rank: a rank's failure is its own.
"""

from __future__ import annotations

import math

from rich.console import Console

from ..engine.distributed import launched_rank


def make_console(**options) -> Console:
    return Console(highlight=False, quiet=launched_rank() != 0, **options)


def percent(x: float | None, width: int = 0) -> str:
    """``x`` (a fraction) as a percentage with two decimals, right-aligned in ``width``; "-" (centred) when
    there is no value (None, or NaN: e.g. the few-shot accuracy of a split without few-shot classes)."""
    if x is None or not math.isfinite(x):
        return "-".center(width)
    return f"{100 * x:{width}.2f}"


def duration(seconds: float) -> str:
    """1h05m, 4m07s."""
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else f"{s // 60}m{s % 60:02d}s"
