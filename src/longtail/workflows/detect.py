"""`longtail detect train | eval`: long-tailed detection runs on LVIS-format data from a DetectConfig
(the side-by-side table, `longtail detect compare`, is in detect_suite.py). The run itself is
:mod:`longtail.detection.runner`; this module turns the config into its arguments.

A run directory holds config.yaml (resolved), checkpoint.pt (every epoch, atomic, for --resume),
model.pt (final weights), metrics.json (LVIS AP/APr/APc/APf, bbox and segm, on the val json and, when
``test_json`` is set, on the test json: val is for choosing settings, test for reporting).
Stage 2 (decoupled) is a config with ``init_from`` (a stage-1 run directory or .pt): the weights are
loaded, the class-logit layer re-created for the config's head and everything else frozen; head
``balms`` then also trains the Meta Reweighter on a class-balanced meta stream.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from ..config import ConfigError, DetectConfig, changed_settings, load_config, to_dict
from ..detection.runner import (
    CHECKPOINT_FILE,
    METRICS_FILE,
    MODEL_FILE,
    RUN_FILES,
    DetectionTrainer,
    class_statistics,
    evaluate_detector,
    finish_run,
    training_parts,
)
from ..engine import distributed as dist_utils
from ..engine.checkpoint import find_weights, load_checkpoint
from ..engine.run_dir import RunDirectory
from ..engine.trainer import seed_everything, write_json_atomic
from .output import make_console, percent
from .train import amp_dtype

console = make_console()
TABLE_METRICS = ("AP", "APr", "APc", "APf")  # LVIS: the frequency groups
COCO_TABLE_METRICS = ("AP", "AP1", "AP2", "AP3", "AP4")  # COCO-LT: the training-count bins


def table_metrics(metrics: dict) -> tuple[str, ...]:
    """The columns a table of these metrics shows: LVIS's APr/APc/APf or COCO-LT's AP1..AP4."""
    return COCO_TABLE_METRICS if "AP1" in metrics else TABLE_METRICS


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


EVAL_SPLITS = ("val", "test")
DATASET_FORMATS = ("lvis", "coco")


def _datasets(cfg: DetectConfig, with_masks: bool, train: bool = True, splits: tuple[str, ...] = EVAL_SPLITS):
    """(train set or None, {"val": set, "test": set (when test_json is set)}), the eval sets limited to ``splits``."""
    from ..detection.coco import CocoDetection
    from ..detection.lvis import LvisDetection

    if cfg.dataset_format not in DATASET_FORMATS:
        raise ConfigError(f"dataset_format must be one of {list(DATASET_FORMATS)}, got {cfg.dataset_format!r}")
    if cfg.val_json is None or (train and cfg.train_json is None):
        raise ConfigError("set train_json and val_json (LVIS- or COCO-format annotation files); "
                          "`longtail detect make-data` writes the embedded benchmarks")
    dataset = CocoDetection if cfg.dataset_format == "coco" else LvisDetection
    root = lambda js, r: Path(r) if r is not None else Path(js).parent  # noqa: E731
    train_set = None
    if train:
        train_set = dataset(cfg.train_json, root(cfg.train_json, cfg.image_root), with_masks=with_masks)
    eval_sets = {}
    if "val" in splits:
        eval_sets["val"] = dataset(cfg.val_json, root(cfg.val_json, cfg.val_image_root or cfg.image_root),
                                         with_masks=False, counts_from="annotations")
    if cfg.test_json is not None and "test" in splits:
        eval_sets["test"] = dataset(cfg.test_json, root(cfg.test_json, cfg.test_image_root or cfg.image_root),
                                          with_masks=False, counts_from="annotations")
    return train_set, eval_sets


def build_detector(cfg: DetectConfig, stats: dict[str, Any]) -> torch.nn.Module:
    from ..detection import DETECTION_HEADS, create_detector
    from ..detection.heads import HEAD_STATS
    from .build import check_options

    try:
        check_options("detection head", cfg.head, DETECTION_HEADS.get(cfg.head), cfg.head_options, reserved=HEAD_STATS)
    except KeyError as err:
        raise ConfigError(str(err.args[0])) from None
    reserved = {"num_classes", "head", "backbone", "arch", "head_options", "instance_counts", "image_counts",
                "num_images", "weights_path", "backbone_weights_path"}
    clash = sorted(reserved & set(cfg.detector_options))
    if clash:
        raise ConfigError(f"detector_options may not set {clash}: they are top-level keys or come from the data")
    try:
        return create_detector(cfg.arch, num_classes=len(stats["instance_counts"]), head=cfg.head,
                               instance_counts=stats["instance_counts"], image_counts=stats["image_counts"],
                               num_images=stats["num_images"], head_options=cfg.head_options, backbone=cfg.backbone,
                               weights_path=cfg.weights_path, backbone_weights_path=cfg.backbone_weights_path,
                               **cfg.detector_options)
    except TypeError as err:  # an unknown torchvision keyword in detector_options
        raise ConfigError(f"detector_options: {err}") from None
    except (ValueError, KeyError) as err:  # a head or detector option that does not fit the data
        raise ConfigError(f"{cfg.name}: {err.args[0] if err.args else err}") from None


def run_detection_training(cfg: DetectConfig, *, resume: bool = False, overwrite: bool = False,
                           quiet: bool = False) -> dict:
    """Train (end to end, or decoupled with ``init_from``), evaluate on the val (and test) json, write the run dir.

    Under ``torchrun --nproc_per_node N`` (WORLD_SIZE > 1) every rank trains on its shard of each epoch
    with ``batch_size`` images per step, so the global batch is ``batch_size x N``; rank 0 alone writes
    the run directory and prints. Every rank returns the same metrics."""
    if not cfg.name:
        raise ConfigError("the run needs a name: pass name=... (a config file gives its stem by default)")
    if cfg.head == "balms" and cfg.init_from is None:
        raise ConfigError("head balms trains the Meta Reweighter in decoupled stage 2: set init_from to a stage-1 run")
    _device(cfg.device)  # a clear error for a bad name before joining the process group
    info = dist_utils.setup(cfg.device)  # the group is left at process exit (see setup)
    return _train_detector(cfg, info, resume=resume, overwrite=overwrite, quiet=quiet)


def _train_detector(cfg: DetectConfig, info, *, resume: bool, overwrite: bool, quiet: bool) -> dict:
    from .train import claimed_run_dir

    say = (lambda *a: console.print(*a)) if (info.is_main and not quiet) else (lambda *a: None)
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    run_dir = Path(cfg.output_dir) / cfg.name
    seed_everything(cfg.seed)
    start_time = time.perf_counter()
    # data, model, head and stage-1 weights are checked before the run directory is touched
    train_set, eval_sets = _datasets(cfg, with_masks=cfg.arch == "maskrcnn")
    try:
        stats = class_statistics(train_set, cfg.frequency_images)
    except ValueError as err:
        raise ConfigError(str(err)) from None
    model = build_detector(cfg, stats)
    stage1 = None if cfg.init_from is None else find_weights(
        cfg.init_from, (MODEL_FILE,), "point init_from at a finished stage-1 detection run (its model.pt)")[1]
    parts = training_parts(model, train_set, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay,
                           batch_size=cfg.batch_size, lr_steps=cfg.lr_steps, warmup_iters=cfg.warmup_iters,
                           init_from=stage1,
                           meta_reweighter=cfg.head == "balms", meta_lr=cfg.meta_lr,
                           repeat_threshold=cfg.repeat_threshold, count_unannotated=cfg.frequency_images == "all",
                           num_workers=cfg.num_workers, seed=cfg.seed, dist=info)
    amp = amp_dtype(cfg.amp)
    directory = RunDirectory(run_dir, RUN_FILES, CHECKPOINT_FILE)
    # also: no rank reads the directory before rank 0 has prepared it
    with claimed_run_dir(directory, info, resume=resume, overwrite=overwrite, say=say) as can_resume:
        trainer = DetectionTrainer(parts, epochs=cfg.epochs, seed=cfg.seed, max_grad_norm=cfg.max_grad_norm,
                                   amp=amp, dist=info,
                                   run=directory, checkpoint_extra={"config": to_dict(cfg)}, log=say)
        if can_resume:
            state = load_checkpoint(run_dir / CHECKPOINT_FILE)
            diff = changed_settings(state["config"], to_dict(cfg), DetectConfig.NOT_COMPUTED_KEYS)
            if diff:
                raise ConfigError(f"{run_dir} was trained with another config ({diff}); use --overwrite or another name")
            try:
                trainer.load_state_dict(state)
            except ValueError as err:
                raise ConfigError(f"{run_dir}: {err}") from None
            say(f"resuming {run_dir} at epoch {trainer.start_epoch}/{cfg.epochs}")
        if info.is_main:
            (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
        say(f"[bold]{cfg.name}[/]: {cfg.arch} {cfg.backbone}, head {cfg.head}, "
            f"{'decoupled from ' + str(cfg.init_from) if parts.decoupled else 'end to end'}; "
            f"{len(train_set)} train images, {len(stats['instance_counts'])} classes, {parts.steps_per_epoch} "
            f"steps/epoch on {info.world_size} x {info.device} (global batch {cfg.batch_size * info.world_size})")
        history = trainer.fit()
        result = {"name": cfg.name, "head": cfg.head, "arch": cfg.arch, "decoupled": parts.decoupled, "seed": cfg.seed,
                  "init_from": cfg.init_from, "history": history, "train_seconds": time.perf_counter() - start_time,
                  "eval_seconds": 0.0, "class_stats": stats,
                  "reweighter": parts.meta.metrics()["reweighter"] if parts.meta is not None else None}
        if info.distributed:
            result["world_size"] = info.world_size
        for split, dataset in eval_sets.items():
            result[split] = _evaluate(parts.model, dataset, cfg, info.device, split, stats)
            result["eval_seconds"] += result[split].pop("seconds")
            say(f"{split}: " + _format_metrics(result[split]))
        result = finish_run(result, directory, info)
        say(f"-> {run_dir}")
        dist_utils.barrier()  # the other ranks return once the run directory is complete
        return result


def _evaluate(model: torch.nn.Module, dataset, cfg: DetectConfig, device: torch.device, split: str,
              stats: dict) -> dict:
    """:func:`~longtail.detection.runner.evaluate_detector` on the ``split`` json of ``cfg`` (COCO: AP1..AP4 by
    the training counts in ``stats``)."""
    counts = {int(cid): n for cid, n in stats.get("ap_bin_counts", {}).items()} or None
    return evaluate_detector(model, dataset, cfg.val_json if split == "val" else cfg.test_json,
                             batch_size=cfg.eval_batch_size, num_workers=cfg.num_workers,
                             with_masks=cfg.arch == "maskrcnn", max_dets=cfg.max_dets, max_images=cfg.max_val_images,
                             device=device, protocol=cfg.dataset_format, instance_counts=counts,
                             bin_edges=tuple(cfg.ap_bin_edges))


def _format_metrics(metrics: dict) -> str:
    parts = []
    for kind in ("bbox", "segm"):
        if kind in metrics:
            parts.append(f"{kind}: " + "  ".join(f"{k} {percent(metrics[kind][k], 5)}"
                                                 for k in table_metrics(metrics[kind])))
    return " | ".join(parts)


def run_detection_eval(target: str, *, split: str = "val", test_json: str | None = None, max_dets: int | None = None,
                       device: str = "auto", as_json: bool = False, save: bool = False) -> dict:
    """Re-evaluate a finished run directory (its config.yaml and model.pt) on its ``split`` json;
    ``test_json`` sets (or replaces) the run's test json; ``max_dets`` replaces the evaluator's per-image
    cap (LVIS: 300, COCO: 100, over all classes); ``save`` stores the result in its metrics.json. Under torchrun the
    images are shared between the ranks and rank 0 prints and saves."""
    import json


    if split not in EVAL_SPLITS:
        raise ConfigError(f"split must be one of {EVAL_SPLITS}, got {split!r}")
    run_dir = Path(target)
    if not (run_dir / "config.yaml").is_file() or not (run_dir / MODEL_FILE).is_file():
        raise FileNotFoundError(f"{run_dir} is not a finished detection run (needs config.yaml and {MODEL_FILE})")
    cfg = load_config(DetectConfig, run_dir / "config.yaml")
    if test_json is not None:
        cfg = dataclasses.replace(cfg, test_json=test_json)
    if max_dets is not None:
        if save:
            raise ConfigError("--max-dets changes the protocol: its numbers are not saved into the run (drop --save)")
        cfg = dataclasses.replace(cfg, max_dets=max_dets)
    if split == "test" and cfg.test_json is None:
        raise ConfigError(f"{run_dir} has no test_json; pass --test-json PATH (e.g. data/lvis_syn/lvis_test.json)")
    metrics = read_metrics(run_dir)
    _, eval_sets = _datasets(cfg, with_masks=False, train=False, splits=(split,))
    model = build_detector(cfg, metrics["class_stats"])
    model.load_state_dict(load_checkpoint(run_dir / MODEL_FILE))
    device = device if device != "auto" else cfg.device
    _device(device)  # a clear error for a bad name before joining the process group
    info = dist_utils.setup(device)  # under torchrun each rank predicts its share of the images
    out = _evaluate(model.to(info.device), eval_sets[split], cfg, info.device, split, metrics["class_stats"])
    if save and info.is_main:
        metrics[split] = {k: v for k, v in out.items() if k != "seconds"}
        write_json_atomic(metrics, run_dir / METRICS_FILE)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    dist_utils.barrier()  # the saved metrics are complete before any rank goes on (a suite reads them next)
    if as_json and info.is_main:
        print(json.dumps(out, indent=2))
    else:
        console.print(f"{cfg.name} ({split}): " + _format_metrics(out))
    return out


def read_metrics(run_dir: Path, split: str | None = None) -> dict:
    import json

    f = Path(run_dir) / METRICS_FILE
    if not f.is_file():
        raise FileNotFoundError(f"{run_dir} has no {METRICS_FILE} (not a finished detection run)")
    metrics = json.loads(f.read_text())
    if split is None:
        return metrics
    if split not in metrics:
        raise ConfigError(f"{run_dir} was not evaluated on {split}: run longtail detect eval {run_dir} --split {split} "
                          "--test-json PATH --save")
    return metrics[split]
