"""The classification parts of a detector's box head, by name (``create_head``): softmax, BAGS, and the
sigmoid heads of BALMS with its Meta Reweighter. Importing the package registers every head."""

from .bags import BalancedGroupSoftmax
from .balms import MetaReweighter, MetaStream, SigmoidBalancedSoftmax, SigmoidCrossEntropy
from .base import (
           DETECTION_HEADS,
           HEAD_STATS,
           DetectionClassification,
           SoftmaxClassification,
           create_head,
           register_head,
)

__all__ = ["DETECTION_HEADS", "HEAD_STATS", "DetectionClassification", "SoftmaxClassification", "create_head",
           "register_head", "BalancedGroupSoftmax", "MetaReweighter", "MetaStream", "SigmoidBalancedSoftmax",
           "SigmoidCrossEntropy"]
