"""Checkpoints written atomically and read with ``weights_only=True``.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts (no pickled objects), so
loading it never executes code. Writing goes to a temporary file in the same folder, is fsynced,
then renamed over the target: a run killed mid-write leaves the previous checkpoint intact.
"""

from __future__ import annotations

import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

import torch


class CheckpointError(RuntimeError):
    pass


def find_weights(target: str | Path, names: tuple[str, ...] = ("best.pt", "checkpoint.pt"),
                 hint: str = "give a run directory such as runs/ce, or a .pt file") -> tuple[Path, Path]:
    """(run directory, weights file) of ``target``: a run directory (the first of ``names`` it holds) or a
    weights file (its folder is the run directory). ``hint`` ends the error message when there is none."""
    target = Path(target)
    if target.is_dir():
        for name in names:
            if (target / name).is_file():
                return target, target / name
        raise CheckpointError(f"{target} holds no {' or '.join(names)}: {hint}")
    if target.is_file():
        return target.parent, target
    raise CheckpointError(f"{target} does not exist: {hint}")


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint at ``path``, loaded with ``weights_only=True``; a missing, damaged or unsafe file
    is a :class:`CheckpointError` that says which (torch's own message is not repeated: it suggests
    ``weights_only=False``, which would run whatever code a malicious file holds)."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}: the file does not exist")
    if not path.is_file():
        raise CheckpointError(f"{path} is a directory, not a checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise CheckpointError(f"{path} holds Python objects besides tensors and plain values, which longtail does not "
                              "load (unpickling them can run arbitrary code). Use the checkpoint.pt / best.pt of a "
                              "longtail run, or re-save the weights as a plain state dict from code you trust.") from None
    except Exception as err:  # truncated zip, not a torch file, ...
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(err).__name__}: {str(err).splitlines()[0][:200]}); "
                              "the file is damaged or not a torch checkpoint (was it copied while being written?)") from None
