"""A detection run as library calls: the class statistics of a training set, the parts a run trains with
(:func:`training_parts`: end to end, or decoupled with the Meta Reweighter as a hook), the run itself with
its checkpoint and exact resume (:class:`DetectionTrainer`), and :func:`evaluate_detector` (LVIS metrics;
under torchrun every rank predicts a share of the images and rank 0 evaluates).

A run directory holds checkpoint.pt (every epoch, atomic), model.pt (final weights) and metrics.json
(LVIS AP/APr/APc/APf, bbox and segm, on each evaluation split); ``longtail detect train`` adds config.yaml.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from ..engine import distributed as dist_utils
from ..engine.checkpoint import save_checkpoint
from ..engine.hooks import Hook
from ..engine.run_dir import RunDirectory
from ..engine.schedule import warmup_step
from ..engine.trainer import seed_everything, write_json_atomic
from ..samplers.base import RandomSampler, SequentialShardSampler
from ..samplers.repeat_factor import RepeatFactorSampler
from . import train as det
from .coco import COCO_LT_AP_BIN_EDGES, evaluate_coco
from .evaluation import evaluate_lvis
from .heads.balms import MetaReweighter, MetaStream
from .lvis import LvisDetection, collate_detection
from .models import load_detector_weights, reset_class_logits

CHECKPOINT_FILE, MODEL_FILE, METRICS_FILE = "checkpoint.pt", "model.pt", "metrics.json"
RUN_FILES = (CHECKPOINT_FILE, MODEL_FILE, METRICS_FILE, "config.yaml")
FREQUENCY_IMAGES = ("annotated", "all")
PROTOCOLS = ("lvis", "coco")
META_STREAM_SEED = 7919  # the meta stream of rank r is seeded seed + 7919 + 10007 r (rank 0: the 1-process one)


def class_statistics(train_set: LvisDetection, frequency_images: str = "annotated") -> dict[str, Any]:
    """What the heads are built from: instance and image counts per class, and the number of training images
    over which image frequencies are taken: those with annotations (the official BALMS code, detectron2)
    or every listed image (``"all"``)."""
    if frequency_images not in FREQUENCY_IMAGES:
        raise ValueError(f"frequency_images must be 'annotated' (the official BALMS code, detectron2) or 'all', "
                         f"got {frequency_images!r}")
    num_images = train_set.num_annotated_images if frequency_images == "annotated" else len(train_set)
    stats = {"instance_counts": train_set.instance_counts, "image_counts": train_set.image_counts,
             "num_images": num_images, "frequencies": train_set.frequencies}
    if hasattr(train_set, "ap_bin_counts"):  # COCO: the training counts AP1..AP4 bin the classes by
        stats["ap_bin_counts"] = {str(cid): n for cid, n in train_set.ap_bin_counts.items()}
    return stats


class MetaReweighting(Hook):
    """The Meta Reweighter of BALMS on LVIS (decoupled stage 2): its class weights, their Adam, and this
    rank's class-balanced meta stream, whose position every rank saves so a resume continues it exactly."""

    def __init__(self, num_classes: int, train_set: LvisDetection, *, batch_size: int, lr: float, seed: int,
                 dist: dist_utils.DistInfo) -> None:
        self.reweighter = MetaReweighter(num_classes).to(dist.device)
        self.optimizer = torch.optim.Adam(self.reweighter.parameters(), lr=lr)
        self.batches = MetaStream(train_set, batch_size, seed=seed + META_STREAM_SEED + 10007 * dist.rank)
        self.rank = dist.rank

    def state_dict(self) -> dict[str, Any]:
        # every rank's stream position (a collective under DDP)
        streams = dist_utils.all_gather_objects(self.batches.generator.get_state())
        return {"reweighter": self.reweighter.state_dict(), "meta_optimizer": self.optimizer.state_dict(),
                "meta_streams": streams}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.reweighter.load_state_dict(state["reweighter"])
        self.optimizer.load_state_dict(state["meta_optimizer"])
        if "meta_streams" in state:  # older checkpoints restart the stream
            self.batches.generator.set_state(state["meta_streams"][self.rank])

    def metrics(self) -> dict[str, Any]:
        return {"reweighter": self.reweighter().tolist()}


@dataclass
class TrainingParts:
    """What one detection run trains with. ``model``: the detector (its state is what is saved);
    ``trained``: what the end-to-end step calls (the detector, or its DDP wrapper); ``decoupled``: only the
    class-logit layer trains; ``meta``: the Meta Reweighter (head balms)."""
    model: nn.Module
    trained: nn.Module
    decoupled: bool
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    sampler: Any
    loader: DataLoader
    steps_per_epoch: int
    meta: MetaReweighting | None = None


def training_parts(model: nn.Module, train_set: LvisDetection, *, lr: float, momentum: float = 0.9,
                   weight_decay: float = 1e-4, batch_size: int = 2, lr_steps: tuple[int, ...] = (),
                   warmup_iters: int = 0, init_from: str | Path | None = None, meta_reweighter: bool = False,
                   meta_lr: float = 0.01, repeat_threshold: float | None = None, count_unannotated: bool = False,
                   num_workers: int = 0, seed: int = 0, dist: dist_utils.DistInfo | None = None) -> TrainingParts:
    """Optimiser (SGD), schedule (``warmup_iters`` linear warm-up, x0.1 after each epoch in ``lr_steps``),
    sampler (repeat-factor sampling at ``repeat_threshold``, else uniform; each rank a disjoint share) and
    loader of a run. ``init_from`` (weights file): decoupled stage 2, loading it, re-creating the class
    logits for the model's head and freezing everything else; ``meta_reweighter`` adds BALMS's Meta
    Reweighter (Adam at ``meta_lr``)."""
    dist = dist or dist_utils.DistInfo()
    device = dist.device
    decoupled = init_from is not None
    if meta_reweighter and not decoupled:
        raise ValueError("the Meta Reweighter (head balms) trains in decoupled stage 2: give the stage-1 weights")
    if decoupled:
        load_detector_weights(model, str(init_from))
        reset_class_logits(model)  # fresh class logits for this head, as the BAGS / BALMS recipes do
        params = list(det.freeze_all_but_class_logits(model).parameters())
    else:
        params = [p for p in model.parameters() if p.requires_grad]
    model.to(device)
    optimizer = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay)
    meta = None
    if meta_reweighter:
        meta = MetaReweighting(train_set.num_classes, train_set, batch_size=batch_size, lr=meta_lr, seed=seed,
                               dist=dist)
    shard = dict(num_replicas=dist.world_size, rank=dist.rank, seed=seed)  # each rank: a disjoint share
    if repeat_threshold is not None:
        sampler = RepeatFactorSampler(train_set.repeat_factors(repeat_threshold, count_unannotated=count_unannotated),
                                      **shard)
    else:
        sampler = RandomSampler(len(train_set), **shard)
    loader = DataLoader(train_set, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                        collate_fn=collate_detection)
    steps_per_epoch = math.ceil(len(sampler) / batch_size)
    scheduler = warmup_step(optimizer, [int(e) * steps_per_epoch for e in lr_steps], warmup_iters)
    trained = model
    if dist.distributed and not decoupled:
        # every parameter of the torchvision detectors gets a gradient each step (checked for every head):
        # no find_unused_parameters. Stage 2 averages its gradients itself (no DDP forward there).
        trained = nn.parallel.DistributedDataParallel(model, device_ids=[device] if device.type == "cuda" else None)
    return TrainingParts(model=model, trained=trained, decoupled=decoupled, optimizer=optimizer, scheduler=scheduler,
                         sampler=sampler, loader=loader, steps_per_epoch=steps_per_epoch, meta=meta)


class DetectionTrainer:
    """Train ``parts`` for ``epochs`` (with a ``run`` directory: a checkpoint every epoch, ``model.pt`` at
    the end, and :meth:`load_state_dict` of the checkpoint resumes exactly), then :meth:`evaluate` on each
    split. ``checkpoint_extra`` goes into every checkpoint (the CLI's config)."""

    def __init__(self, parts: TrainingParts, *, epochs: int, seed: int = 0, max_grad_norm: float | None = None,
                 amp: torch.dtype | None = None, dist: dist_utils.DistInfo | None = None, run: RunDirectory | None = None,
                 checkpoint_extra: Mapping[str, Any] | None = None, log: Callable[[str], None] = lambda text: None):
        self.parts, self.epochs, self.seed, self.max_grad_norm = parts, epochs, seed, max_grad_norm
        self.dist = dist or dist_utils.DistInfo()
        self.amp = amp  # training only: evaluation stays float32 (box coordinates need its precision)
        self.scaler = torch.amp.GradScaler(self.dist.device.type) if amp == torch.float16 and not parts.decoupled else None
        self.run, self.checkpoint_extra, self.log = run, dict(checkpoint_extra or {}), log
        self.history: list[dict] = []
        self.start_epoch = 0

    def state_dict(self) -> dict[str, Any]:
        p = self.parts
        state = {"model": p.model.state_dict(), "optimizer": p.optimizer.state_dict(),
                 "scheduler": p.scheduler.state_dict(), "epoch": len(self.history), "history": self.history,
                 **self.checkpoint_extra, "world_size": self.dist.world_size}
        if p.meta is not None:
            state.update(p.meta.state_dict())
        if self.scaler is not None:
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved_world = int(state.get("world_size", 1))
        if saved_world != self.dist.world_size:  # the shards, the global batch and the meta streams would change
            raise ValueError(f"the checkpoint was trained by {saved_world} process(es), this is {self.dist.world_size}: "
                             f"resume with the same number (torchrun --nproc_per_node {saved_world}, or no torchrun "
                             "for 1)")
        p = self.parts
        p.model.load_state_dict(state["model"])
        p.optimizer.load_state_dict(state["optimizer"])
        p.scheduler.load_state_dict(state["scheduler"])
        if p.meta is not None:
            p.meta.load_state_dict(state)
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])
        self.history, self.start_epoch = state["history"], int(state["epoch"])

    def fit(self) -> list[dict]:
        """Train from ``start_epoch`` to ``epochs``; returns the history (one entry of mean losses per epoch)."""
        for epoch in range(self.start_epoch, self.epochs):
            out = self.train_epoch(epoch)
            self.history.append({"epoch": epoch + 1, "lr": self.parts.optimizer.param_groups[0]["lr"],
                                 **{k: float(v) for k, v in out.items()}})
            state = self.state_dict() if self.run is not None else None  # a collective with the meta streams
            if self.dist.is_main and self.run is not None:
                save_checkpoint(state, self.run.path / CHECKPOINT_FILE)
                self.run.commit()  # the new run has a checkpoint: a replaced old run can go
            self.log(f"epoch {epoch + 1:>3}/{self.epochs}  loss {out['loss']:.4f}  ({out['seconds']:.1f}s)")
            dist_utils.barrier()
        dist_utils.broadcast_buffers(self.parts.model)  # every rank evaluates (and rank 0 saves) the same weights
        if self.dist.is_main and self.run is not None:
            save_checkpoint(self.parts.model.state_dict(), self.run.path / MODEL_FILE)
        return self.history

    def train_epoch(self, epoch: int) -> dict:
        p = self.parts
        seed_everything(self.seed, epoch + 1)
        p.sampler.set_epoch(epoch)
        if p.decoupled:
            meta = p.meta
            return det.decoupled_train_one_epoch(
                p.model, p.loader, p.optimizer, p.scheduler, device=self.dist.device, epoch=epoch,
                reweighter=meta.reweighter if meta else None, meta_optimizer=meta.optimizer if meta else None,
                meta_batches=meta.batches if meta else None, amp=self.amp)
        return det.train_one_epoch(p.trained, p.loader, p.optimizer, p.scheduler, device=self.dist.device,
                                   epoch=epoch, max_grad_norm=self.max_grad_norm, amp=self.amp, scaler=self.scaler)


def evaluate_detector(model: nn.Module, dataset: LvisDetection, ground_truth: str | Path | Mapping[str, Any], *,
                      batch_size: int = 8, num_workers: int = 0, with_masks: bool = False, max_dets: int | None = None,
                      max_images: int | None = None, device: torch.device | None = None,
                      protocol: str = "lvis", instance_counts: Mapping[int, int] | None = None,
                      bin_edges: tuple[float, ...] = COCO_LT_AP_BIN_EDGES) -> dict[str, Any]:
    """Box (and mask, with ``with_masks``, for Mask R-CNN) metrics of ``model`` on ``dataset``, whose
    annotations are ``ground_truth`` (the json or its dict); ``max_images``: the first N images only.

    ``protocol="lvis"``: federated LVIS evaluation (AP, AP50, ..., APr, APc, APf; ``max_dets`` 300 per
    image by default). ``protocol="coco"``: COCO evaluation (crowd regions ignored; 100 per image by default),
    plus AP1..AP4 and their mean APbins when ``instance_counts`` ({category id: training count}) are given,
    binned at ``bin_edges``. Returns ``{"bbox": {...}, ["segm": ...], "num_images", "num_detections", "seconds"}``.

    Under torchrun it is a collective: each rank predicts every W-th image, rank 0 gathers the results
    and evaluates, and every rank returns the metrics."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol must be one of {PROTOCOLS}, got {protocol!r}")
    device = device or next(model.parameters()).device
    start = time.perf_counter()
    subset: Dataset = dataset if max_images is None else Subset(dataset, range(min(max_images, len(dataset))))
    distributed = dist_utils.is_distributed() and len(subset) > 0
    sampler = None
    if distributed:
        sampler = SequentialShardSampler(len(subset), num_replicas=torch.distributed.get_world_size(),
                                         rank=torch.distributed.get_rank())
    loader = DataLoader(subset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                        collate_fn=collate_detection)
    results = det.predict_lvis(model, loader, device, dataset.label_to_cat_id, with_masks=with_masks)
    image_ids = [int(dataset.image_ids[i]) for i in range(len(subset))]
    if distributed:
        shards = _gather_to_main(results)
        if torch.distributed.get_rank() != 0:
            return dist_utils.broadcast_object(None)
        order = {image_id: k for k, image_id in enumerate(image_ids)}  # dataset order, as one process gives it
        results = sorted((r for shard in shards for r in shard), key=lambda r: order[r["image_id"]])
    gt = _ground_truth(ground_truth, set(image_ids))
    out: dict[str, Any] = {}
    for iou_type in ("bbox", "segm") if with_masks else ("bbox",):
        if protocol == "coco":
            out[iou_type] = evaluate_coco(results, gt, iou_type=iou_type, max_dets=max_dets or 100,
                                          instance_counts=instance_counts, bin_edges=bin_edges)
            out[iou_type].pop("per_class", None)
        else:
            out[iou_type] = evaluate_lvis(results, gt, iou_type=iou_type, max_dets=max_dets or 300)
    out["num_images"] = len(subset)
    out["num_detections"] = len(results)  # scored, before the evaluator's per-image cap
    out["seconds"] = time.perf_counter() - start
    return dist_utils.broadcast_object(out) if distributed else out


def _gather_to_main(obj: Any) -> list[Any] | None:
    """Every rank's ``obj`` as a list on rank 0 (None elsewhere): the LVIS result lists, kept off the other ranks."""
    gathered = [None] * torch.distributed.get_world_size() if torch.distributed.get_rank() == 0 else None
    torch.distributed.gather_object(obj, gathered, dst=0)
    return gathered


def _ground_truth(source: str | Path | Mapping[str, Any], image_ids: set[int]) -> dict:
    """The annotations of ``image_ids`` only (a subset evaluation must not count the other images' objects)."""
    if isinstance(source, Mapping):
        gt = dict(source)
    else:
        with open(source) as f:
            gt = json.load(f)
    gt["images"] = [im for im in gt["images"] if im["id"] in image_ids]
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in image_ids]
    return gt


def finish_run(result: dict[str, Any], run: RunDirectory | None, dist: dist_utils.DistInfo) -> dict[str, Any]:
    """Rank 0's result on every rank, written to metrics.json when there is a run directory."""
    result = dist_utils.broadcast_object(result)  # rank 0's timings: the same dict on every rank
    if dist.is_main and run is not None:
        write_json_atomic(result, run.path / METRICS_FILE)
    return result
