"""`longtail train`: one training run from a TrainConfig into a run directory.

The config becomes library objects (:mod:`.build`, :mod:`.stage2`) and a
:class:`longtail.engine.Trainer`, which writes the run directory: config.yaml (resolved), metrics.json
(rewritten every epoch), checkpoint.pt (every epoch, atomic), best.pt (best on validation), test
logits and reports, per_class_accuracy.png, tb/ (TensorBoard events). ``--resume`` continues exactly.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from pathlib import Path

import torch
import yaml
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from ..config import ConfigError, TrainConfig, changed_settings, to_dict
from ..data.inputs import InputSpec
from ..engine import distributed as dist_utils
from ..engine import load_checkpoint
from ..engine.hooks import Hook
from ..engine.loop import compile_in_place
from ..engine.run_dir import RunDirectory
from ..engine.run_dir import claimed_run_dir as _claimed
from ..engine.trainer import CHECKPOINT_FILE, RUN_FILES, SELECT_ON, Trainer, no_progress, seed_everything
from . import build
from .output import make_console, percent
from .stage2 import prepare_stage2

console = make_console()


def run_dir_of(cfg: TrainConfig) -> Path:
    if not cfg.name:
        raise ConfigError("the run needs a name: pass name=... (a config file gives its stem by default)")
    return Path(cfg.output_dir) / cfg.name


AMP = {"bf16": torch.bfloat16, "fp16": torch.float16}


def recorded_inputs(data) -> dict:
    """``{"inputs": ...}`` for metrics.json: the test-time pipeline `longtail predict` / `export` rebuild without
    the data (:class:`~longtail.data.inputs.InputSpec`); empty for a dataset whose pipeline it cannot describe."""
    spec = InputSpec.of(data)
    return {"inputs": spec.as_dict()} if spec is not None else {}


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
    return {key: getattr(cfg, key) for key in TrainConfig.SPLIT_KEYS}


def claimed_run_dir(directory: RunDirectory, info: dist_utils.DistInfo, *, resume: bool, overwrite: bool, say):
    """:func:`longtail.engine.run_dir.claimed_run_dir`, its notes printed in yellow."""
    return _claimed(directory, info, resume=resume, overwrite=overwrite, warn=lambda note: say(f"[yellow]{escape(note)}[/]"))


@contextlib.contextmanager
def _progress(description: str, total: int):
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]:.4f}"), TimeRemainingColumn(), console=console, transient=True)
    with bar:
        task = bar.add_task(description, total=total, loss=0.0)
        yield lambda step, stats: bar.update(task, advance=1, loss=stats["loss"])


def run_training(cfg: TrainConfig, *, resume: bool = False, overwrite: bool = False, quiet: bool = False,
                 hooks: Sequence[Hook] = ()) -> dict:
    """Train, select on validation, test; returns the final metrics dict (also in metrics.json). ``hooks``: your
    own :class:`~longtail.engine.Hook`\\ s, called after the method's own (their ``state_dict`` is checkpointed,
    so ``resume=True`` needs the same hooks in the same order)."""
    info = dist_utils.setup(cfg.device)  # the group is left at process exit (see setup)
    return _run(cfg, info, resume=resume, overwrite=overwrite, quiet=quiet, hooks=hooks)


def _run(cfg: TrainConfig, info: dist_utils.DistInfo, *, resume: bool, overwrite: bool, quiet: bool,
         hooks: Sequence[Hook]) -> dict:
    if cfg.select_on not in SELECT_ON:
        raise ConfigError(f"select_on must be 'val' or 'last', got {cfg.select_on!r} (selecting on test is not offered)")
    if cfg.epochs < 1:
        raise ConfigError(f"epochs must be >= 1, got {cfg.epochs}")
    if not 0 <= cfg.warmup_epochs <= cfg.epochs:
        raise ConfigError(f"warmup_epochs must lie in [0, epochs = {cfg.epochs}], got {cfg.warmup_epochs}: "
                          f"pass a shorter warm-up with the shorter schedule, e.g. warmup_epochs=0")
    build.check_schedule(cfg)
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
    model = build.build_model(cfg, data).to(info.device, memory_format=memory_format)
    loss_fn = build.build_loss(cfg, data).to(info.device)
    if cfg.sampler == "meta" and not cfg.init_from:
        raise ConfigError("sampler: meta (BALMS) trains the classifier of a decoupled stage 2: set "
                          "init_from=<stage-1 run directory>")
    # decoupled stage 2 (init_from): only the head trains, on a stream of frozen-backbone features
    stage2 = prepare_stage2(model, cfg, data, info, say) if cfg.init_from else None
    trained = stage2.head if stage2 else model  # what the optimiser updates
    sampler = stage2.sampler if stage2 else build.build_sampler(cfg, data, info)
    loader = stage2.loader if stage2 else build.train_loader(data.train, sampler, cfg, info)
    val_model, val_loader = model, build.eval_loader(data.val, cfg, info)
    if stage2 and stage2.val_loader is not None:  # cached val features: evaluate the head on them
        val_model, val_loader = stage2.head, stage2.val_loader
    optimizer = build.build_optimizer(cfg, trained, stage2=stage2 is not None)
    mixer = build.build_mixer(cfg, data)
    if cfg.compile and stage2 is not None:
        raise ConfigError("compile speeds up the whole network of end-to-end training; stage 2 (init_from) trains "
                          "only the classifier on features: remove compile")
    if cfg.compile:  # compiling in place keeps the parameters (and their state-dict keys)
        example = data.train[0][0][None].to(info.device, memory_format=memory_format)
        compile_in_place(model, example, log=lambda text: say(f"[yellow]{escape(text)}[/]"))
    scheduler = build.build_scheduler(cfg, optimizer, len(loader))
    if stage2 and stage2.meta is not None and not hasattr(loss_fn, "per_sample"):
        raise ConfigError(f"the Meta Sampler weights per-sample losses, and loss {cfg.loss} has no "
                          "per_sample(logits, target); use loss: balanced_softmax (BALMS) or ce")

    # Everything above validated the run (data, model, loss, sampler, stage-1 weights) without touching the
    # run directory; only now is it created, locked and, for --overwrite, its old run moved aside.
    directory = RunDirectory(run_dir, RUN_FILES, CHECKPOINT_FILE)
    with claimed_run_dir(directory, info, resume=resume, overwrite=overwrite, say=say) as can_resume:
        trainer = Trainer(model, loader, loss_fn, optimizer, scheduler=scheduler, sampler=sampler, trained=trained,
                          val_model=val_model, val_loader=val_loader, hooks=[*([stage2] if stage2 else []), *hooks], dist=info,
                          epochs=cfg.epochs, class_counts=data.class_counts, class_names=data.class_names,
                          seed=cfg.seed, eval_every=cfg.eval_every, select_on=cfg.select_on,
                          many=cfg.many_threshold, few=cfg.few_threshold, channels_last=cfg.channels_last,
                          amp=amp_dtype(cfg.amp), max_grad_norm=cfg.max_grad_norm, batch_transform=mixer, run=directory,
                          run_info={"name": cfg.name, "dataset": cfg.dataset, "model": cfg.model, "loss": cfg.loss,
                                    "sampler": cfg.sampler, "seed": cfg.seed, **recorded_inputs(data)},
                          checkpoint_extra={"config": to_dict(cfg), "split": split_settings(cfg)},
                          log=say, progress=_progress if info.is_main and not quiet and console.is_terminal
                          else no_progress)
        if can_resume:
            state = load_checkpoint(run_dir / CHECKPOINT_FILE)
            diff = changed_settings(state.get("config", {}), to_dict(cfg), TrainConfig.NOT_COMPUTED_KEYS)
            if diff:
                raise ConfigError(f"--resume of {run_dir} with a changed config ({diff}). Resume with the run's own "
                                  f"settings (they are in {run_dir / 'config.yaml'}), or start a new run with name=...")
            trainer.load_state_dict(state)
            say(f"resuming {run_dir} at epoch {trainer.start_epoch}/{cfg.epochs}")
        if info.is_main:
            (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        say(f"[bold]{cfg.name}[/]: {cfg.dataset} ({len(data.train)} train / {len(data.val)} val / {len(data.test)} test, "
            f"{data.num_classes} classes), {cfg.model}, loss={cfg.loss}, sampler={cfg.sampler}, "
            f"{info.world_size} process(es) on {info.device.type}")
        if stage2:
            say(f"stage 2 from {stage2.notes['init_from']}: backbone frozen, {stage2.notes}")

        trainer.timing["startup_seconds"] = process_age_seconds()  # interpreter, imports, data, model, run directory
        trainer.fit()
        # the selected model on test, and its val logits too (`longtail posthoc` reads both)
        metrics = trainer.test(build.eval_loader(data.test, cfg, info), report_loader=build.eval_loader(data.val, cfg, info))
        test, best = metrics["test"], trainer.best
        say(f"test (epoch {best['epoch']}): top-1 {100 * test['top1']:.2f}  mean-class {100 * test['mean_class']:.2f}  "
            f"many {percent(test['many'], 5)}  medium {percent(test['medium'], 5)}  few {percent(test['few'], 5)}  -> {run_dir}")
        dist_utils.barrier()  # the other ranks return once the run directory is complete (a suite reads it next)
        return metrics
