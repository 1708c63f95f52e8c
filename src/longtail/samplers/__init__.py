"""Samplers built from labels (or weights). Each owns a seeded generator and supports
``set_epoch``, ``num_replicas`` and ``rank``, so the same sampler works under DDP."""

from .base import RandomSampler, SequentialShardSampler, ShardedSampler, as_labels
from .class_balanced import ClassBalancedSampler, ClassIndex, ClassIndexSampler
from .meta import MetaDraw, MetaSampler, MetaSamplerLogits
from .progressive import ProgressivelyBalancedSampler
from .registry import SAMPLERS, create_sampler, register_sampler
from .repeat_factor import RepeatFactorSampler, category_repeat_factors, lvis_repeat_factors
from .square_root import ClassProbabilitySampler, SquareRootSampler, class_probabilities
from .weighted import WeightedSampler, class_power_weights

__all__ = ["RandomSampler", "SequentialShardSampler", "ShardedSampler", "as_labels", "SAMPLERS",
           "create_sampler", "register_sampler", "ClassBalancedSampler", "ClassIndex", "ClassIndexSampler",
           "MetaDraw", "MetaSampler", "MetaSamplerLogits", "WeightedSampler", "class_power_weights",
           "ProgressivelyBalancedSampler", "ClassProbabilitySampler", "SquareRootSampler", "class_probabilities",
           "RepeatFactorSampler", "category_repeat_factors", "lvis_repeat_factors"]
