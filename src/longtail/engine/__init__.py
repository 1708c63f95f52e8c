"""Plain training functions: ``train_one_epoch``, ``predict``, ``evaluate``, plus checkpoints,
schedules and process-group helpers."""

from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .loop import NonFiniteLossError, evaluate, predict, train_one_epoch
from .schedule import WarmupCosine, warmup_cosine
from .features import (BackboneFeatureLoader, CachedFeatureLoader, FeatureCache, ImageFetcher, MetaFeatureLoader,
                       extract_features, intra_op_threads)
from .meta import MetaStepHook, meta_gradient, sgd_lookahead, sgd_lookahead_of

__all__ = ["CheckpointError", "load_checkpoint", "save_checkpoint", "NonFiniteLossError", "evaluate", "predict",
           "train_one_epoch", "WarmupCosine", "warmup_cosine", "BackboneFeatureLoader", "CachedFeatureLoader",
           "FeatureCache", "ImageFetcher", "MetaFeatureLoader", "extract_features", "intra_op_threads", "MetaStepHook",
           "meta_gradient", "sgd_lookahead", "sgd_lookahead_of"]
