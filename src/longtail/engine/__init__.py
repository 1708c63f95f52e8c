"""Training as a library: the :class:`Trainer` (a classification run, with hooks and an exact-resume run
directory), decoupled stage 2 as a hook (:func:`decoupled_stage2`), the plain functions underneath
(``train_one_epoch``, ``predict``, ``evaluate``), checkpoints, schedules and process-group helpers."""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .features import (
                       BackboneFeatureLoader,
                       CachedFeatureLoader,
                       FeatureCache,
                       ImageFetcher,
                       MetaFeatureLoader,
                       extract_features,
                       intra_op_threads,
)
from .hooks import Hook
from .loop import NonFiniteLossError, evaluate, predict, train_one_epoch
from .meta import MetaStepHook, meta_gradient, sgd_lookahead, sgd_lookahead_of
from .schedule import WarmupCosine, WarmupStep, warmup_cosine, warmup_step
from .stage2 import DecoupledStage2, Stage2Options, decoupled_stage2
from .trainer import Trainer

__all__ = ["CheckpointError", "load_checkpoint", "save_checkpoint", "NonFiniteLossError", "evaluate", "predict",
           "train_one_epoch", "WarmupCosine", "warmup_cosine", "WarmupStep", "warmup_step", "BackboneFeatureLoader",
           "CachedFeatureLoader", "FeatureCache", "ImageFetcher", "MetaFeatureLoader", "extract_features",
           "intra_op_threads", "MetaStepHook", "meta_gradient", "sgd_lookahead", "sgd_lookahead_of", "Hook",
           "DecoupledStage2", "Stage2Options", "decoupled_stage2", "Trainer"]
