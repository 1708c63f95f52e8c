"""Losses by name, for the CLI. Library users construct the classes directly."""

from __future__ import annotations

from typing import Any, Sequence

from torch import nn

from ..registry import Registry
from .balanced_softmax import BalancedSoftmaxLoss
from .class_balanced import ClassBalancedLoss
from .cross_entropy import CrossEntropyLoss
from .equalization import EqualizationLoss
from .focal import FocalLoss
from .ldam import LDAMLoss
from .logit_adjusted import LogitAdjustedLoss

LOSSES: Registry[nn.Module] = Registry("loss")
register_loss = LOSSES.register

LOSSES.register("ce")(CrossEntropyLoss)
LOSSES.register("balanced_softmax")(BalancedSoftmaxLoss)
# baselines (issue 5)
LOSSES.register("focal")(FocalLoss)
LOSSES.register("class_balanced")(ClassBalancedLoss)
LOSSES.register("ldam")(LDAMLoss)
LOSSES.register("logit_adjusted")(LogitAdjustedLoss)
LOSSES.register("equalization")(EqualizationLoss)


def create_loss(name: str, class_counts: Sequence[float], **kwargs: Any) -> nn.Module:
    """``create_loss('balanced_softmax', counts)``; ``kwargs`` go to the loss class."""
    return LOSSES.create(name, class_counts, **kwargs)
