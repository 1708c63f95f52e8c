"""`longtail train`: one training run from a TrainConfig into a run directory.

Run directory: config.yaml (resolved), metrics.json (rewritten every epoch), checkpoint.pt (every
epoch, atomic), best.pt (best on validation), per_class_accuracy.png, tb/ (TensorBoard events).
Each epoch re-seeds every RNG from (seed, epoch), so ``--resume`` after an interruption continues
to exactly the metrics of an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..engine import distributed as dist_utils
from ..engine import evaluate, load_checkpoint, predict, save_checkpoint, train_one_epoch, warmup_cosine
from ..engine.checkpoint import CheckpointError
from ..engine.run_dir import RunDirectory, RunDirError, RunDirInUseError
from ..evaluation import score_logits, write_prediction_reports
from ..evaluation.plots import plot_per_class_accuracy
from . import build
from .config import ConfigError, TrainConfig, to_dict
from .output import make_console
from .stage2 import prepare_stage2

console = make_console()
CHECKPOINT, BEST, METRICS = "checkpoint.pt", "best.pt", "metrics.json"


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


def run_dir_of(cfg: TrainConfig) -> Path:
    if not cfg.name:
        raise ConfigError("the run needs a name: pass name=... (a config file gives its stem by default)")
    return Path(cfg.output_dir) / cfg.name


RUN_FILES = (CHECKPOINT, BEST, METRICS, "config.yaml", "per_class_accuracy.png", "sampling_probability.png", "tb",
             "test_logits.npz", "val_logits.npz", "test_confusion_matrix.csv", "test_per_class.csv", "test_confusion_matrix.png")


AMP = {"bf16": torch.bfloat16, "fp16": torch.float16}


def amp_dtype(name: str | None) -> torch.dtype | None:
    if name is None:
        return None
    if name not in AMP:
        raise ConfigError(f"amp must be bf16, fp16 or null (float32), got {name!r}")
    return AMP[name]


def process_age_seconds() -> float | None:
    """Seconds since this process started (Linux /proc), None elsewhere."""
    try:
        start_ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return uptime - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def split_settings(cfg: TrainConfig) -> dict:
    """The settings that fix the data split, saved in best.pt so that a stage 2 started from the loose
    weights file can still check it trains on the same split."""
    from .stage2 import SPLIT_KEYS
    return {key: getattr(cfg, key) for key in SPLIT_KEYS}


@contextlib.contextmanager
def claimed_run_dir(directory: RunDirectory, info: dist_utils.DistInfo, *, resume: bool, overwrite: bool, say):
    """Hold the run directory for the body of the ``with``: lock it and prepare it for a new or resumed run
    (rank 0; the other ranks learn the outcome, so a refusal stops every rank), yield True when there is a
    checkpoint to resume from; if the body fails, a replaced run comes back (``rollback``); the lock is
    released at the end either way."""
    outcome: tuple[bool, Exception | None] = (False, None)
    if info.is_main:
        try:
            note = directory.acquire()
            if note:
                say(f"[yellow]{escape(note)}[/]")
            outcome = (directory.prepare(resume=resume, overwrite=overwrite), None)
        except (RunDirInUseError, RunDirError) as err:
            directory.release()
            outcome = (False, err)
    can_resume, error = dist_utils.broadcast_object(outcome)
    if error is not None:
        raise error
    try:
        yield can_resume
    except BaseException:
        if info.is_main:
            directory.rollback()  # a failed --overwrite before its first checkpoint gives the old run back
        raise
    finally:
        if info.is_main:
            directory.release()


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def _progress(enabled: bool) -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn(), console=console,
                    disable=not enabled, transient=True)


def run_training(cfg: TrainConfig, *, resume: bool = False, overwrite: bool = False, quiet: bool = False) -> dict:
    """Train, select on validation, test; returns the final metrics dict (also in metrics.json)."""
    info = dist_utils.setup(cfg.device)  # the group is left at process exit (see setup)
    return _run(cfg, info, resume=resume, overwrite=overwrite, quiet=quiet)


def _run(cfg: TrainConfig, info: dist_utils.DistInfo, *, resume: bool, overwrite: bool, quiet: bool) -> dict:
    if cfg.select_on not in ("val", "last"):
        raise ConfigError(f"select_on must be 'val' or 'last', got {cfg.select_on!r} (selecting on test is not offered)")
    if cfg.epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {cfg.epochs}")
    if not 0 <= cfg.warmup_epochs <= cfg.epochs:
        raise ConfigError(f"warmup_epochs must lie in [0, epochs = {cfg.epochs}], got {cfg.warmup_epochs}")
    if cfg.batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {cfg.batch_size}")
    if cfg.eval_every < 1:
        raise ConfigError(f"eval_every must be >= 1 (validate every k epochs), got {cfg.eval_every}")
    if cfg.threads is not None:
        if cfg.threads < 1:
            raise ConfigError(f"threads must be >= 1 (torch intra-op threads), got {cfg.threads}")
        torch.set_num_threads(cfg.threads)
    run_dir = run_dir_of(cfg)
    say = (lambda *a: console.print(*a)) if (info.is_main and not quiet) else (lambda *a: None)

    seed_everything(cfg.seed)
    data = build.build_data(cfg)
    if len(data.val) == 0:  # every epoch is validated, and select_on=val picks the model on it
        raise ConfigError(f"{cfg.dataset} has an empty validation split; set val_per_class >= 1")
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    amp = amp_dtype(cfg.amp)
    model = build.build_model(cfg, data).to(info.device, memory_format=memory_format)
    loss_fn = build.build_loss(cfg, data).to(info.device)
    if cfg.sampler == "meta" and not cfg.init_from:
        raise ConfigError("sampler: meta (BALMS) trains the classifier of a decoupled stage 2: set "
                          "init_from=<stage-1 run directory>")
    # decoupled stage 2 (init_from): only the head trains, on a stream of frozen-backbone features
    stage2 = prepare_stage2(model, cfg, data, info) if cfg.init_from else None
    trained = stage2.head if stage2 else model  # what the optimiser updates
    sampler = stage2.sampler if stage2 else build.build_sampler(cfg, data, info)
    loader = stage2.loader if stage2 else build.train_loader(data.train, sampler, cfg, info)
    val_model, val_loader = model, build.eval_loader(data.val, cfg, info)
    if stage2 and stage2.val_loader is not None:  # cached val features: evaluate the head on them
        val_model, val_loader = stage2.head, stage2.val_loader
    test_loader = build.eval_loader(data.test, cfg, info)
    optimizer = build.build_optimizer(cfg, trained, stage2=stage2 is not None)
    step_hook = stage2.make_step_hook(optimizer, loss_fn) if stage2 else None  # Meta Sampler's bilevel step
    scaler = torch.amp.GradScaler(info.device.type) if amp == torch.float16 else None
    steps_per_epoch = len(loader)
    scheduler = warmup_cosine(optimizer, cfg.epochs * steps_per_epoch, int(cfg.warmup_epochs * steps_per_epoch),
                              cfg.warmup_start_factor)

    # Everything above validated the run (data, model, loss, sampler, stage-1 weights) without touching the
    # run directory; only now is it created, locked and, for --overwrite, its old run moved aside.
    directory = RunDirectory(run_dir, RUN_FILES, CHECKPOINT)
    with claimed_run_dir(directory, info, resume=resume, overwrite=overwrite, say=say) as can_resume:
        history: list[dict] = []
        best: dict = {"epoch": -1, "score": -math.inf}
        start_epoch = 0
        if can_resume:
            state = load_checkpoint(run_dir / CHECKPOINT)
            check_same_config(state.get("config", {}), to_dict(cfg), run_dir)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            if stage2:
                stage2.load_state_dict(state.get("stage2", {}))
            history, best, start_epoch = state["history"], state["best"], int(state["epoch"])
            say(f"resuming {run_dir} at epoch {start_epoch}/{cfg.epochs}")
        if info.is_main:
            (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        if info.distributed:
            trained = torch.nn.parallel.DistributedDataParallel(trained, device_ids=[info.device] if info.device.type == "cuda" else None)
            if stage2 is None:
                model = trained

        writer = None
        if info.is_main:
            from torch.utils.tensorboard import SummaryWriter
            writer = SummaryWriter(str(run_dir / "tb"))
        say(f"[bold]{cfg.name}[/]: {cfg.dataset} ({len(data.train)} train / {len(data.val)} val / {len(data.test)} test, "
            f"{data.num_classes} classes), {cfg.model}, loss={cfg.loss}, sampler={cfg.sampler}, "
            f"{info.world_size} process(es) on {info.device.type}")
        if stage2:
            say(f"stage 2 from {stage2.source}: backbone frozen, {stage2.notes}")

        many, few = cfg.many_threshold, cfg.few_threshold
        startup_seconds = process_age_seconds()  # start-up cost: interpreter, imports, data, model, run directory
        for epoch in range(start_epoch, cfg.epochs):
            seed_everything(cfg.seed, epoch + 1)
            sampler.set_epoch(epoch)
            if stage2:
                stage2.set_epoch(epoch)  # cached view, meta stream
            if hasattr(loss_fn, "set_epoch"):  # epoch-scheduled losses (e.g. LDAM-DRW's deferred re-weighting)
                loss_fn.set_epoch(epoch)
            epoch_context = stage2.epoch_context() if stage2 else contextlib.nullcontext()  # cached: 1 thread
            with epoch_context, _progress(info.is_main and not quiet and console.is_terminal) as bar:
                task = bar.add_task(f"epoch {epoch + 1}/{cfg.epochs}", total=steps_per_epoch, loss=0.0)
                stats = train_one_epoch(trained, loader, loss_fn, optimizer, scheduler, device=info.device, epoch=epoch,
                                        max_grad_norm=cfg.max_grad_norm, step_hook=step_hook,
                                        memory_format=memory_format if stage2 is None else torch.contiguous_format,
                                    amp=amp, scaler=scaler,
                                        progress=lambda step, s: bar.update(task, advance=1, loss=s["loss"]))
            record = {"epoch": epoch + 1, "train_loss": stats["loss"], "lr": optimizer.param_groups[0]["lr"],
                      "seconds": stats["seconds"]}
            validated = (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs
            score = math.nan
            if validated:
                start = time.perf_counter()
                val = evaluate(val_model, val_loader, info.device, data.class_counts, many, few,
                               memory_format=memory_format if val_model is model else torch.contiguous_format)
                score = val["mean_class"]
                record.update({"val_mean_class": score, "val_top1": val["top1"], "val_many": val["many"],
                               "val_medium": val["medium"], "val_few": val["few"],
                               "val_seconds": time.perf_counter() - start})
            history.append(record)
            improved = cfg.select_on == "last" or (validated and score > best["score"])
            if improved:
                best = {"epoch": epoch + 1, "score": score}
            if info.is_main:
                if improved:  # best.pt before checkpoint.pt: a kill in between only repeats this epoch
                    save_checkpoint({"model": _unwrap(model).state_dict(), "epoch": epoch + 1,
                                     "split": split_settings(cfg)}, run_dir / BEST)
                save_checkpoint({"model": _unwrap(model).state_dict(), "optimizer": optimizer.state_dict(),
                                 "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "history": history,
                                 "best": best, "config": to_dict(cfg), "class_counts": data.class_counts,
                                 "stage2": stage2.state_dict() if stage2 else {},
                                "scaler": scaler.state_dict() if scaler is not None else {}},
                                run_dir / CHECKPOINT)
                directory.commit()  # the new run has a checkpoint: a replaced old run can go
                write_json_atomic(_metrics(cfg, data, history, best, finished=False), run_dir / METRICS)
                for key in ("train_loss", "lr", "val_mean_class", "val_top1", "val_many", "val_medium", "val_few"):
                    if isinstance(record.get(key), float) and math.isfinite(record[key]):
                        writer.add_scalar(key.replace("_", "/", 1), record[key], epoch + 1)
                writer.flush()
            val_text = f"val mean-class {100 * score:5.2f}" if validated else "                    "
            say(f"epoch {epoch + 1:>3}/{cfg.epochs}  loss {stats['loss']:.4f}  {val_text}  "
                f"({stats['seconds']:.1f}s){'  *' if improved and cfg.select_on == 'val' else ''}")
            dist_utils.barrier()

        # Test the selected model (best on val) and the last one.
        test_start = time.perf_counter()
        logits, targets = predict(model, test_loader, info.device, memory_format, amp)
        test_last = score_logits(logits, targets, data.class_counts, many, few)
        if cfg.select_on == "val" and best["epoch"] != cfg.epochs:
            _unwrap(model).load_state_dict(load_checkpoint(run_dir / BEST)["model"])
            logits, targets = predict(model, test_loader, info.device, memory_format, amp)
            test = score_logits(logits, targets, data.class_counts, many, few)
        else:
            test = test_last
        # the selected model's val logits too (a collective under DDP): `longtail posthoc` reads both
        val_logits, val_targets = predict(model, build.eval_loader(data.val, cfg, info), info.device, memory_format, amp)
        metrics = _metrics(cfg, data, history, best, finished=True, test=test, test_last=test_last)
        metrics["timing"] = {"startup_seconds": startup_seconds, "test_seconds": time.perf_counter() - test_start}
        if stage2:
            metrics.update(stage2.metrics())
        if info.is_main:
            write_json_atomic(metrics, run_dir / METRICS)
            if stage2:
                stage2.save_plots(run_dir, data.class_counts)
            plot_per_class_accuracy({cfg.name: test["per_class"]}, data.class_counts, run_dir / "per_class_accuracy.png",
                                    title=f"{cfg.name}: per-class test accuracy", many=many, few=few)
            # the selected model's test logits, confusion matrix and per-class precision / recall
            write_prediction_reports(run_dir, logits, targets, data.class_names, prefix="test",
                                     weights_epoch=best["epoch"])
            write_prediction_reports(run_dir, val_logits, val_targets, data.class_names, prefix="val",
                                     weights_epoch=best["epoch"], logits_only=True)
            for key in ("top1", "mean_class", "many", "medium", "few", "top5", "ece"):
                if math.isfinite(test[key]):
                    writer.add_scalar(f"test/{key}", test[key], cfg.epochs)
            writer.close()
            say(f"test (epoch {best['epoch']}): top-1 {100 * test['top1']:.2f}  mean-class {100 * test['mean_class']:.2f}  "
                f"many {_pct(test['many'])}  medium {_pct(test['medium'])}  few {_pct(test['few'])}  -> {run_dir}")
        dist_utils.barrier()  # the other ranks return once the run directory is complete (a suite reads it next)
        return metrics


def _pct(x: float) -> str:
    return "  -  " if not math.isfinite(x) else f"{100 * x:5.2f}"


def _metrics(cfg: TrainConfig, data, history, best, *, finished: bool, test: dict | None = None,
             test_last: dict | None = None) -> dict:
    out = {"name": cfg.name, "dataset": cfg.dataset, "model": cfg.model, "loss": cfg.loss, "sampler": cfg.sampler,
           "seed": cfg.seed, "class_counts": data.class_counts, "class_names": data.class_names,
           "epochs": cfg.epochs, "epochs_completed": len(history), "finished": finished,
           "selected_epoch": best["epoch"], "select_on": cfg.select_on, "history": history,
           "threads": torch.get_num_threads(),
           "written_at": time.strftime("%Y-%m-%dT%H:%M:%S")}
    if test is not None:
        out["test"] = test
        out["test_last"] = test_last
    return out


# Keys that may change on --resume: they do not alter what is computed.
RESUME_MAY_CHANGE = ("device", "eval_batch_size", "output_dir", "data_root", "threads", "num_workers",
                     "persistent_workers")


def check_same_config(saved: dict, current: dict, run_dir: Path) -> None:
    """--resume continues the same run: a changed training setting would be silently overridden by the
    saved optimizer/scheduler state (lr, epochs) or break exact resumption, so it is an error."""
    changed = sorted(k for k in saved.keys() & current.keys()
                     if k not in RESUME_MAY_CHANGE and saved[k] != current[k])
    if changed:
        diff = ", ".join(f"{k}: {saved[k]!r} -> {current[k]!r}" for k in changed)
        raise ConfigError(f"--resume of {run_dir} with a changed config ({diff}). Resume with the run's own "
                          f"settings (they are in {run_dir / 'config.yaml'}), or start a new run with name=...")


def check_resumable(run_dir: Path) -> None:
    if not (run_dir / CHECKPOINT).exists():
        raise CheckpointError(f"nothing to resume in {run_dir}: no {CHECKPOINT}")
