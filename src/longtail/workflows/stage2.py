"""Decoupled stage 2 of `longtail train` from a TrainConfig with ``init_from``: which stage-1 weights,
whether they were trained on this run's data split, and the config keys turned into
:func:`longtail.engine.stage2.decoupled_stage2` arguments (the library does the rest)."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml

from ..config import ConfigError, TrainConfig
from ..data import LongTailedData
from ..engine.checkpoint import CheckpointError, find_weights, load_checkpoint
from ..engine.distributed import DistInfo
from ..engine.stage2 import DecoupledStage2, Stage2Options, decoupled_stage2, load_stage1
from . import build


def stage1_weights(init_from: str | Path) -> Path:
    """The weights file of ``init_from``: a run directory (its best.pt, else checkpoint.pt) or a file."""
    try:
        return find_weights(init_from, hint="point init_from at a finished stage-1 run directory (train stage 1 first, "
                                           "e.g. longtail train configs/fashion_mnist_lt/ce.yaml -> runs/ce)")[1]
    except CheckpointError as err:
        raise ConfigError(f"init_from={init_from}: {err}") from None


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
    if not any(key in stage1 for key in TrainConfig.SPLIT_KEYS):
        if cfg.allow_split_mismatch:
            return
        raise ConfigError(f"init_from={weights} does not say which data split stage 1 trained on (no config.yaml next "
                          "to it and no split settings inside), so stage 1's validation images could be in this run's "
                          "training set. Point init_from at the stage-1 run directory, or set allow_split_mismatch=true "
                          "if you know the split is the same")
    for key in TrainConfig.SPLIT_KEYS:
        if key in stage1 and stage1[key] != getattr(cfg, key) and not cfg.allow_split_mismatch:
            raise ConfigError(f"stage 1 ({where}) used {key}={stage1[key]!r} but this stage-2 run has "
                              f"{key}={getattr(cfg, key)!r}; set {key}={stage1[key]!r} so both stages see the same split "
                              "(or allow_split_mismatch=true)")


def prepare_stage2(model: torch.nn.Module, cfg: TrainConfig, data: LongTailedData, info: DistInfo,
                   say=lambda *a: None) -> DecoupledStage2:
    """Load and check the stage-1 weights of ``cfg.init_from`` into ``model``, then build stage 2.
    ``say``: where to announce the feature cache's backbone passes (minutes on a CPU, silent otherwise)."""
    if cfg.sampler == "meta" and cfg.sampler_options:
        raise ConfigError("sampler: meta is configured by the meta_* keys, not sampler_options "
                          f"(got {sorted(cfg.sampler_options)})")
    options = Stage2Options(epochs=cfg.epochs, batch_size=cfg.batch_size, eval_batch_size=cfg.eval_batch_size,
                            num_workers=cfg.num_workers, persistent_workers=cfg.persistent_workers, seed=cfg.seed,
                            freeze_bn=cfg.freeze_bn, reinit_head=cfg.reinit_head, cache_features=cfg.cache_features,
                            cache_views=cfg.cache_views, meta=cfg.sampler == "meta", meta_set=cfg.meta_set,
                            meta_lr=cfg.meta_lr, meta_init_pow=cfg.meta_init_pow, meta_batch_size=cfg.meta_batch_size)
    weights = stage1_weights(cfg.init_from)
    check_same_split(cfg, weights)
    load_stage1(model, weights, reinit_head=cfg.reinit_head)
    sampler = None if options.meta else build.build_sampler(cfg, data, info)
    if cfg.cache_features:
        views = cfg.cache_views or cfg.epochs
        say(f"stage 2: caching frozen-backbone features of {len(data.train):,} training images x {views} "
            f"augmented view(s) (one backbone pass each) ...")
    stage2 = decoupled_stage2(model, data.train, data.val, options, class_counts=data.class_counts,
                              train_labels=data.train_labels, sampler=sampler, dist=info)
    stage2.notes = {"init_from": str(weights), **stage2.notes}
    return stage2
