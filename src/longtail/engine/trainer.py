"""A classification training run as a library object: :class:`Trainer`.

``Trainer(model, loader, loss_fn, optimizer, ...).fit()`` trains for ``epochs``, validates every
``eval_every`` epochs, keeps the model selected on validation (or the last one), and ``test`` scores
it. With a ``run`` directory it also writes the run protocol that ``longtail train`` uses (and that
``--resume`` continues exactly): ``checkpoint.pt`` every epoch, ``best.pt`` when the selection
improves, ``metrics.json``, TensorBoard events, and at the end the test logits, reports and plots.
Methods that change the loop (decoupled stage 2, the Meta Sampler) are :class:`~longtail.engine.hooks.Hook`\\ s.

Exact resume: every RNG is re-seeded from (seed, epoch) at the start of each epoch, so a resumed run
continues to exactly the metrics of an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any, Callable, ContextManager, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from . import distributed as dist_utils
from .checkpoint import load_checkpoint, save_checkpoint
from .hooks import Hook
from .loop import evaluate, predict, train_one_epoch
from .run_dir import RunDirectory

CHECKPOINT_FILE, BEST_FILE, METRICS_FILE = "checkpoint.pt", "best.pt", "metrics.json"
# what a classification run writes into its directory (an --overwrite moves exactly these aside)
RUN_FILES = (CHECKPOINT_FILE, BEST_FILE, METRICS_FILE, "config.yaml", "per_class_accuracy.png",
             "sampling_probability.png", "tb", "test_logits.npz", "val_logits.npz", "test_confusion_matrix.csv",
             "test_per_class.csv", "test_confusion_matrix.png")
SELECT_ON = ("val", "last")
# the epoch's progress display: (description, total steps) -> context manager giving update(step, stats)
ProgressFactory = Callable[[str, int], ContextManager[Callable[[int, dict], None]]]


def seed_everything(seed: int, epoch: int = 0) -> None:
    """Seed Python, NumPy and torch from (seed, epoch). Called at the start of every epoch so an
    epoch's augmentation and worker seeds do not depend on what ran before (exact resume)."""
    s = (seed * 1_000_003 + epoch) % (2**31)
    random.seed(s)
    np.random.seed(s)
    torch.manual_seed(s)


def write_json_atomic(obj: Any, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, allow_nan=True))
    os.replace(tmp, path)


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel wrapper (the module itself otherwise)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


@contextlib.contextmanager
def no_progress(description: str, total: int):
    """The progress factory that shows nothing (the default)."""
    yield lambda step, stats: None


class Trainer:
    """One classification run.

    ``model``: the whole network (validated, tested, saved). ``trained``: what the optimiser updates and
    the training batches go through (default ``model``; in stage 2 the head, fed features).
    ``val_model`` / ``val_loader``: what validation runs (default ``model`` on ``val_loader``).
    ``sampler``: gets ``set_epoch`` each epoch. ``batch_transform``: applied to every training batch on the
    device (mixup / CutMix / ReMix from :mod:`longtail.data.mixing`; the targets become soft).
    ``class_counts``: training count per class (shot groups ``many`` / ``few``).
    ``select_on``: ``val`` (best val mean per-class accuracy) or ``last``.
    ``run``: a claimed :class:`~longtail.engine.run_dir.RunDirectory` to write the run protocol into
    (``None``: nothing is written and ``select_on=val`` keeps the best weights in memory);
    ``run_info`` heads metrics.json, ``checkpoint_extra`` goes into every checkpoint.
    Under torchrun pass ``dist`` (:func:`longtail.engine.distributed.setup`); ``trained`` is then wrapped
    in DistributedDataParallel by :meth:`fit`, and rank 0 alone writes.
    """

    def __init__(self, model: nn.Module, loader: Iterable, loss_fn: nn.Module, optimizer: torch.optim.Optimizer, *,
                 epochs: int, class_counts: Sequence[int], val_loader: Iterable, class_names: Sequence[str] | None = None,
                 scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, sampler: Any = None,
                 trained: nn.Module | None = None, val_model: nn.Module | None = None, hooks: Sequence[Hook] = (),
                 dist: dist_utils.DistInfo | None = None, seed: int = 0, eval_every: int = 1, select_on: str = "val",
                 many: int = 100, few: int = 20, channels_last: bool = False, amp: torch.dtype | None = None,
                 max_grad_norm: float | None = None, batch_transform: Callable | None = None,
                 run: RunDirectory | None = None,
                 run_info: dict[str, Any] | None = None, checkpoint_extra: dict[str, Any] | None = None,
                 log: Callable[[str], None] = lambda text: None, progress: ProgressFactory = no_progress) -> None:
        if select_on not in SELECT_ON:
            raise ValueError(f"select_on must be 'val' or 'last', got {select_on!r} (selecting on test is not offered)")
        if epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {epochs}")
        if eval_every < 1:
            raise ValueError(f"eval_every must be >= 1 (validate every k epochs), got {eval_every}")
        self.dist = dist or dist_utils.DistInfo()
        self.model, self.loader, self.loss_fn, self.optimizer = model, loader, loss_fn, optimizer
        # the scale of the logits whose softmax the loss trains (LDAM's s): ECE and calibration use it
        self.probability_scale = float(getattr(loss_fn, "probability_scale", 1.0))
        self.trained = trained if trained is not None else model
        self.val_model = val_model if val_model is not None else model
        self.val_loader, self.scheduler, self.sampler, self.hooks = val_loader, scheduler, sampler, list(hooks)
        self.epochs, self.seed, self.eval_every, self.select_on = epochs, seed, eval_every, select_on
        self.class_counts, self.many, self.few = list(class_counts), many, few
        self.class_names = list(class_names) if class_names is not None else [str(c) for c in range(len(class_counts))]
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.amp, self.max_grad_norm, self.batch_transform = amp, max_grad_norm, batch_transform
        self.scaler = torch.amp.GradScaler(self.dist.device.type) if amp == torch.float16 else None
        self.run, self.run_info, self.checkpoint_extra = run, dict(run_info or {}), dict(checkpoint_extra or {})
        self.log, self.progress = log, progress
        self.history: list[dict] = []
        self.best: dict = {"epoch": -1, "score": -math.inf}
        self.start_epoch = 0
        self.timing: dict[str, Any] = {}  # the caller's timings (start-up seconds), recorded in metrics["timing"]
        self._best_state: dict | None = None  # in memory when there is no run directory
        self._writer = None

    # --- state ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        hooks = [hook.state_dict() for hook in self.hooks]
        return {"model": unwrap(self.model).state_dict(), "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict() if self.scheduler is not None else {},
                "epoch": len(self.history), "history": self.history, "best": self.best,
                "class_counts": self.class_counts, **self.checkpoint_extra,
                # the first hook's state under its historical key: checkpoints of earlier versions resume
                "stage2": hooks[0] if hooks else {}, "hooks": hooks,
                "scaler": self.scaler.state_dict() if self.scaler is not None else {}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a checkpoint written by :meth:`state_dict` (``--resume``)."""
        unwrap(self.model).load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        hook_states = state.get("hooks") or [state.get("stage2", {})]
        for hook, hook_state in zip(self.hooks, hook_states):
            hook.load_state_dict(hook_state)
        self.history, self.best, self.start_epoch = state["history"], state["best"], int(state["epoch"])

    # --- training -------------------------------------------------------------------------------------
    def fit(self) -> dict[str, Any]:
        """Train from ``start_epoch`` to ``epochs``; returns ``{"history", "best"}``."""
        info = self.dist
        if info.distributed:
            wrapped = nn.parallel.DistributedDataParallel(
                self.trained, device_ids=[info.device] if info.device.type == "cuda" else None)
            if self.trained is self.model:
                self.model = wrapped
            if self.val_model is self.trained:
                self.val_model = wrapped
            self.trained = wrapped
        if info.is_main and self.run is not None:
            from torch.utils.tensorboard import SummaryWriter
            self._writer = SummaryWriter(str(self.run.path / "tb"))
        for hook in self.hooks:
            hook.before_train(self)
        step_hooks = [hook for hook in self.hooks if hook.wants_steps]
        step_hook = None
        if step_hooks:
            def step_hook(inputs, targets, global_step):
                for hook in step_hooks:
                    hook.before_step(inputs, targets, global_step)
        train_format = self.memory_format if unwrap(self.trained) is unwrap(self.model) else torch.contiguous_format
        for epoch in range(self.start_epoch, self.epochs):
            seed_everything(self.seed, epoch + 1)
            if self.sampler is not None:
                self.sampler.set_epoch(epoch)
            for hook in self.hooks:
                hook.before_epoch(epoch)
            if hasattr(self.loss_fn, "set_epoch"):  # epoch-scheduled losses (e.g. LDAM-DRW's deferred re-weighting)
                self.loss_fn.set_epoch(epoch)
            with contextlib.ExitStack() as stack:
                for hook in self.hooks:
                    stack.enter_context(hook.epoch_context())
                update = stack.enter_context(self.progress(f"epoch {epoch + 1}/{self.epochs}", len(self.loader)))
                stats = train_one_epoch(self.trained, self.loader, self.loss_fn, self.optimizer, self.scheduler,
                                        device=info.device, epoch=epoch, max_grad_norm=self.max_grad_norm,
                                        step_hook=step_hook, memory_format=train_format, amp=self.amp,
                                        scaler=self.scaler, progress=update, batch_transform=self.batch_transform)
            record = {"epoch": epoch + 1, "train_loss": stats["loss"], "lr": self.optimizer.param_groups[0]["lr"],
                      "seconds": stats["seconds"]}
            validated = (epoch + 1) % self.eval_every == 0 or epoch + 1 == self.epochs
            score = math.nan
            if validated:
                start = time.perf_counter()
                val = self.validate()
                score = val["mean_class"]
                record.update({"val_mean_class": score, "val_top1": val["top1"], "val_many": val["many"],
                               "val_medium": val["medium"], "val_few": val["few"],
                               "val_seconds": time.perf_counter() - start})
            self.history.append(record)
            improved = self.select_on == "last" or (validated and score > self.best["score"])
            if improved:
                self.best = {"epoch": epoch + 1, "score": score}
            for hook in self.hooks:
                hook.after_epoch(epoch, record)
            self._save_epoch(record, improved)
            val_text = f"val mean-class {100 * score:5.2f}" if validated else "                    "
            self.log(f"epoch {epoch + 1:>3}/{self.epochs}  loss {stats['loss']:.4f}  {val_text}  "
                     f"({stats['seconds']:.1f}s){'  *' if improved and self.select_on == 'val' else ''}")
            dist_utils.barrier()
        return {"history": self.history, "best": self.best}

    def validate(self) -> dict[str, Any]:
        val_format = self.memory_format if unwrap(self.val_model) is unwrap(self.model) else torch.contiguous_format
        return evaluate(self.val_model, self.val_loader, self.dist.device, self.class_counts, self.many, self.few,
                        memory_format=val_format, probability_scale=self.probability_scale)

    def _save_epoch(self, record: dict, improved: bool) -> None:
        epoch = record["epoch"]
        if improved and self.run is None and self.select_on == "val":
            self._best_state = {k: v.detach().clone() for k, v in unwrap(self.model).state_dict().items()}
        if not self.dist.is_main or self.run is None:
            return
        path = self.run.path
        if improved:  # best.pt before checkpoint.pt: a kill in between only repeats this epoch
            save_checkpoint({"model": unwrap(self.model).state_dict(), "epoch": epoch,
                             **{k: v for k, v in self.checkpoint_extra.items() if k == "split"}}, path / BEST_FILE)
        save_checkpoint(self.state_dict(), path / CHECKPOINT_FILE)
        self.run.commit()  # the new run has a checkpoint: a replaced old run can go
        write_json_atomic(self.metrics(finished=False), path / METRICS_FILE)
        for key in ("train_loss", "lr", "val_mean_class", "val_top1", "val_many", "val_medium", "val_few"):
            if isinstance(record.get(key), float) and math.isfinite(record[key]):
                self._writer.add_scalar(key.replace("_", "/", 1), record[key], epoch)
        self._writer.flush()

    # --- testing ------------------------------------------------------------------------------------------
    def predict(self, loader: Iterable) -> tuple[torch.Tensor, torch.Tensor]:
        """Logits and targets of the current model over ``loader`` (a collective under DDP), in float32 whatever
        the run's ``amp`` (the test pass: its figures are the ones `longtail eval` gives for the same weights)."""
        return predict(self.model, loader, self.dist.device, self.memory_format)

    def load_selected(self) -> None:
        """Put the selected weights (best on val) into the model, if the last epoch is not the selected one."""
        if self.select_on != "val" or self.best["epoch"] == self.epochs:
            return
        if self.run is not None:
            state = load_checkpoint(self.run.path / BEST_FILE)["model"]
        elif self._best_state is not None:
            state = self._best_state
        else:
            raise RuntimeError("no selected weights: the run was resumed without a run directory")
        unwrap(self.model).load_state_dict(state)

    def test(self, test_loader: Iterable, report_loader: Iterable | None = None) -> dict[str, Any]:
        """Score the last model and the selected one on ``test_loader``; returns the final metrics (written to
        metrics.json with the test logits, reports and plots when there is a run directory). ``report_loader``
        (the val split, unshuffled): its logits are saved too, for post-hoc methods. In float32 whatever the run's
        ``amp``, like `longtail eval`."""
        from ..evaluation import score_logits, write_prediction_reports
        from ..evaluation.plots import plot_per_class_accuracy

        start = time.perf_counter()
        logits, targets = self.predict(test_loader)
        test_last = score_logits(logits, targets, self.class_counts, self.many, self.few, self.probability_scale)
        test = test_last
        if self.select_on == "val" and self.best["epoch"] != self.epochs:
            self.load_selected()
            logits, targets = self.predict(test_loader)
            test = score_logits(logits, targets, self.class_counts, self.many, self.few, self.probability_scale)
        extra = self.predict(report_loader) if report_loader is not None else None  # a collective under DDP
        metrics = self.metrics(finished=True, test=test, test_last=test_last)
        metrics["timing"] = {**self.timing, "test_seconds": time.perf_counter() - start}
        for hook in self.hooks:
            metrics.update(hook.metrics())
        if self.dist.is_main and self.run is not None:
            path = self.run.path
            name = self.run_info.get("name", path.name)
            write_json_atomic(metrics, path / METRICS_FILE)
            for hook in self.hooks:
                hook.write_files(path, self.class_counts)
            plot_per_class_accuracy({name: test["per_class"]}, self.class_counts, path / "per_class_accuracy.png",
                                    title=f"{name}: per-class test accuracy", many=self.many, few=self.few)
            # the selected model's test logits, confusion matrix and per-class precision / recall
            write_prediction_reports(path, logits, targets, self.class_names, prefix="test",
                                     weights_epoch=self.best["epoch"], probability_scale=self.probability_scale)
            if extra is not None:
                write_prediction_reports(path, *extra, self.class_names, prefix="val",
                                         weights_epoch=self.best["epoch"], logits_only=True)
            for key in ("top1", "mean_class", "many", "medium", "few", "top5", "ece"):
                if math.isfinite(test[key]):
                    self._writer.add_scalar(f"test/{key}", test[key], self.epochs)
            self._writer.close()
        return metrics

    def metrics(self, *, finished: bool, test: dict | None = None, test_last: dict | None = None) -> dict[str, Any]:
        out = {**self.run_info, "class_counts": self.class_counts, "class_names": self.class_names,
               "epochs": self.epochs, "epochs_completed": len(self.history), "finished": finished,
               "selected_epoch": self.best["epoch"], "select_on": self.select_on, "history": self.history,
               "threads": torch.get_num_threads(), "probability_scale": self.probability_scale,
               "written_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
        if test is not None:
            out["test"] = test
            out["test_last"] = test_last
        return out
