"""Losses for long-tailed classification. Each is an ``nn.Module`` built from training class counts:
``loss = BalancedSoftmaxLoss(class_counts); loss(logits, target)``."""

from .balanced_softmax import BalancedSoftmaxLoss, balanced_softmax_loss, log_prior
from .base import ClassCountLoss, as_class_counts, reduce_loss
from .class_balanced import ClassBalancedLoss, class_balanced_loss, effective_number_weights
from .cross_entropy import CrossEntropyLoss
from .equalization import EqualizationLoss, rare_class_mask, softmax_eql_loss
from .focal import FocalLoss, focal_loss
from .ldam import LDAMLoss, ldam_loss, ldam_margins
from .logit_adjusted import LogitAdjustedLoss, logit_adjusted_loss
from .registry import LOSSES, create_loss, register_loss

__all__ = [
    "BalancedSoftmaxLoss", "balanced_softmax_loss", "log_prior", "ClassCountLoss", "as_class_counts",
    "reduce_loss", "CrossEntropyLoss", "LOSSES", "create_loss", "register_loss",
    "ClassBalancedLoss", "class_balanced_loss", "effective_number_weights", "EqualizationLoss", "rare_class_mask",
    "softmax_eql_loss", "FocalLoss", "focal_loss", "LDAMLoss", "ldam_loss", "ldam_margins", "LogitAdjustedLoss",
    "logit_adjusted_loss",
]
