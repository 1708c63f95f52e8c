"""torchvision's ``RoIHeads`` with an injected classification part (softmax, BAGS, sigmoid Balanced
Softmax), by subclassing: proposal matching, sampling, box regression and the mask branch are
torchvision's; the class-logit loss and the logits -> scores map come from ``classification``.
``forward`` keeps the ``(result, losses)`` contract and the loss names ``loss_classifier``,
``loss_box_reg`` and ``loss_mask``. Keypoints are not supported.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import Tensor
from torchvision.models.detection.roi_heads import RoIHeads, maskrcnn_inference, maskrcnn_loss
from torchvision.ops import boxes as box_ops

from .heads import DetectionClassification


def box_regression_loss(box_regression: Tensor, labels: Tensor, regression_targets: Tensor) -> Tensor:
    """torchvision's Fast R-CNN box loss: smooth-L1 (beta 1/9) on the positives' class-specific
    deltas, summed, divided by the number of sampled RoIs. box_regression (R, (C+1)*4)."""
    pos = torch.where(labels > 0)[0]
    deltas = box_regression.reshape(labels.numel(), -1, 4)[pos, labels[pos]]
    return F.smooth_l1_loss(deltas, regression_targets[pos], beta=1 / 9, reduction="sum") / labels.numel()


class LongTailRoIHeads(RoIHeads):
    """``RoIHeads`` whose classification is ``classification`` (a :class:`DetectionClassification`).

    The box predictor's ``cls_score`` must have ``classification.num_logits`` outputs and its
    ``bbox_pred`` ``(num_classes + 1) * 4``. Other arguments are those of ``RoIHeads``.
    """

    def __init__(self, *args, classification: DetectionClassification, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        if self.keypoint_predictor is not None:
            raise ValueError("LongTailRoIHeads does not support keypoints")
        self.classification = classification

    @classmethod
    def replacing(cls, heads: RoIHeads, classification: DetectionClassification) -> "LongTailRoIHeads":
        """A LongTailRoIHeads with the parts and settings of an existing torchvision ``heads``."""
        return cls(heads.box_roi_pool, heads.box_head, heads.box_predictor,
                   heads.proposal_matcher.high_threshold, heads.proposal_matcher.low_threshold,
                   heads.fg_bg_sampler.batch_size_per_image, heads.fg_bg_sampler.positive_fraction,
                   heads.box_coder.weights, heads.score_thresh, heads.nms_thresh, heads.detections_per_img,
                   mask_roi_pool=heads.mask_roi_pool, mask_head=heads.mask_head, mask_predictor=heads.mask_predictor,
                   classification=classification)

    def box_features(self, features: dict[str, Tensor], proposals: list[Tensor],
                     image_shapes: list[tuple[int, int]]) -> Tensor:
        """(R, D) features of the proposals, the input of the class-logit layer."""
        return self.box_head(self.box_roi_pool(features, proposals, image_shapes))

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor], image_shapes: list[tuple[int, int]],
                targets: Optional[list[dict[str, Tensor]]] = None) -> tuple[list[dict[str, Tensor]], dict[str, Tensor]]:
        if targets is not None:
            for t in targets:
                if not t["boxes"].is_floating_point():
                    raise TypeError(f"target boxes must be floating point, got {t['boxes'].dtype}")
                if t["labels"].dtype != torch.int64:
                    raise TypeError(f"target labels must be int64, got {t['labels'].dtype}")
        labels = regression_targets = matched_idxs = None
        if self.training:
            proposals, matched_idxs, labels, regression_targets = self.select_training_samples(proposals, targets)
        class_logits, box_regression = self.box_predictor(self.box_features(features, proposals, image_shapes))

        result: list[dict[str, Tensor]] = []
        losses: dict[str, Tensor] = {}
        if self.training:
            all_labels, all_targets = torch.cat(labels), torch.cat(regression_targets)
            losses = {"loss_classifier": self.classification.loss(class_logits, all_labels),
                      "loss_box_reg": box_regression_loss(box_regression, all_labels, all_targets)}
        else:
            boxes, scores, pred_labels = self.postprocess_detections(class_logits, box_regression, proposals, image_shapes)
            result = [{"boxes": b, "labels": lb, "scores": s} for b, s, lb in zip(boxes, scores, pred_labels)]

        if self.has_mask():
            losses.update(self._mask_forward(features, proposals, image_shapes, targets, labels, matched_idxs, result))
        return result, losses

    def _mask_forward(self, features, proposals, image_shapes, targets, labels, matched_idxs, result) -> dict:
        """torchvision's mask branch: trained on positive proposals, predicted for the detections."""
        if self.training:
            pos = [torch.where(lb > 0)[0] for lb in labels]
            mask_proposals = [p[i] for p, i in zip(proposals, pos)]
            pos_matched_idxs = [m[i] for m, i in zip(matched_idxs, pos)]
        else:
            mask_proposals = [r["boxes"] for r in result]
        mask_logits = self.mask_predictor(self.mask_head(self.mask_roi_pool(features, mask_proposals, image_shapes)))
        if self.training:
            gt_masks = [t["masks"] for t in targets]
            gt_labels = [t["labels"] for t in targets]
            return {"loss_mask": maskrcnn_loss(mask_logits, mask_proposals, gt_masks, gt_labels, pos_matched_idxs)}
        for mask_prob, r in zip(maskrcnn_inference(mask_logits, [r["labels"] for r in result]), result):
            r["masks"] = mask_prob
        return {}

    def postprocess_detections(self, class_logits: Tensor, box_regression: Tensor, proposals: list[Tensor],
                               image_shapes: list[tuple[int, int]]) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
        """torchvision's post-processing with ``classification.scores`` in place of the softmax:
        every (proposal, class) pair above ``score_thresh`` is a candidate, per-class NMS, top
        ``detections_per_img``."""
        scores_all = self.classification.scores(class_logits)  # (R, C+1), column 0 = background
        num_classes = scores_all.shape[1]
        pred_boxes = self.box_coder.decode(box_regression, proposals)  # (R, C+1, 4)
        per_image = [p.shape[0] for p in proposals]
        out_boxes, out_scores, out_labels = [], [], []
        for boxes, scores, shape in zip(pred_boxes.split(per_image), scores_all.split(per_image), image_shapes):
            boxes = box_ops.clip_boxes_to_image(boxes, shape)
            labels = torch.arange(num_classes, device=scores.device).view(1, -1).expand_as(scores)
            boxes, scores, labels = boxes[:, 1:].reshape(-1, 4), scores[:, 1:].reshape(-1), labels[:, 1:].reshape(-1)
            keep = torch.where(scores > self.score_thresh)[0]
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = box_ops.remove_small_boxes(boxes, min_size=1e-2)
            boxes, scores, labels = boxes[keep], scores[keep], labels[keep]
            keep = box_ops.batched_nms(boxes, scores, labels, self.nms_thresh)[: self.detections_per_img]
            out_boxes.append(boxes[keep])
            out_scores.append(scores[keep])
            out_labels.append(labels[keep])
        return out_boxes, out_scores, out_labels
