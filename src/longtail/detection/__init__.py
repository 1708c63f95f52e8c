"""Long-tailed detection on torchvision's Faster / Mask R-CNN: classification heads (softmax, BAGS,
sigmoid Balanced Softmax), the Meta Reweighter, RoI heads, detector factory and training functions."""

# LVIS data and evaluation (the evaluation module imports faster-coco-eval only when called)
from .evaluation import evaluate_lvis, to_lvis_results
from .heads import (
                    DETECTION_HEADS,
                    BalancedGroupSoftmax,
                    DetectionClassification,
                    MetaReweighter,
                    MetaStream,
                    SigmoidBalancedSoftmax,
                    SigmoidCrossEntropy,
                    SoftmaxClassification,
                    create_head,
                    register_head,
)
from .lvis import CategoryStats, LvisDetection, collate_detection, load_lvis_category_stats
from .models import create_detector, load_detector_weights, reset_class_logits, with_long_tail_head
from .roi_heads import LongTailRoIHeads
from .runner import DetectionTrainer, class_statistics, evaluate_detector, training_parts
from .synthetic import make_synthetic_lvis

__all__ = [
    "BalancedGroupSoftmax", "DETECTION_HEADS", "DetectionClassification", "SoftmaxClassification", "create_head",
    "register_head", "create_detector", "load_detector_weights", "reset_class_logits", "with_long_tail_head", "LongTailRoIHeads",
    "MetaReweighter", "MetaStream", "SigmoidBalancedSoftmax", "SigmoidCrossEntropy",
    "evaluate_lvis", "to_lvis_results", "CategoryStats", "LvisDetection", "collate_detection",
    "load_lvis_category_stats", "make_synthetic_lvis", "DetectionTrainer", "class_statistics", "evaluate_detector",
    "training_parts",
]
