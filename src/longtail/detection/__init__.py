"""Long-tailed detection on torchvision's Faster / Mask R-CNN: classification heads (softmax, BAGS,
sigmoid Balanced Softmax), the Meta Reweighter, RoI heads, detector factory and training functions."""

from .bags import BalancedGroupSoftmax
from .heads import DETECTION_HEADS, DetectionClassification, SoftmaxClassification, create_head, register_head
from .models import create_detector, load_detector_weights, reset_class_logits
from .roi_heads import LongTailRoIHeads
from .sigmoid_balanced import MetaReweighter, SigmoidBalancedSoftmax, SigmoidCrossEntropy

__all__ = [
    "BalancedGroupSoftmax", "DETECTION_HEADS", "DetectionClassification", "SoftmaxClassification", "create_head",
    "register_head", "create_detector", "load_detector_weights", "reset_class_logits", "LongTailRoIHeads",
    "MetaReweighter", "SigmoidBalancedSoftmax", "SigmoidCrossEntropy",
]
