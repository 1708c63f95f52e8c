"""Decoupled stage 2 as a library hook (cRT: Kang et al., ICLR 2020; BALMS: Ren et al., NeurIPS 2020).

:func:`decoupled_stage2` takes a :class:`~longtail.models.Classifier` (``backbone`` + ``head``) holding
stage-1 weights, freezes its backbone (BatchNorm statistics too unless ``freeze_bn=False``),
re-initialises its head, and builds the streams the head trains on: backbone features recomputed per
batch, or cached once per augmented view. With ``meta=True`` the batches come from the Meta Sampler and
every step first runs the bilevel update (:mod:`longtail.engine.meta`). The returned
:class:`DecoupledStage2` is a :class:`~longtail.engine.hooks.Hook`: give it to the
:class:`~longtail.engine.trainer.Trainer` together with its ``head`` (what the optimiser updates) and
its ``loader``; it keeps the Meta Sampler's state in the checkpoint so a resume is exact.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn
from torch.utils.data import Dataset

from ..data.loaders import train_loader
from ..samplers import ClassBalancedSampler, MetaSampler, MetaSamplerLogits, SequentialShardSampler
from .checkpoint import CheckpointError, load_checkpoint
from .distributed import DistInfo
from .features import (
    BackboneFeatureLoader,
    CachedFeatureLoader,
    FeatureCache,
    ImageFetcher,
    MetaFeatureLoader,
    intra_op_threads,
)
from .hooks import Hook
from .meta import MetaStepHook

META_SEED_OFFSET = 100_003  # the meta stream gets its own generator, independent of the training draws
META_SETS = ("val", "train")


@dataclass
class Stage2Options:
    """How stage 2 runs. ``epochs``: the stage's length (the default number of cached views).
    ``cache_features``: train on features computed once per augmented view (``cache_views``; default one
    per epoch). ``meta``: draw batches from the Meta Sampler (BALMS), learning its class sampling
    probability on ``meta_set`` (``val``: the balanced held-out split; ``train``: a class-balanced stream
    of the training split, the paper's CIFAR setting) with Adam at ``meta_lr``, starting from
    ``meta_init_pow`` (0 instance-balanced ... 1 class-balanced)."""

    epochs: int
    batch_size: int = 128
    eval_batch_size: int = 512
    num_workers: int = 0
    persistent_workers: bool = False
    seed: int = 0
    freeze_bn: bool = True
    reinit_head: bool = True
    cache_features: bool = False
    cache_views: int | None = None
    meta: bool = False
    meta_set: str = "val"
    meta_lr: float = 0.01
    meta_init_pow: float = 0.0
    meta_batch_size: int | None = None

    def __post_init__(self) -> None:
        if self.meta_set not in META_SETS:
            raise ValueError(f"meta_set must be 'val' (balanced held-out split) or 'train' (class-balanced stream "
                             f"from the training split), got {self.meta_set!r}")
        if self.cache_features and not self.freeze_bn:
            raise ValueError("cache_features needs freeze_bn: true (with BatchNorm in train mode the features depend "
                             "on the batch, so they cannot be computed once)")


@dataclass
class MetaParts:
    logits: MetaSamplerLogits
    optimizer: torch.optim.Adam
    loader: MetaFeatureLoader
    stream_sampler: ClassBalancedSampler
    stream: Iterable
    initial_probability: list[float]
    step: MetaStepHook | None = None


@dataclass
class DecoupledStage2(Hook):
    """Stage 2's parts: ``head`` (features -> logits, what the optimiser updates), the training feature
    stream ``loader`` over ``sampler``, a cached-feature ``val_loader`` to validate ``head`` on (when
    features are cached), and the Meta Sampler parts (``meta``)."""

    head: nn.Module
    sampler: Any
    loader: Iterable
    val_loader: Iterable | None = None
    cache: FeatureCache | None = None
    val_cache: FeatureCache | None = None
    meta: MetaParts | None = None
    notes: dict = field(default_factory=dict)

    # --- hook -----------------------------------------------------------------------------------------
    def before_train(self, trainer: Any) -> None:
        if self.meta is not None:
            self.meta.step = meta_step(self, trainer.optimizer, trainer.loss_fn)

    def before_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)  # (the trainer may have set it too: setting an epoch twice is harmless)
        if self.cache is not None:
            self.cache.set_epoch(epoch)
        if self.meta is not None:
            self.meta.stream_sampler.set_epoch(epoch)
            if self.meta.step is not None:
                self.meta.step.reset()

    def epoch_context(self) -> contextlib.AbstractContextManager:
        """On cached features every step (the Meta Sampler's draw, the bilevel step on cached meta features,
        the real update) is head-level work on tiny tensors, run with one intra-op thread (see
        :func:`~longtail.engine.features.intra_op_threads`); when the backbone runs per batch, the threads
        are left as they are."""
        return intra_op_threads(1) if self.cache is not None else contextlib.nullcontext()

    def before_step(self, inputs: torch.Tensor, targets: torch.Tensor, global_step: int) -> None:
        if self.meta is not None and self.meta.step is not None:
            self.meta.step(inputs, targets, global_step)

    def state_dict(self) -> dict:
        if self.meta is None:
            return {}
        return {"meta_logits": self.meta.logits.state_dict(), "meta_optimizer": self.meta.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        if self.meta is None:
            return
        if "meta_logits" not in state:
            raise CheckpointError("the checkpoint has no Meta Sampler state, so the run cannot resume exactly; "
                                  "start it again with --overwrite")
        self.meta.logits.load_state_dict(state["meta_logits"])
        self.meta.optimizer.load_state_dict(state["meta_optimizer"])

    def metrics(self) -> dict:
        out: dict[str, Any] = {"stage2": dict(self.notes)}
        if self.meta is not None:
            out["sampling_probability"] = self.meta.logits.sampling_probability().tolist()
            out["sampling_probability_init"] = self.meta.initial_probability
        return out

    def write_files(self, run_dir: Path, class_counts: list[int]) -> None:
        if self.meta is not None:
            from ..evaluation.plots import plot_sampling_probability
            plot_sampling_probability(self.meta.logits.sampling_probability().tolist(), self.meta.initial_probability,
                                      class_counts, run_dir / "sampling_probability.png")


def meta_step(stage2: DecoupledStage2, optimizer: torch.optim.Optimizer, loss_fn: nn.Module) -> MetaStepHook:
    """The Meta Sampler's bilevel step for ``stage2``'s head trained by ``optimizer`` on ``loss_fn``."""
    if not hasattr(loss_fn, "per_sample"):
        raise ValueError(f"the Meta Sampler weights per-sample losses, and loss {type(loss_fn).__name__} has no "
                         "per_sample(logits, target); use loss: balanced_softmax (BALMS) or ce")
    meta = stage2.meta
    return MetaStepHook(head=stage2.head, sampler_logits=meta.logits, meta_optimizer=meta.optimizer,
                        optimizer=optimizer, inner_loss=loss_fn.per_sample, current_draw=meta.loader.current_draw,
                        meta_batches=lambda: iter(meta.stream))


def load_stage1(model: nn.Module, weights: str | Path, *, reinit_head: bool) -> None:
    """Backbone weights of a stage-1 checkpoint always; head weights only when the head is kept."""
    state = load_checkpoint(weights)["model"]
    backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    try:
        model.backbone.load_state_dict(backbone)
        if not reinit_head:
            model.head.load_state_dict({k[len("head."):]: v for k, v in state.items() if k.startswith("head.")})
    except RuntimeError as err:
        raise ValueError(f"{weights} does not fit this model (model/head/num_classes must match stage 1): {err}") from None


def reinit(module: nn.Module) -> None:
    """Fresh parameters for every submodule that can reset itself (the stage-1 classifier is discarded)."""
    for m in module.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()


def labels_of(dataset: Dataset) -> torch.Tensor:
    """The dataset's labels: its ``targets`` or ``labels`` attribute, else read item by item."""
    for attr in ("targets", "labels"):
        if hasattr(dataset, attr):
            return torch.as_tensor(getattr(dataset, attr), dtype=torch.int64)
    return torch.as_tensor([int(dataset[i][1]) for i in range(len(dataset))])


def decoupled_stage2(model: nn.Module, train: Dataset, val: Dataset, options: Stage2Options, *,
                     class_counts: list[int], train_labels: torch.Tensor | None = None, sampler: Any = None,
                     dist: DistInfo | None = None) -> DecoupledStage2:
    """Freeze ``model.backbone`` (stage-1 weights already loaded), re-initialise ``model.head`` unless
    ``options.reinit_head`` is false, and build the stage-2 streams over ``train`` (and ``val`` for
    validation / the meta set). ``sampler``: the training sampler (a longtail sampler; ignored with the
    Meta Sampler, required otherwise). ``model.head`` trains in place, so ``model`` stays the full
    network for evaluation and checkpoints."""
    dist = dist or DistInfo()
    train_labels = labels_of(train) if train_labels is None else train_labels
    backbone, head = model.backbone, model.head
    backbone.requires_grad_(False)
    backbone.train(not options.freeze_bn)
    if options.reinit_head:
        reinit(head)
    dev, world, rank = dist.device, dist.world_size, dist.rank
    notes: dict[str, Any] = {"freeze_bn": options.freeze_bn, "reinit_head": options.reinit_head,
                             "features": "recomputed"}

    cache = val_cache = None
    if options.cache_features:
        views = options.cache_views or options.epochs
        cache = FeatureCache.compute(backbone, train, views=views, seed=options.seed,
                                     batch_size=options.eval_batch_size, num_workers=options.num_workers, device=dev)
        notes["features"] = f"cached, {views} view(s), {cache.nbytes / 2**20:.1f} MiB"
    if options.freeze_bn and (options.cache_features or (options.meta and options.meta_set == "val")):
        # eval-mode features of the unaugmented val split are fixed: computing them once is exact
        val_cache = FeatureCache.compute(backbone, val, batch_size=options.eval_batch_size,
                                         num_workers=options.num_workers, device=dev)
    val_loader = None
    if cache is not None:
        val_loader = CachedFeatureLoader(val_cache, SequentialShardSampler(len(val), num_replicas=world, rank=rank),
                                         options.eval_batch_size)

    meta = None
    if options.meta:
        meta, sampler, loader = _meta_parts(options, train, val, train_labels, class_counts, dist, backbone,
                                            cache, val_cache)
    else:
        if sampler is None:
            raise ValueError("decoupled_stage2 needs the training sampler (or options.meta=True)")
        if cache is not None:
            loader = CachedFeatureLoader(cache, sampler, options.batch_size)
        else:
            images = train_loader(train, sampler, batch_size=options.batch_size, num_workers=options.num_workers,
                                  device=dev, persistent_workers=options.persistent_workers)
            loader = BackboneFeatureLoader(images, backbone, dev, options.freeze_bn)
    return DecoupledStage2(head=head, sampler=sampler, loader=loader, val_loader=val_loader, cache=cache,
                           val_cache=val_cache, meta=meta, notes=notes)


def _meta_parts(options: Stage2Options, train: Dataset, val: Dataset, train_labels: torch.Tensor,
                class_counts: list[int], dist: DistInfo, backbone: nn.Module, cache: FeatureCache | None,
                val_cache: FeatureCache | None):
    dev, world, rank = dist.device, dist.world_size, dist.rank
    logits = MetaSamplerLogits(class_counts, init_pow=options.meta_init_pow).to(dev)
    steps = math.ceil(math.ceil(len(train_labels) / world) / options.batch_size)  # as many steps as a plain epoch
    sampler = MetaSampler(train_labels, logits, batch_size=options.batch_size, num_batches=steps,
                          num_replicas=world, rank=rank, seed=options.seed)
    fetch = cache.lookup if cache is not None else ImageFetcher(train, backbone, dev, options.freeze_bn).lookup
    loader = MetaFeatureLoader(sampler, fetch)

    meta_bs = options.meta_batch_size or options.batch_size
    meta_data = val if options.meta_set == "val" else train
    meta_cache = val_cache if options.meta_set == "val" else cache
    meta_labels = meta_cache.labels if meta_cache is not None else labels_of(meta_data)
    stream_sampler = ClassBalancedSampler(meta_labels, num_samples=steps * meta_bs * world, num_replicas=world,
                                          rank=rank, seed=options.seed + META_SEED_OFFSET)
    if meta_cache is not None:
        stream = CachedFeatureLoader(meta_cache, stream_sampler, meta_bs)
    else:
        images = train_loader(meta_data, stream_sampler, batch_size=meta_bs, num_workers=options.num_workers,
                              device=dev, persistent_workers=options.persistent_workers)
        stream = BackboneFeatureLoader(images, backbone, dev, options.freeze_bn)
    adam = torch.optim.Adam(logits.parameters(), lr=options.meta_lr, weight_decay=0.0)
    parts = MetaParts(logits=logits, optimizer=adam, loader=loader, stream_sampler=stream_sampler, stream=stream,
                      initial_probability=logits.sampling_probability().tolist())
    return parts, sampler, loader
