"""Classification parts of a detector's box head, chosen by name: the base class, the registry and the
softmax baseline. Each head registers itself where it is defined (``@register_head(name)``).

A :class:`DetectionClassification` says how many logits the class-logit layer needs
(``num_logits``), turns (R, K) logits and (R,) labels in 0..C (0 = background) into the
classification loss, and turns logits into (R, C+1) scores whose column 0 is background (ignored
by the detector's post-processing). :class:`longtail.detection.LongTailRoIHeads` calls it.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch.nn.functional as F
from torch import Tensor, nn

from ...registry import Registry


class DetectionClassification(nn.Module):
    """Base class: ``loss(logits (R, K), labels (R,)) -> scalar`` and ``scores(logits) -> (R, C+1)``."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes (foreground classes) must be >= 1, got {num_classes}")
        self.num_classes = int(num_classes)

    @property
    def num_logits(self) -> int:
        return self.num_classes + 1

    def check(self, logits: Tensor, labels: Tensor) -> None:
        if logits.ndim != 2 or logits.shape[1] != self.num_logits:
            raise ValueError(f"{type(self).__name__} needs logits of shape (R, {self.num_logits}), got "
                             f"{tuple(logits.shape)}: re-create the class-logit layer with head.num_logits outputs")
        if labels.shape != logits.shape[:1]:
            raise ValueError(f"labels must have shape ({logits.shape[0]},), got {tuple(labels.shape)}")

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def scores(self, logits: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def init_class_logits(self, layer: nn.Linear) -> None:
        """Initialise a freshly created class-logit layer (default: keep PyTorch's init)."""

    def extra_repr(self) -> str:
        return f"num_classes={self.num_classes}, num_logits={self.num_logits}"


class SoftmaxClassification(DetectionClassification):
    """The Faster R-CNN baseline: (C+1)-way softmax cross-entropy, mean over the sampled RoIs."""

    def loss(self, logits: Tensor, labels: Tensor) -> Tensor:
        self.check(logits, labels)
        return F.cross_entropy(logits, labels)

    def scores(self, logits: Tensor) -> Tensor:
        return F.softmax(logits, dim=-1)


DETECTION_HEADS: Registry[DetectionClassification] = Registry("detection head")
register_head = DETECTION_HEADS.register

# Statistics of the training set every factory receives (and may ignore); the rest are options.
HEAD_STATS = ("num_classes", "instance_counts", "image_counts", "num_images")


@register_head("softmax")
def _softmax(num_classes: int, instance_counts=None, image_counts=None, num_images=None) -> DetectionClassification:
    return SoftmaxClassification(num_classes)


def _need(counts: Sequence[float] | None, what: str, head: str, num_classes: int) -> Sequence[float]:
    if counts is None:
        raise ValueError(f"the {head} head needs {what} of the training set")
    if len(counts) != num_classes:
        raise ValueError(f"{what} has {len(counts)} entries but the detector has {num_classes} classes")
    return counts


def create_head(name: str, num_classes: int, *, instance_counts: Sequence[float] | None = None,
                image_counts: Sequence[float] | None = None, num_images: int | None = None,
                **options: Any) -> DetectionClassification:
    """``create_head('bags', 1230, instance_counts=...)``; ``options`` go to the head class."""
    return DETECTION_HEADS.create(name, num_classes, instance_counts, image_counts, num_images, **options)
