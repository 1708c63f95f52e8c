"""Losses for long-tailed classification. Each is an ``nn.Module`` built from training class counts:
``loss = BalancedSoftmaxLoss(class_counts); loss(logits, target)``."""

from .balanced_softmax import BalancedSoftmaxLoss, balanced_softmax_loss, log_prior
from .base import ClassCountLoss, as_class_counts, reduce_loss
from .cross_entropy import CrossEntropyLoss
from .registry import LOSSES, create_loss, register_loss

__all__ = [
    "BalancedSoftmaxLoss", "balanced_softmax_loss", "log_prior", "ClassCountLoss", "as_class_counts",
    "reduce_loss", "CrossEntropyLoss", "LOSSES", "create_loss", "register_loss",
]
