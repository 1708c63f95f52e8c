"""Detection training as plain functions: end-to-end epochs, decoupled (classifier-only) epochs with
an optional Meta Reweighter step, and prediction.

Decoupled training (BAGS Sec. 4.1, BALMS LVIS recipe): start from a trained detector, re-create
the class-logit layer with the head's number of outputs, freeze everything else. Since nothing
before the class-logit layer learns, a step computes the RoI features of the batch once, without
gradient, and trains only ``cls_score`` on them; the box and mask layers are frozen and their
losses would carry no gradient, so they are not computed.

Under DDP (``torchrun``) the end-to-end epoch is given the DistributedDataParallel-wrapped detector.
The decoupled epoch does not go through a DDP forward, so it averages the class-logit layer's
gradients over ranks itself, and the Meta Reweighter's meta-gradient is the one of the mean of the
ranks' losses (as in :mod:`longtail.engine.meta`); every rank then applies the same updates. A non-finite loss on
any rank stops every rank at the same step, and the returned losses are averaged over ranks.
"""

from __future__ import annotations

import time
from typing import Callable, Iterable, Iterator, Sequence

import torch
from torch import Tensor, nn

from ..engine import distributed as dist_utils
from ..engine.loop import optimizer_step, stop_if_not_finite
from .heads.balms import MetaReweighter, meta_reweight_step
from .roi_heads import LongTailRoIHeads

Batch = tuple[Sequence[Tensor], Sequence[dict[str, Tensor]]]


def _to(images, targets, device: torch.device):
    images = [im.to(device, non_blocking=True) for im in images]
    targets = [{k: (v.to(device, non_blocking=True) if isinstance(v, Tensor) else v) for k, v in t.items()}
               for t in targets]
    return images, targets


def _check_finite(total: Tensor, losses: dict[str, Tensor], epoch: int, step: int) -> None:
    stop_if_not_finite(total, lambda: (
        f"non-finite detection loss at epoch {epoch}, step {step} (on some rank); terms on this rank: "
        f"{ {k: float(v.detach()) for k, v in losses.items()} }. Lower the learning rate or check the boxes "
        "(degenerate boxes give NaN regression targets)."))


def _mean_over_ranks(sums: dict[str, float], steps: int, device: torch.device) -> dict[str, float]:
    """Per-step means of the logged losses, averaged over ranks (every rank runs the same number of steps)."""
    return {k: float(dist_utils.all_reduce_mean(torch.tensor(v / max(steps, 1), dtype=torch.float64, device=device)))
            for k, v in sums.items()}


def train_one_epoch(model: nn.Module, loader: Iterable[Batch], optimizer: torch.optim.Optimizer,
                    scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, *, device: torch.device,
                    epoch: int = 0, max_grad_norm: float | None = None,
                    progress: Callable[[int, dict], None] | None = None, amp: torch.dtype | None = None,
                    scaler: "torch.amp.GradScaler | None" = None) -> dict:
    """End-to-end: one pass of ``model(images, targets)`` (a torchvision detector, DDP-wrapped under
    torchrun) summing its loss dict. Returns the mean of every loss term (averaged over ranks), the
    number of steps and the wall time. ``amp`` (bfloat16 / float16): the forward pass runs under autocast,
    the losses are summed in float32; ``scaler`` (float16) scales the loss."""
    model.train()
    sums: dict[str, float] = {}
    steps, start = 0, time.perf_counter()
    for step, (images, targets) in enumerate(loader):
        images, targets = _to(images, targets, device)
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            losses = model(images, targets)
        losses = {k: v.float() for k, v in losses.items()}
        total = sum(losses.values())
        _check_finite(total, losses, epoch, step)
        optimizer_step(total, optimizer, scheduler, parameters=[p for p in model.parameters() if p.requires_grad],
                       max_grad_norm=max_grad_norm, scaler=scaler)
        steps += 1
        losses["loss"] = total
        for k, v in losses.items():
            sums[k] = sums.get(k, 0.0) + float(v.detach())
        if progress is not None:
            progress(step, {"loss": float(total.detach()), "lr": optimizer.param_groups[0]["lr"]})
    return {**_mean_over_ranks(sums, steps, device), "steps": steps, "seconds": time.perf_counter() - start}


def freeze_all_but_class_logits(model: nn.Module) -> nn.Linear:
    """requires_grad = False everywhere except ``roi_heads.box_predictor.cls_score``; returns that layer."""
    if not isinstance(model.roi_heads, LongTailRoIHeads):
        raise TypeError("decoupled training needs a detector built by create_detector")
    for p in model.parameters():
        p.requires_grad_(False)
    layer = model.roi_heads.box_predictor.cls_score
    for p in layer.parameters():
        p.requires_grad_(True)
    return layer


@torch.no_grad()
def roi_training_features(model: nn.Module, images: Sequence[Tensor], targets: Sequence[dict[str, Tensor]]
                          ) -> tuple[Tensor, Tensor]:
    """The sampled training RoIs of a batch: features (R, D) at the class-logit layer's input and labels
    (R,) in 0..C, exactly as ``model.train()(images, targets)`` samples them (training-mode resizing,
    RPN proposal counts and fg/bg sampling)."""
    was_training = model.training
    model.train()
    try:
        image_list, targets = model.transform(list(images), [dict(t) for t in targets])
        features = model.backbone(image_list.tensors)
        if isinstance(features, Tensor):
            features = {"0": features}
        proposals, _ = model.rpn(image_list, features, targets)
        heads: LongTailRoIHeads = model.roi_heads
        proposals, _, labels, _ = heads.select_training_samples(proposals, targets)
        feats = heads.box_features(features, proposals, image_list.image_sizes)
    finally:
        model.train(was_training)
    return feats, torch.cat(labels)


def decoupled_train_one_epoch(model: nn.Module, loader: Iterable[Batch], optimizer: torch.optim.Optimizer,
                              scheduler: torch.optim.lr_scheduler.LRScheduler | None = None, *, device: torch.device,
                              epoch: int = 0, reweighter: MetaReweighter | None = None,
                              meta_optimizer: torch.optim.Optimizer | None = None,
                              meta_batches: Iterator[Batch] | None = None,
                              progress: Callable[[int, dict], None] | None = None,
                              amp: torch.dtype | None = None) -> dict:
    """One epoch of classifier-only training (call :func:`freeze_all_but_class_logits` first).

    With ``reweighter`` (BALMS) every step first runs :func:`meta_reweight_step` on the next batch
    of ``meta_batches`` (an endless class-balanced stream), then trains the layer with the head
    loss weighted by the updated class weights. ``amp``: the frozen detector computes the RoI features
    under autocast; the class-logit layer, its loss and the meta step stay in float32."""
    def features(batch):
        with torch.autocast(device.type, dtype=amp, enabled=amp is not None):
            feats, labels = roi_training_features(model, *_to(*batch, device))
        return feats.float(), labels

    if reweighter is not None and (meta_optimizer is None or meta_batches is None):
        raise ValueError("the Meta Reweighter needs meta_optimizer and meta_batches")
    heads: LongTailRoIHeads = model.roi_heads
    layer, head = heads.box_predictor.cls_score, heads.classification
    sums = {"loss": 0.0, "meta_loss": 0.0}
    steps, start = 0, time.perf_counter()
    for step, (images, targets) in enumerate(loader):
        feats, labels = features((images, targets))
        kwargs = {}
        if reweighter is not None:
            meta_feats, meta_labels = features(next(meta_batches))
            sums["meta_loss"] += meta_reweight_step(layer, head, feats, labels, meta_feats, meta_labels, reweighter,
                                                    meta_optimizer, optimizer)
            kwargs["class_weights"] = reweighter().detach()
        loss = head.loss(layer(feats), labels, **kwargs)
        _check_finite(loss, {"loss_classifier": loss}, epoch, step)
        # no DDP forward here: the gradients are averaged over ranks explicitly
        optimizer_step(loss, optimizer, scheduler, before_step=lambda: dist_utils.average_gradients(layer.parameters()))
        steps += 1
        sums["loss"] += float(loss.detach())
        if progress is not None:
            progress(step, {"loss": float(loss.detach()), "lr": optimizer.param_groups[0]["lr"]})
    if reweighter is None:
        sums.pop("meta_loss")
    out = _mean_over_ranks(sums, steps, device)
    return {**out, "steps": steps, "seconds": time.perf_counter() - start}


@torch.no_grad()
def iter_detections(model: nn.Module, loader: Iterable[Batch], device: torch.device
                    ) -> Iterator[tuple[list[dict[str, Tensor]], list[int]]]:
    """Per batch: the detector's outputs on the CPU (boxes (N, 4) xyxy, scores (N,), labels (N,) in 1..C,
    and masks (N, 1, H, W) probabilities for Mask R-CNN) and the batch's image ids."""
    model.eval()
    for images, targets in loader:
        outputs = model([im.to(device) for im in images])
        yield [{k: v.cpu() for k, v in o.items()} for o in outputs], [int(t["image_id"]) for t in targets]


def predict(model: nn.Module, loader: Iterable[Batch], device: torch.device) -> list[dict[str, Tensor]]:
    """Detections of every image in loader order, each with its ``image_id`` (masks as (N, H, W) bool)."""
    out = []
    for outputs, ids in iter_detections(model, loader, device):
        for det, image_id in zip(outputs, ids):
            if "masks" in det:
                det["masks"] = det["masks"][:, 0] > 0.5
            out.append({**det, "image_id": image_id})
    return out


def predict_lvis(model: nn.Module, loader: Iterable[Batch], device: torch.device, label_to_cat_id: dict[int, int],
                 *, with_masks: bool = False) -> list[dict]:
    """LVIS result dicts (``image_id, category_id, bbox [x, y, w, h], score``, and an RLE
    ``segmentation`` with masks) of every image; masks are encoded batch by batch to bound memory."""
    from .evaluation import to_lvis_results

    results: list[dict] = []
    for outputs, ids in iter_detections(model, loader, device):
        results.extend(to_lvis_results(outputs, ids, label_to_cat_id, with_masks=with_masks))
    return results
