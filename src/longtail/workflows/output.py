"""The console the commands print results and progress to.

Under torchrun every rank runs the same command; a table printed once per rank is noise, so only rank
0's console prints (the rank comes from torchrun's RANK variable, known before the process group is
joined). Errors go to main.err_console and print on every rank: a rank's failure is its own.
"""

from __future__ import annotations

from rich.console import Console

from ..engine.distributed import launched_rank


def make_console(**options) -> Console:
    return Console(highlight=False, quiet=launched_rank() != 0, **options)
