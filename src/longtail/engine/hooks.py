"""Hooks: how a method adds behaviour to :class:`~longtail.engine.trainer.Trainer` without branching in it.

In the style of detectron2's ``HookBase``: override only what you need. Decoupled stage 2 (frozen
backbone, feature cache, Meta Sampler: :class:`~longtail.engine.stage2.DecoupledStage2`) is one.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from torch import Tensor


class Hook:
    """Called by the trainer at fixed points of a run; every method defaults to doing nothing."""

    def before_train(self, trainer: Any) -> None:
        """Once, after a resume restored the state and before the first epoch runs; ``trainer`` is the
        :class:`~longtail.engine.trainer.Trainer` (its optimiser and loss, e.g.)."""

    def before_epoch(self, epoch: int) -> None:
        """Before epoch ``epoch`` (counting from 0), after every RNG was re-seeded for it."""

    def epoch_context(self) -> contextlib.AbstractContextManager:
        """A context the training epoch runs in (e.g. one intra-op thread for head-only steps)."""
        return contextlib.nullcontext()

    def before_step(self, inputs: Tensor, targets: Tensor, global_step: int) -> None:
        """Before each optimiser step, with the batch on the device (the Meta Sampler's bilevel step)."""

    def after_epoch(self, epoch: int, record: dict[str, Any]) -> None:
        """After epoch ``epoch``'s training and validation; ``record`` is its history entry."""

    def state_dict(self) -> dict[str, Any]:
        """What the hook needs saved in the checkpoint to resume exactly."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""

    def metrics(self) -> dict[str, Any]:
        """Entries the hook adds to the final metrics."""
        return {}

    def write_files(self, run_dir: Path, class_counts: list[int]) -> None:
        """Files the hook adds to a finished run directory (plots)."""

    @property
    def wants_steps(self) -> bool:
        """Whether :meth:`before_step` is overridden (the loop then calls it every step)."""
        return type(self).before_step is not Hook.before_step
