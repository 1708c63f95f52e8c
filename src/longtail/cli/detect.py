"""`longtail detect train | eval`: long-tailed detection runs on LVIS-format data (the side-by-side
table, `longtail detect compare`, is in detect_suite.py).

A run directory holds config.yaml (resolved), checkpoint.pt (every epoch, atomic, for --resume),
model.pt (final weights), metrics.json (LVIS AP/APr/APc/APf, bbox and segm, on the val json and, when
``test_json`` is set, on the test json: val is for choosing settings, test for reporting).
Stage 2 (decoupled) is a config with ``init_from`` (a stage-1 run directory or .pt): the weights are
loaded, the class-logit layer re-created for the config's head and everything else frozen; head
``balms`` then also trains the Meta Reweighter on a class-balanced meta stream.
"""

from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import torch
import yaml
from torch.utils.data import DataLoader

from ..engine.checkpoint import load_checkpoint, save_checkpoint
from .config import ConfigError, load_config, to_dict
from .output import make_console
from ..engine.trainer import seed_everything, write_json_atomic

console = make_console()
CHECKPOINT, MODEL, METRICS = "checkpoint.pt", "model.pt", "metrics.json"
TABLE_METRICS = ("AP", "APr", "APc", "APf")


@dataclass
class DetectConfig:
    # --- run ---
    name: Optional[str] = None  # run directory name (default: the config file's stem)
    output_dir: str = "runs/detection"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda
    num_workers: int = 0
    num_threads: Optional[int] = None  # torch CPU threads (1 is fastest on a busy 2-core machine)
    # --- data (LVIS-format json; image paths relative to image_root, default: the json's folder) ---
    train_json: Optional[str] = None
    val_json: Optional[str] = None
    image_root: Optional[str] = None
    val_image_root: Optional[str] = None
    test_json: Optional[str] = None  # held-out split for reporting; val is then only for choosing settings
    test_image_root: Optional[str] = None
    repeat_threshold: Optional[float] = None  # repeat-factor sampling t (LVIS: 0.001); null = uniform
    # image frequencies (sigmoid Balanced Softmax f_j, repeat factors f(c)) over the images that have annotations
    # (official BALMS code, detectron2) or over every listed image ("all")
    frequency_images: str = "annotated"
    max_val_images: Optional[int] = None  # evaluate on the first N val images only (quick runs)
    # --- model ---
    arch: str = "fasterrcnn"  # fasterrcnn | maskrcnn
    backbone: str = "small"  # small | resnet50_fpn
    head: str = "softmax"  # softmax | bags | balanced_softmax | balms | sigmoid
    head_options: dict = field(default_factory=dict)  # e.g. {bin_edges: [10, 100, 1000], others_ratio: 8}
    detector_options: dict = field(default_factory=dict)  # torchvision FasterRCNN/MaskRCNN kwargs (min_size ...)
    weights_path: Optional[str] = None  # local detector weights to start from (class layers skipped)
    backbone_weights_path: Optional[str] = None  # local ImageNet ResNet-50 weights (resnet50_fpn)
    # --- decoupled stage 2 ---
    init_from: Optional[str] = None  # stage-1 run dir or .pt: re-create the class logits, freeze the rest
    meta_lr: float = 0.01  # Adam lr of the Meta Reweighter (head balms)
    # --- optimisation ---
    epochs: int = 12
    batch_size: int = 4
    lr: float = 0.02
    momentum: float = 0.9
    weight_decay: float = 1e-4
    lr_steps: list = field(default_factory=list)  # epochs after which lr is multiplied by 0.1 (BAGS: [8, 11])
    warmup_iters: int = 0  # linear warm-up from 0.001 x lr
    max_grad_norm: Optional[float] = None
    # --- evaluation ---
    eval_batch_size: int = 8
    max_dets: int = 300


class StepWarmup:
    """lr factor at iteration t: linear warm-up from 0.001 over ``warmup`` iterations, times 0.1 for
    each entry of ``steps`` (in iterations) already passed. A callable object so it pickles."""

    def __init__(self, steps: list[int], warmup: int) -> None:
        self.steps, self.warmup = sorted(steps), warmup

    def __call__(self, t: int) -> float:
        warm = 0.001 + (1 - 0.001) * t / self.warmup if t < self.warmup else 1.0
        return warm * 0.1 ** sum(t >= s for s in self.steps)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda"):
        raise ConfigError(f"device must be auto, cpu or cuda, got {name!r}")
    return torch.device(name)


EVAL_SPLITS = ("val", "test")


def _datasets(cfg: DetectConfig, with_masks: bool, train: bool = True, splits: tuple[str, ...] = EVAL_SPLITS):
    """(train set or None, {"val": set, "test": set (when test_json is set)}), the eval sets limited to ``splits``."""
    from ..detection.lvis import LvisDetection

    if cfg.val_json is None or (train and cfg.train_json is None):
        raise ConfigError("set train_json and val_json (LVIS-format annotation files); "
                          "`longtail detect make-data` writes the embedded benchmark")
    root = lambda js, r: Path(r) if r is not None else Path(js).parent  # noqa: E731
    train_set = None
    if train:
        train_set = LvisDetection(cfg.train_json, root(cfg.train_json, cfg.image_root), with_masks=with_masks)
    eval_sets = {}
    if "val" in splits:
        eval_sets["val"] = LvisDetection(cfg.val_json, root(cfg.val_json, cfg.val_image_root or cfg.image_root),
                                         with_masks=False, counts_from="annotations")
    if cfg.test_json is not None and "test" in splits:
        eval_sets["test"] = LvisDetection(cfg.test_json, root(cfg.test_json, cfg.test_image_root or cfg.image_root),
                                          with_masks=False, counts_from="annotations")
    return train_set, eval_sets


def _class_stats(train_set, frequency_images: str = "annotated") -> dict[str, Any]:
    if frequency_images not in ("annotated", "all"):
        raise ConfigError(f"frequency_images must be 'annotated' (the official BALMS code, detectron2) or 'all', "
                          f"got {frequency_images!r}")
    num_images = train_set.num_annotated_images if frequency_images == "annotated" else len(train_set)
    return {"instance_counts": train_set.instance_counts, "image_counts": train_set.image_counts,
            "num_images": num_images, "frequencies": train_set.frequencies}


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


def _weights_file(target: str | Path) -> Path:
    target = Path(target)
    return target / MODEL if target.is_dir() else target


def run_detection_training(cfg: DetectConfig, *, resume: bool = False, overwrite: bool = False,
                           quiet: bool = False) -> dict:
    """Train (end to end, or decoupled with ``init_from``), evaluate on the val (and test) json, write the run dir.

    Under ``torchrun --nproc_per_node N`` (WORLD_SIZE > 1) every rank trains on its shard of each epoch
    with ``batch_size`` images per step, so the global batch is ``batch_size x N``; rank 0 alone writes
    the run directory and prints. Every rank returns the same metrics."""
    from ..engine import distributed as dist_utils

    if not cfg.name:
        raise ConfigError("the run needs a name: pass name=... (a config file gives its stem by default)")
    if cfg.head == "balms" and cfg.init_from is None:
        raise ConfigError("head balms trains the Meta Reweighter in decoupled stage 2: set init_from to a stage-1 run")
    _device(cfg.device)  # a clear error for a bad name before joining the process group
    info = dist_utils.setup(cfg.device)  # the group is left at process exit (see setup)
    return _train_detector(cfg, info, resume=resume, overwrite=overwrite, quiet=quiet)


RUN_FILES = (CHECKPOINT, MODEL, METRICS, "config.yaml")


@dataclass
class _Training:
    """Everything one detection run trains with, built from its config; ``state``/``load_state`` are
    the checkpoint (with ``--resume`` continuing exactly: the meta streams of every rank included)."""
    train_set: Any
    eval_sets: dict
    stats: dict
    model: torch.nn.Module  # the detector (its state is what is saved)
    trained: torch.nn.Module  # what the end-to-end step calls: the detector, or its DDP wrapper
    decoupled: bool
    optimizer: torch.optim.Optimizer
    scheduler: Any
    sampler: Any
    loader: DataLoader
    steps_per_epoch: int
    reweighter: Any = None  # head balms: the Meta Reweighter, its Adam, and this rank's meta stream
    meta_optimizer: Any = None
    meta_batches: Any = None

    def state(self, epoch: int, history: list[dict], cfg: DetectConfig, world_size: int, streams) -> dict:
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "scheduler": self.scheduler.state_dict(), "epoch": epoch, "history": history,
                 "config": to_dict(cfg), "world_size": world_size}
        if self.reweighter is not None:
            state.update(reweighter=self.reweighter.state_dict(), meta_optimizer=self.meta_optimizer.state_dict(),
                         meta_streams=streams)
        return state

    def load_state(self, state: dict, rank: int) -> None:
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        if self.reweighter is not None:
            self.reweighter.load_state_dict(state["reweighter"])
            self.meta_optimizer.load_state_dict(state["meta_optimizer"])
            if "meta_streams" in state:  # older checkpoints restart the stream
                self.meta_batches.generator.set_state(state["meta_streams"][rank])


def _build_training(cfg: DetectConfig, info) -> _Training:
    from ..detection import MetaReweighter, load_detector_weights, reset_class_logits
    from ..detection import train as det
    from ..samplers.base import RandomSampler
    from ..samplers.repeat_factor import RepeatFactorSampler

    device = info.device
    train_set, eval_sets = _datasets(cfg, with_masks=cfg.arch == "maskrcnn")
    stats = _class_stats(train_set, cfg.frequency_images)
    model = build_detector(cfg, stats)
    decoupled = cfg.init_from is not None
    if decoupled:
        load_detector_weights(model, str(_weights_file(cfg.init_from)))
        reset_class_logits(model)  # fresh class logits for this head, as the BAGS / BALMS recipes do
        params = list(det.freeze_all_but_class_logits(model).parameters())
    else:
        params = [p for p in model.parameters() if p.requires_grad]
    model.to(device)
    optimizer = torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    meta = {}
    if cfg.head == "balms":
        reweighter = MetaReweighter(len(stats["instance_counts"])).to(device)
        # one meta stream per rank, rank 0's being the single-process one
        meta = dict(reweighter=reweighter, meta_optimizer=torch.optim.Adam(reweighter.parameters(), lr=cfg.meta_lr),
                    meta_batches=MetaStream(train_set, cfg.batch_size, seed=cfg.seed + 7919 + 10007 * info.rank))

    shard = dict(num_replicas=info.world_size, rank=info.rank, seed=cfg.seed)  # each rank: a disjoint share
    if cfg.repeat_threshold is not None:
        sampler = RepeatFactorSampler(train_set.repeat_factors(cfg.repeat_threshold,
                                                               count_unannotated=cfg.frequency_images == "all"), **shard)
    else:
        sampler = RandomSampler(len(train_set), **shard)
    loader = DataLoader(train_set, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers,
                        collate_fn=det.collate)
    steps_per_epoch = math.ceil(len(sampler) / cfg.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, StepWarmup([int(e) * steps_per_epoch for e in cfg.lr_steps], cfg.warmup_iters))
    trained = model
    if info.distributed and not decoupled:
        # every parameter of the torchvision detectors gets a gradient each step (checked for every head):
        # no find_unused_parameters. Stage 2 averages its gradients itself (no DDP forward there).
        trained = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None)
    return _Training(train_set=train_set, eval_sets=eval_sets, stats=stats, model=model, trained=trained,
                     decoupled=decoupled, optimizer=optimizer, scheduler=scheduler, sampler=sampler, loader=loader,
                     steps_per_epoch=steps_per_epoch, **meta)


def _train_detector(cfg: DetectConfig, info, *, resume: bool, overwrite: bool, quiet: bool) -> dict:
    from ..engine import distributed as dist_utils

    say = (lambda *a: console.print(*a)) if (info.is_main and not quiet) else (lambda *a: None)
    if cfg.num_threads is not None:
        torch.set_num_threads(cfg.num_threads)
    from ..engine.run_dir import RunDirectory
    from .train import claimed_run_dir

    run_dir = Path(cfg.output_dir) / cfg.name
    seed_everything(cfg.seed)
    start_time = time.perf_counter()
    run = _build_training(cfg, info)  # validates data, model, head and stage-1 weights before the directory
    directory = RunDirectory(run_dir, RUN_FILES, CHECKPOINT)
    # also: no rank reads the directory before rank 0 has prepared it
    with claimed_run_dir(directory, info, resume=resume, overwrite=overwrite, say=say) as can_resume:
        return _train_claimed(cfg, info, run, run_dir, directory, can_resume, start_time, say)


def _train_claimed(cfg: DetectConfig, info, run: "_Training", run_dir: Path, directory, can_resume: bool,
                   start_time: float, say) -> dict:
    from ..engine import distributed as dist_utils

    history: list[dict] = []
    start_epoch = 0
    if can_resume:
        state = load_checkpoint(run_dir / CHECKPOINT)
        if state["config"] != to_dict(cfg):
            raise ConfigError(f"{run_dir} was trained with another config; use --overwrite or another name")
        saved_world = int(state.get("world_size", 1))
        if saved_world != info.world_size:  # the shards, the global batch and the meta streams would change
            raise ConfigError(f"{run_dir} was trained by {saved_world} process(es), this is {info.world_size}: resume "
                              f"with the same number (torchrun --nproc_per_node {saved_world}, or no torchrun for 1)")
        run.load_state(state, info.rank)
        history, start_epoch = state["history"], int(state["epoch"])
        say(f"resuming {run_dir} at epoch {start_epoch}/{cfg.epochs}")
    if info.is_main:
        (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    say(f"[bold]{cfg.name}[/]: {cfg.arch} {cfg.backbone}, head {cfg.head}, "
        f"{'decoupled from ' + str(cfg.init_from) if run.decoupled else 'end to end'}; "
        f"{len(run.train_set)} train images, {len(run.stats['instance_counts'])} classes, {run.steps_per_epoch} "
        f"steps/epoch on {info.world_size} x {info.device} (global batch {cfg.batch_size * info.world_size})")

    for epoch in range(start_epoch, cfg.epochs):
        out = _train_epoch(run, cfg, info, epoch)
        history.append({"epoch": epoch + 1, "lr": run.optimizer.param_groups[0]["lr"],
                        **{k: float(v) for k, v in out.items()}})
        # every rank's meta stream position (a collective), so --resume continues each stream exactly
        streams = (dist_utils.all_gather_objects(run.meta_batches.generator.get_state())
                   if run.reweighter is not None else None)
        if info.is_main:
            save_checkpoint(run.state(epoch + 1, history, cfg, info.world_size, streams), run_dir / CHECKPOINT)
            directory.commit()  # the new run has a checkpoint: a replaced old run can go
        say(f"epoch {epoch + 1:>3}/{cfg.epochs}  loss {out['loss']:.4f}  ({out['seconds']:.1f}s)")
        dist_utils.barrier()

    dist_utils.broadcast_buffers(run.model)  # every rank evaluates (and rank 0 saves) the same weights and statistics
    if info.is_main:
        save_checkpoint(run.model.state_dict(), run_dir / MODEL)
    result = {"name": cfg.name, "head": cfg.head, "arch": cfg.arch, "decoupled": run.decoupled, "seed": cfg.seed,
              "init_from": cfg.init_from, "history": history, "train_seconds": time.perf_counter() - start_time,
              "eval_seconds": 0.0, "class_stats": run.stats,
              "reweighter": run.reweighter().tolist() if run.reweighter is not None else None}
    if info.distributed:
        result["world_size"] = info.world_size
    for split, dataset in run.eval_sets.items():
        result[split] = evaluate_detector(run.model, dataset, cfg, info.device, split=split)
        result["eval_seconds"] += result[split].pop("seconds")
        say(f"{split}: " + _format_metrics(result[split]))
    result = dist_utils.broadcast_object(result)  # rank 0's timings: the same dict on every rank
    if info.is_main:
        write_json_atomic(result, run_dir / METRICS)
    say(f"-> {run_dir}")
    dist_utils.barrier()  # the other ranks return once the run directory is complete
    return result


def _train_epoch(run: _Training, cfg: DetectConfig, info, epoch: int) -> dict:
    from ..detection import train as det

    seed_everything(cfg.seed, epoch + 1)
    run.sampler.set_epoch(epoch)
    if run.decoupled:
        return det.decoupled_train_one_epoch(run.model, run.loader, run.optimizer, run.scheduler, device=info.device,
                                             epoch=epoch, reweighter=run.reweighter,
                                             meta_optimizer=run.meta_optimizer, meta_batches=run.meta_batches)
    return det.train_one_epoch(run.trained, run.loader, run.optimizer, run.scheduler, device=info.device,
                               epoch=epoch, max_grad_norm=cfg.max_grad_norm)


class MetaStream:
    """Endless class-balanced batches for the Meta Reweighter: images drawn with replacement with weight
    r(I) = max_{c in I} 1 / f(c) (BALMS's meta loader) from a seeded generator (one seed per rank, so
    ranks draw different meta batches). Its ``generator`` state goes into the checkpoint."""

    def __init__(self, train_set, batch_size: int, *, seed: int) -> None:
        from ..detection.train import class_balanced_image_weights

        self.train_set, self.batch_size = train_set, batch_size
        self.weights = class_balanced_image_weights(train_set.image_labels, train_set.num_classes)
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> "MetaStream":
        return self

    def __next__(self):
        from ..detection.train import collate

        picks = torch.multinomial(self.weights, self.batch_size, replacement=True, generator=self.generator)
        return collate([self.train_set[int(i)] for i in picks])


def evaluate_detector(model: torch.nn.Module, val_set, cfg: DetectConfig, device: torch.device,
                      split: str = "val") -> dict:
    """LVIS bbox (and segm for Mask R-CNN) metrics of ``model`` on ``val_set`` (the ``split`` json of ``cfg``;
    ``max_val_images`` cuts both splits). Under DDP a collective: each rank predicts every W-th image,
    rank 0 gathers the results and evaluates, and every rank returns its metrics."""
    from torch.utils.data import Subset

    from ..detection.evaluation import evaluate_lvis
    from ..detection.train import collate, predict_lvis
    from ..engine import distributed as dist_utils
    from ..samplers.base import SequentialShardSampler

    start = time.perf_counter()
    subset = val_set if cfg.max_val_images is None else Subset(val_set, range(min(cfg.max_val_images, len(val_set))))
    distributed = dist_utils.is_distributed() and len(subset) > 0
    sampler = None
    if distributed:
        sampler = SequentialShardSampler(len(subset), num_replicas=torch.distributed.get_world_size(),
                                         rank=torch.distributed.get_rank())
    loader = DataLoader(subset, batch_size=cfg.eval_batch_size, sampler=sampler, num_workers=cfg.num_workers,
                        collate_fn=collate)
    with_masks = cfg.arch == "maskrcnn"
    results = predict_lvis(model, loader, device, val_set.label_to_cat_id, with_masks=with_masks)
    image_ids = [int(val_set.image_ids[i]) for i in range(len(subset))]
    if distributed:
        shards = _gather_to_main(results)
        if torch.distributed.get_rank() != 0:
            return dist_utils.broadcast_object(None)
        order = {image_id: k for k, image_id in enumerate(image_ids)}  # dataset order, as one process gives it
        results = sorted((r for shard in shards for r in shard), key=lambda r: order[r["image_id"]])
    gt_json = cfg.val_json if split == "val" else cfg.test_json
    gt = _ground_truth(gt_json, set(image_ids))
    out: dict[str, Any] = {"bbox": evaluate_lvis(results, gt, iou_type="bbox", max_dets=cfg.max_dets)}
    if with_masks:
        out["segm"] = evaluate_lvis(results, gt, iou_type="segm", max_dets=cfg.max_dets)
    out["num_images"] = len(subset)
    out["seconds"] = time.perf_counter() - start
    return dist_utils.broadcast_object(out) if distributed else out


def _gather_to_main(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` as a list on rank 0 (None elsewhere): the LVIS result lists, kept off the other ranks."""
    gathered = [None] * torch.distributed.get_world_size() if torch.distributed.get_rank() == 0 else None
    torch.distributed.gather_object(obj, gathered, dst=0)
    return gathered


def _ground_truth(path: str, image_ids: set[int]) -> dict:
    import json

    with open(path) as f:
        gt = json.load(f)
    gt["images"] = [im for im in gt["images"] if im["id"] in image_ids]
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in image_ids]
    return gt


def _format_metrics(metrics: dict) -> str:
    parts = []
    for kind in ("bbox", "segm"):
        if kind in metrics:
            parts.append(f"{kind}: " + "  ".join(f"{k} {pct(metrics[kind][k])}" for k in TABLE_METRICS))
    return " | ".join(parts)


def pct(x: float) -> str:
    return "  -  " if x is None or not math.isfinite(x) else f"{100 * x:5.2f}"


def run_detection_eval(target: str, *, split: str = "val", test_json: str | None = None, max_dets: int | None = None,
                       device: str = "auto", as_json: bool = False, save: bool = False) -> dict:
    """Re-evaluate a finished run directory (its config.yaml and model.pt) on its ``split`` json;
    ``test_json`` sets (or replaces) the run's test json; ``max_dets`` replaces the evaluator's per-image
    cap (LVIS: 300, over all classes); ``save`` stores the result in its metrics.json. Under torchrun the
    images are shared between the ranks and rank 0 prints and saves."""
    import json

    from ..engine import distributed as dist_utils

    if split not in EVAL_SPLITS:
        raise ConfigError(f"split must be one of {EVAL_SPLITS}, got {split!r}")
    run_dir = Path(target)
    if not (run_dir / "config.yaml").is_file() or not (run_dir / MODEL).is_file():
        raise FileNotFoundError(f"{run_dir} is not a finished detection run (needs config.yaml and {MODEL})")
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
    model.load_state_dict(load_checkpoint(run_dir / MODEL))
    device = device if device != "auto" else cfg.device
    _device(device)  # a clear error for a bad name before joining the process group
    info = dist_utils.setup(device)  # under torchrun each rank predicts its share of the images
    out = evaluate_detector(model.to(info.device), eval_sets[split], cfg, info.device, split=split)
    if save and info.is_main:
        metrics[split] = {k: v for k, v in out.items() if k != "seconds"}
        write_json_atomic(metrics, run_dir / METRICS)
        (run_dir / "config.yaml").write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))
    dist_utils.barrier()  # the saved metrics are complete before any rank goes on (a suite reads them next)
    if as_json and info.is_main:
        print(json.dumps(out, indent=2))
    else:
        console.print(f"{cfg.name} ({split}): " + _format_metrics(out))
    return out


def read_metrics(run_dir: Path, split: str | None = None) -> dict:
    import json

    f = Path(run_dir) / METRICS
    if not f.is_file():
        raise FileNotFoundError(f"{run_dir} has no {METRICS} (not a finished detection run)")
    metrics = json.loads(f.read_text())
    if split is None:
        return metrics
    if split not in metrics:
        raise ConfigError(f"{run_dir} was not evaluated on {split}: run longtail detect eval {run_dir} --split {split} "
                          "--test-json PATH --save")
    return metrics[split]


def run_detect_command(args) -> None:
    """Dispatch of `longtail detect train | eval | compare` (parsed in cli/main.py)."""
    from .config import describe_keys

    if args.detect_command == "train":
        if args.list_keys:
            print(describe_keys(DetectConfig))
            return
        if args.config is None:
            raise ConfigError("give a config file, e.g. longtail detect train configs/detection/embedded_stage1.yaml")
        config, overrides = args.config, list(args.overrides)
        if "=" in config:  # no file, only overrides
            overrides, config = [config] + overrides, None
        run_detection_training(load_config(DetectConfig, config, overrides), resume=args.resume,
                               overwrite=args.overwrite, quiet=args.quiet)
    elif args.detect_command == "eval":
        run_detection_eval(args.run, split=args.split, test_json=args.test_json, max_dets=args.max_dets,
                           device=args.device, as_json=args.json, save=args.save)
    elif args.detect_command == "compare":
        from .detect_suite import run_compare

        run_compare(args.targets, overrides=args.overrides, quiet=args.quiet, json_out=args.json_out, split=args.split)
