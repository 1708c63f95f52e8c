"""torchvision Faster / Mask R-CNN with a long-tail classification head.

``create_detector(arch, head=..., num_classes=..., backbone=...)`` builds torchvision's
``FasterRCNN`` or ``MaskRCNN`` and replaces its ``RoIHeads`` by :class:`LongTailRoIHeads` with the
named head; the class-logit layer gets ``head.num_logits`` outputs (C + 1 + groups for BAGS, C
for the sigmoid heads), the box regression stays class-specific with (C + 1) * 4 outputs.

Backbones: ``small``, a 4-stage GroupNorm CNN with one stride-8 feature map that trains the
embedded benchmark on a CPU; ``resnet50_fpn``, torchvision's R50-FPN (weights only from local
files: ``weights_path`` a torchvision detection checkpoint whose class layers are skipped, or
``backbone_weights_path`` ImageNet ResNet-50 weights).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn
from torchvision.models.detection import FasterRCNN, MaskRCNN
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.ops import MultiScaleRoIAlign

from .heads import DetectionClassification, create_head
from .roi_heads import LongTailRoIHeads

ARCHS = ("fasterrcnn", "maskrcnn")
BACKBONES = ("small", "resnet50_fpn")


class SmallBackbone(nn.Module):
    """(B, 3, H, W) -> {"0": (B, out_channels, H/8, W/8)}. GroupNorm, so that a frozen backbone
    has no running statistics to drift in decoupled training and batch size 2 trains fine."""

    def __init__(self, out_channels: int = 128, width: int = 32) -> None:
        super().__init__()

        def block(cin: int, cout: int, stride: int) -> list[nn.Module]:
            return [nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.GroupNorm(8, cout), nn.ReLU(inplace=True)]

        w = width
        self.body = nn.Sequential(*block(3, w, 2), *block(w, w, 1), *block(w, 2 * w, 2), *block(2 * w, 2 * w, 1),
                                  *block(2 * w, out_channels, 2), *block(out_channels, out_channels, 1))
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"0": self.body(x)}


def _bilinear_weights(coords: torch.Tensor, size: int) -> torch.Tensor:
    """(R, K) sample coordinates on an axis of ``size`` pixels -> (R, K, size) interpolation weights,
    with roi_align's rules: a sample beyond one pixel outside the map contributes 0, others clamp."""
    valid = (coords >= -1.0) & (coords <= size)
    c = coords.clamp_min(0.0)
    low = c.floor().clamp_max(size - 1)
    c = torch.where(low >= size - 1, low, c)
    high = (low + 1).clamp_max(size - 1)
    frac = (c - low).unsqueeze(-1)
    eye = torch.eye(size, dtype=coords.dtype, device=coords.device)
    return (eye[low.long()] * (1 - frac) + eye[high.long()] * frac) * valid.unsqueeze(-1)


class MatmulRoIAlign(MultiScaleRoIAlign):
    """RoIAlign (He et al., "Mask R-CNN", ICCV 2017) on one feature map, equal to torchvision's
    ``roi_align(..., aligned=False)`` with a fixed ``sampling_ratio``, written as two matrix products:
    bilinear sampling is separable, so a RoI's pooled map is ``A_y @ F @ A_x^T`` with (out, H) and
    (out, W) weight matrices averaged over the samples of each bin. Its backward is a matmul too,
    several times faster on CPU than torchvision's scatter kernel, which dominated the small
    detector's training step. Same call as ``MultiScaleRoIAlign``:
    ``(features dict, boxes list of (R_i, 4) xyxy, image_shapes) -> (sum R_i, C, out, out)``
    (a subclass, since torchvision's detectors accept only MultiScaleRoIAlign)."""

    def __init__(self, featmap_name: str = "0", output_size: int = 7, sampling_ratio: int = 2) -> None:
        super().__init__([featmap_name], output_size, sampling_ratio)
        self.featmap_name, self.size = featmap_name, output_size

    def forward(self, features: dict[str, torch.Tensor], boxes: list[torch.Tensor],
                image_shapes: list[tuple[int, int]]) -> torch.Tensor:
        feat = features[self.featmap_name]
        _, channels, height, width = feat.shape
        # the feature stride, inferred as MultiScaleRoIAlign does (a power of 2)
        scale = 2.0 ** round(math.log2(height / max(s[0] for s in image_shapes)))
        size, ratio = self.size, self.sampling_ratio
        steps = (torch.arange(size * ratio, device=feat.device, dtype=feat.dtype) + 0.5) / ratio  # in bin units
        out = []
        for b, bx in enumerate(boxes):
            with torch.no_grad():  # like roi_align, no gradient to the boxes
                x1, y1, x2, y2 = (bx.to(feat.dtype) * scale).unbind(1)
                ys = y1[:, None] + steps * ((y2 - y1).clamp_min(1.0) / size)[:, None]  # (R, out * ratio)
                xs = x1[:, None] + steps * ((x2 - x1).clamp_min(1.0) / size)[:, None]
                n = bx.shape[0]
                wy = _bilinear_weights(ys, height).view(n, size, ratio, height).mean(2)  # (R, out, H)
                wx = _bilinear_weights(xs, width).view(n, size, ratio, width).mean(2)  # (R, out, W)
            rows = torch.einsum("rph,chw->rcpw", wy, feat[b])  # (R, C, out, W)
            out.append(torch.einsum("rcpw,rqw->rcpq", rows, wx))
        return torch.cat(out) if out else feat.new_zeros(0, channels, size, size)


def _small_parts(arch: str, num_classes: int, anchor_sizes: Sequence[int], representation: int) -> dict[str, Any]:
    backbone = SmallBackbone()
    c = backbone.out_channels
    parts: dict[str, Any] = dict(
        backbone=backbone,
        rpn_anchor_generator=AnchorGenerator((tuple(anchor_sizes),), ((0.5, 1.0, 2.0),)),
        box_roi_pool=MatmulRoIAlign("0", 7, 2),
        box_head=TwoMLPHead(c * 7 * 7, representation),
        box_predictor=FastRCNNPredictor(representation, num_classes + 1),
        # Few objects per canvas: fewer proposals and RoIs than the COCO defaults keep CPU steps short.
        rpn_pre_nms_top_n_train=600, rpn_post_nms_top_n_train=300, rpn_pre_nms_top_n_test=300,
        rpn_post_nms_top_n_test=150, box_batch_size_per_image=64, image_mean=[0.0] * 3, image_std=[1.0] * 3)
    if arch == "maskrcnn":
        parts.update(mask_roi_pool=MatmulRoIAlign("0", 14, 2), mask_head=MaskRCNNHeads(c, [64, 64], 1),
                     mask_predictor=MaskRCNNPredictor(64, 64, num_classes + 1))
    return parts


def _resnet50_fpn(arch: str, num_classes: int, backbone_weights_path: str | None, **kwargs: Any) -> nn.Module:
    from torchvision.models.detection import fasterrcnn_resnet50_fpn, maskrcnn_resnet50_fpn

    build = maskrcnn_resnet50_fpn if arch == "maskrcnn" else fasterrcnn_resnet50_fpn
    model = build(weights=None, weights_backbone=None, num_classes=num_classes + 1, **kwargs)
    if backbone_weights_path is not None:  # ImageNet ResNet-50 from a local file, no hub download
        state = _read_state(backbone_weights_path)
        missing, unexpected = model.backbone.body.load_state_dict(state, strict=False)
        unexpected = [k for k in unexpected if not k.startswith("fc.")]
        if missing or unexpected:
            raise ValueError(f"{backbone_weights_path} is not a ResNet-50 state dict: missing {missing[:5]}, "
                             f"unexpected {unexpected[:5]}")
    return model


def _read_state(path: str) -> dict[str, torch.Tensor]:
    from ..engine.checkpoint import load_checkpoint

    state = load_checkpoint(path)  # weights_only; a missing, damaged or unsafe file is a clear CheckpointError
    return state.get("model", state) if isinstance(state, dict) else state


def create_detector(arch: str = "fasterrcnn", *, num_classes: int, head: str | DetectionClassification = "softmax",
                    instance_counts: Sequence[float] | None = None, image_counts: Sequence[float] | None = None,
                    num_images: int | None = None, head_options: dict[str, Any] | None = None,
                    backbone: str = "small", weights_path: str | None = None,
                    backbone_weights_path: str | None = None, anchor_sizes: Sequence[int] = (16, 32, 64),
                    representation_size: int = 256, **detector_kwargs: Any) -> nn.Module:
    """A torchvision ``FasterRCNN`` / ``MaskRCNN`` whose RoI heads classify with ``head``.

    Args:
        arch: 'fasterrcnn' or 'maskrcnn'.
        num_classes: foreground classes C (labels 1..C, 0 = background).
        head: a head name ('softmax', 'bags', 'balanced_softmax', 'balms', 'sigmoid') built from
            the training statistics below and ``head_options``, or a ready head object.
        instance_counts, image_counts: (C,) training boxes / images per class; num_images: training images.
        backbone: 'small' (CPU-friendly, embedded benchmark) or 'resnet50_fpn'.
        weights_path: local detector checkpoint to start from (its class-specific layers are skipped
            when their shapes differ, e.g. COCO weights for LVIS).
        backbone_weights_path: local ImageNet ResNet-50 weights (resnet50_fpn only).
        anchor_sizes, representation_size: the small backbone's anchor sizes and box-head width.
        detector_kwargs: further keyword arguments of torchvision's FasterRCNN / MaskRCNN
            (``min_size``, ``max_size``, ``box_detections_per_img``, ``box_score_thresh`` ...).
    """
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    if backbone not in BACKBONES:
        raise ValueError(f"backbone must be one of {BACKBONES}, got {backbone!r}")
    if isinstance(head, str):
        head = create_head(head, num_classes, instance_counts=instance_counts, image_counts=image_counts,
                           num_images=num_images, **(head_options or {}))
    elif head_options:
        raise ValueError("head_options are only used when head is given by name")
    if head.num_classes != num_classes:
        raise ValueError(f"the head has {head.num_classes} classes, the detector {num_classes}")
    if backbone == "small":
        if backbone_weights_path is not None:
            raise ValueError("backbone_weights_path is for backbone='resnet50_fpn'")
        parts = _small_parts(arch, num_classes, anchor_sizes, representation_size)
        parts.update(detector_kwargs)
        model = (MaskRCNN if arch == "maskrcnn" else FasterRCNN)(**parts)
    else:
        model = _resnet50_fpn(arch, num_classes, backbone_weights_path, **detector_kwargs)
    with_long_tail_head(model, head)
    if weights_path is not None:
        load_detector_weights(model, weights_path)
    return model


def with_long_tail_head(model: nn.Module, head: DetectionClassification) -> nn.Module:
    """Give any torchvision Faster / Mask R-CNN (built for ``head.num_classes + 1`` classes, background
    included) the long-tail classification ``head``: its RoI heads become a :class:`LongTailRoIHeads`
    with the same parts and settings, and its class-logit layer is re-created with ``head.num_logits``
    outputs. Returns the model (changed in place)."""
    predictor = model.roi_heads.box_predictor
    if predictor.bbox_pred.out_features != 4 * (head.num_classes + 1):
        raise ValueError(f"the detector predicts boxes for {predictor.bbox_pred.out_features // 4} classes, the head "
                         f"has {head.num_classes} + background: build it with num_classes={head.num_classes + 1}")
    model.roi_heads = LongTailRoIHeads.replacing(model.roi_heads, head)
    reset_class_logits(model)
    return model


def reset_class_logits(model: nn.Module, head: DetectionClassification | None = None) -> nn.Linear:
    """Re-create the class-logit layer with ``head.num_logits`` outputs (decoupled stage 2); ``head``
    replaces the model's classification part when given. Returns the new layer."""
    roi_heads = model.roi_heads
    if not isinstance(roi_heads, LongTailRoIHeads):
        raise TypeError("the model's roi_heads is not a LongTailRoIHeads: build it with create_detector")
    if head is not None:
        if head.num_classes != roi_heads.classification.num_classes:
            raise ValueError(f"the new head has {head.num_classes} classes, the detector "
                             f"{roi_heads.classification.num_classes}")
        roi_heads.classification = head.to(next(model.parameters()).device)
    old = roi_heads.box_predictor.cls_score
    layer = nn.Linear(old.in_features, roi_heads.classification.num_logits).to(old.weight.device)
    roi_heads.classification.init_class_logits(layer)
    roi_heads.box_predictor.cls_score = layer
    return layer


def load_detector_weights(model: nn.Module, path: str) -> None:
    """Load a local checkpoint, skipping tensors whose shapes differ (the class layers of another
    dataset); anything else missing or unexpected is an error."""
    state = _read_state(path)
    own = model.state_dict()
    skipped = [k for k, v in state.items() if k in own and own[k].shape != v.shape]
    state = {k: v for k, v in state.items() if k not in skipped}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [k for k in missing if k not in skipped]
    if missing or unexpected:
        raise ValueError(f"{path} does not fit this detector: missing {missing[:5]}, unexpected {unexpected[:5]}")
