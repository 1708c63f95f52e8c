"""Decoupled stage 2 of `longtail train` (cRT: Kang et al., ICLR 2020; BALMS: Ren et al., NeurIPS 2020).

A run with ``init_from`` loads the stage-1 weights, freezes the backbone (BatchNorm statistics too
unless ``freeze_bn: false``), re-initialises the head and trains only the head, on backbone features
recomputed per batch or cached per augmented view. With ``sampler: meta`` the batches come from the
Meta Sampler and every step runs the bilevel update (:mod:`longtail.engine.meta`) first.
:func:`prepare_stage2` is the one entry point; other stage-2 methods (tau-norm, LWS) reuse it.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable

import torch
import yaml
from torch import nn
from torch.utils.data import DataLoader

from ..data import LongTailedData
from ..engine.checkpoint import CheckpointError, load_checkpoint
from ..engine.distributed import DistInfo
from ..engine.features import (BackboneFeatureLoader, CachedFeatureLoader, FeatureCache, ImageFetcher,
                               MetaFeatureLoader, intra_op_threads)
from ..engine.meta import MetaStepHook
from ..samplers import ClassBalancedSampler, MetaSampler, MetaSamplerLogits, SequentialShardSampler
from . import build
from .config import ConfigError, TrainConfig

# keys that define the data split: stage 2 must train on the split stage 1 trained on
SPLIT_KEYS = ("dataset", "imbalance_factor", "n_max", "profile", "val_per_class", "seed", "dataset_options")
META_SEED_OFFSET = 100_003  # the meta stream gets its own generator, independent of the training draws


@dataclass
class MetaParts:
    logits: MetaSamplerLogits
    optimizer: torch.optim.Adam
    loader: MetaFeatureLoader
    stream_sampler: ClassBalancedSampler
    stream: Iterable
    initial_probability: list[float]
    hook: MetaStepHook | None = None


@dataclass
class Stage2:
    """What `longtail train` needs for stage 2: the module to optimise (``head``: features -> logits),
    the training feature stream (``loader`` over ``sampler``), optionally a cached-feature val loader
    to evaluate with ``head``, and the Meta Sampler parts."""

    head: nn.Module
    sampler: Any
    loader: Iterable
    source: Path
    val_loader: Iterable | None = None
    cache: FeatureCache | None = None
    val_cache: FeatureCache | None = None
    meta: MetaParts | None = None
    notes: dict = field(default_factory=dict)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)
        if self.cache is not None:
            self.cache.set_epoch(epoch)
        if self.meta is not None:
            self.meta.stream_sampler.set_epoch(epoch)
            if self.meta.hook is not None:
                self.meta.hook.reset()

    def epoch_context(self) -> contextlib.AbstractContextManager:
        """Context for the training epoch: on cached features every step (the Meta Sampler's draw, the
        bilevel step on cached meta features, the real update) is head-level work on tiny tensors, run
        with one intra-op thread (see :func:`~longtail.engine.features.intra_op_threads`); when the
        backbone runs per batch, the threads are left as they are."""
        return intra_op_threads(1) if self.cache is not None else contextlib.nullcontext()

    def make_step_hook(self, optimizer: torch.optim.Optimizer, loss_fn: nn.Module) -> Callable | None:
        """The Meta Sampler's bilevel step (None without the Meta Sampler)."""
        if self.meta is None:
            return None
        if not hasattr(loss_fn, "per_sample"):
            raise ConfigError(f"the Meta Sampler weights per-sample losses, and loss {type(loss_fn).__name__} has no "
                              "per_sample(logits, target); use loss: balanced_softmax (BALMS) or ce")
        self.meta.hook = MetaStepHook(head=self.head, sampler_logits=self.meta.logits,
                                      meta_optimizer=self.meta.optimizer, optimizer=optimizer,
                                      inner_loss=loss_fn.per_sample, current_draw=self.meta.loader.current_draw,
                                      meta_batches=lambda: iter(self.meta.stream))
        return self.meta.hook

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
        out = {"stage2": {"init_from": str(self.source), **self.notes}}
        if self.meta is not None:
            out["sampling_probability"] = self.meta.logits.sampling_probability().tolist()
            out["sampling_probability_init"] = self.meta.initial_probability
        return out

    def save_plots(self, run_dir: Path, class_counts: list[int]) -> None:
        if self.meta is not None:
            plot_sampling_probability(self.meta.logits.sampling_probability().tolist(), self.meta.initial_probability,
                                      class_counts, run_dir / "sampling_probability.png")


def stage1_weights(init_from: str | Path) -> Path:
    """The weights file of ``init_from``: a run directory (its best.pt, else checkpoint.pt) or a file."""
    path = Path(init_from)
    if path.is_dir():
        for name in ("best.pt", "checkpoint.pt"):
            if (path / name).is_file():
                return path / name
        raise ConfigError(f"init_from={init_from}: the directory holds no best.pt or checkpoint.pt; point it at a "
                          "finished stage-1 run directory (e.g. runs/ce)")
    if path.is_file():
        return path
    raise ConfigError(f"init_from={init_from} does not exist; train stage 1 first (e.g. longtail train "
                      "configs/fashion_mnist_lt/ce.yaml) and point init_from at its run directory")


def check_same_split(cfg: TrainConfig, weights: Path) -> None:
    """Stage 2 must use stage 1's data split (else stage 1's val images can land in stage 2's train).

    The split settings come from the run's config.yaml next to the weights, else from the weights file
    itself (longtail's best.pt and checkpoint.pt carry them); weights with neither are refused unless
    ``allow_split_mismatch`` says the user vouches for the split."""
    source = weights.parent / "config.yaml"
    if source.is_file():
        stage1, where = yaml.safe_load(source.read_text()) or {}, str(source)
    else:
        state = load_checkpoint(weights)
        stage1, where = state.get("split") or state.get("config") or {}, str(weights)
    if not any(key in stage1 for key in SPLIT_KEYS):
        if cfg.allow_split_mismatch:
            return
        raise ConfigError(f"init_from={weights} does not say which data split stage 1 trained on (no config.yaml next "
                          "to it and no split settings inside), so stage 1's validation images could be in this run's "
                          "training set. Point init_from at the stage-1 run directory, or set allow_split_mismatch=true "
                          "if you know the split is the same")
    for key in SPLIT_KEYS:
        if key in stage1 and stage1[key] != getattr(cfg, key) and not cfg.allow_split_mismatch:
            raise ConfigError(f"stage 1 ({where}) used {key}={stage1[key]!r} but this stage-2 run has "
                              f"{key}={getattr(cfg, key)!r}; set {key}={stage1[key]!r} so both stages see the same split "
                              "(or allow_split_mismatch=true)")


def load_stage1(model: nn.Module, weights: Path, *, reinit_head: bool) -> None:
    """Backbone weights always; head weights only when the head is kept (``reinit_head`` false)."""
    state = load_checkpoint(weights)["model"]
    backbone = {k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}
    try:
        model.backbone.load_state_dict(backbone)
        if not reinit_head:
            model.head.load_state_dict({k[len("head."):]: v for k, v in state.items() if k.startswith("head.")})
    except RuntimeError as err:
        raise ConfigError(f"{weights} does not fit this model (model/head/num_classes must match stage 1): {err}") from None


def reinit(module: nn.Module) -> None:
    """Fresh parameters for every submodule that can reset itself (the stage-1 classifier is discarded)."""
    for m in module.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()


def _labels_of(dataset) -> torch.Tensor:
    for attr in ("targets", "labels"):
        if hasattr(dataset, attr):
            return torch.as_tensor(getattr(dataset, attr), dtype=torch.int64)
    return torch.as_tensor([int(dataset[i][1]) for i in range(len(dataset))])


def prepare_stage2(model: nn.Module, cfg: TrainConfig, data: LongTailedData, info: DistInfo) -> Stage2:
    """Load stage 1 into ``model`` (a :class:`~longtail.models.Classifier`), freeze its backbone,
    re-initialise its head, and build the stage-2 feature streams. ``model.head`` is trained in place,
    so ``model`` stays the full network for evaluation and checkpoints."""
    if cfg.meta_set not in ("val", "train"):
        raise ConfigError(f"meta_set must be 'val' (balanced held-out split) or 'train' (class-balanced stream from "
                          f"the training split), got {cfg.meta_set!r}")
    if cfg.cache_features and not cfg.freeze_bn:
        raise ConfigError("cache_features needs freeze_bn: true (with BatchNorm in train mode the features depend "
                          "on the batch, so they cannot be computed once)")
    weights = stage1_weights(cfg.init_from)
    check_same_split(cfg, weights)
    load_stage1(model, weights, reinit_head=cfg.reinit_head)
    backbone, head = model.backbone, model.head
    backbone.requires_grad_(False)
    backbone.train(not cfg.freeze_bn)
    if cfg.reinit_head:
        reinit(head)
    dev, world, rank = info.device, info.world_size, info.rank
    notes = {"freeze_bn": cfg.freeze_bn, "reinit_head": cfg.reinit_head, "features": "recomputed"}

    cache = val_cache = None
    if cfg.cache_features:
        views = cfg.cache_views or cfg.epochs
        cache = FeatureCache.compute(backbone, data.train, views=views, seed=cfg.seed, batch_size=cfg.eval_batch_size,
                                     num_workers=cfg.num_workers, device=dev)
        notes["features"] = f"cached, {views} view(s), {cache.nbytes / 2**20:.1f} MiB"
    if cfg.freeze_bn and (cfg.cache_features or (cfg.sampler == "meta" and cfg.meta_set == "val")):
        # eval-mode features of the unaugmented val split are fixed: computing them once is exact
        val_cache = FeatureCache.compute(backbone, data.val, batch_size=cfg.eval_batch_size,
                                         num_workers=cfg.num_workers, device=dev)
    val_loader = None
    if cache is not None:
        val_loader = CachedFeatureLoader(val_cache, SequentialShardSampler(len(data.val), num_replicas=world, rank=rank),
                                         cfg.eval_batch_size)

    meta = None
    if cfg.sampler == "meta":
        meta, sampler, loader = _meta_parts(cfg, data, info, backbone, cache, val_cache)
    else:
        sampler = build.build_sampler(cfg, data, info)
        if cache is not None:
            loader = CachedFeatureLoader(cache, sampler, cfg.batch_size)
        else:
            loader = BackboneFeatureLoader(build.train_loader(data.train, sampler, cfg, info), backbone, dev,
                                           cfg.freeze_bn)
    return Stage2(head=head, sampler=sampler, loader=loader, source=weights, val_loader=val_loader, cache=cache,
                  val_cache=val_cache, meta=meta, notes=notes)


def _meta_parts(cfg: TrainConfig, data: LongTailedData, info: DistInfo, backbone: nn.Module,
                cache: FeatureCache | None, val_cache: FeatureCache | None):
    if cfg.sampler_options:
        raise ConfigError("sampler: meta is configured by the meta_* keys, not sampler_options "
                          f"(got {sorted(cfg.sampler_options)})")
    dev, world, rank = info.device, info.world_size, info.rank
    logits = MetaSamplerLogits(data.class_counts, init_pow=cfg.meta_init_pow).to(dev)
    steps = math.ceil(math.ceil(len(data.train_labels) / world) / cfg.batch_size)  # as many steps as a plain epoch
    sampler = MetaSampler(data.train_labels, logits, batch_size=cfg.batch_size, num_batches=steps,
                          num_replicas=world, rank=rank, seed=cfg.seed)
    fetch = cache.lookup if cache is not None else ImageFetcher(data.train, backbone, dev, cfg.freeze_bn).lookup
    loader = MetaFeatureLoader(sampler, fetch)

    meta_bs = cfg.meta_batch_size or cfg.batch_size
    meta_data = data.val if cfg.meta_set == "val" else data.train
    meta_cache = val_cache if cfg.meta_set == "val" else cache
    meta_labels = meta_cache.labels if meta_cache is not None else _labels_of(meta_data)
    stream_sampler = ClassBalancedSampler(meta_labels, num_samples=steps * meta_bs * world, num_replicas=world,
                                          rank=rank, seed=cfg.seed + META_SEED_OFFSET)
    if meta_cache is not None:
        stream = CachedFeatureLoader(meta_cache, stream_sampler, meta_bs)
    else:
        images = DataLoader(meta_data, batch_size=meta_bs, sampler=stream_sampler, num_workers=cfg.num_workers,
                            pin_memory=dev.type == "cuda")
        stream = BackboneFeatureLoader(images, backbone, dev, cfg.freeze_bn)
    adam = torch.optim.Adam(logits.parameters(), lr=cfg.meta_lr, weight_decay=0.0)
    parts = MetaParts(logits=logits, optimizer=adam, loader=loader, stream_sampler=stream_sampler, stream=stream,
                      initial_probability=logits.sampling_probability().tolist())
    return parts, sampler, loader


def plot_sampling_probability(learned: list[float], initial: list[float], class_counts: list[int], path: Path) -> Path:
    """Learned per-class sampling probability against training count, with the initial,
    instance-balanced (n_c / N) and class-balanced (1 / C) references."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = sorted(range(len(class_counts)), key=lambda c: -class_counts[c])
    xs = [class_counts[c] for c in order]
    total = float(sum(class_counts))
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(xs, [learned[c] for c in order], marker="o", markersize=3, label="learned (Meta Sampler)")
    ax.plot(xs, [initial[c] for c in order], linestyle="--", label="initial")
    ax.plot(xs, [n / total for n in xs], linestyle=":", color="grey", label="instance-balanced n_c / N")
    ax.axhline(1 / len(class_counts), linestyle="-.", color="black", linewidth=1, label="class-balanced 1 / C")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("training images of the class (log)")
    ax.set_ylabel("probability a draw picks the class (log)")
    ax.set_title("Meta Sampler: learned class sampling probability")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return Path(path)
