"""LVIS evaluation (box and mask AP, with APr / APc / APf) on faster-coco-eval's LVIS mode.

The LVIS protocol (Gupta et al., CVPR 2019; the reference is the ``lvis`` package's ``LVISEval``):
keep each image's ``max_dets`` (300) highest-scoring detections over all categories; federated
rules: a detection of a category that is neither annotated in the image nor in its
``neg_category_ids`` is not evaluated, and an unmatched detection of a category in its
``not_exhaustive_category_ids`` is ignored; AP is COCO's 101-point interpolated AP over IoU
0.50:0.95, averaged over categories; APr / APc / APf average over the categories of frequency r / c / f.
faster-coco-eval (C++) applies the same rules; the per-image top-``max_dets`` cut is done here,
because its ``maxDets`` cuts per (image, category). Tests check equality with ``lvis`` to 1e-4.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")
_FCE_KEYS = {"AP": "AP_all", "AP50": "AP_50", "AP75": "AP_75", "APs": "AP_small", "APm": "AP_medium",
             "APl": "AP_large", "APr": "APr", "APc": "APc", "APf": "APf"}


def limit_detections_per_image(predictions: Sequence[Mapping[str, Any]], max_dets: int) -> list[dict]:
    """Each image's ``max_dets`` highest-scoring detections (ties keep input order), as LVISResults does."""
    per_image: dict[int, list] = defaultdict(list)
    for p in predictions:
        per_image[p["image_id"]].append(p)
    kept: list[dict] = []
    for dets in per_image.values():
        if len(dets) > max_dets:
            dets = sorted(dets, key=lambda d: d["score"], reverse=True)[:max_dets]
        kept.extend(dets)
    return kept


def _federated(predictions: list[dict], gt: Mapping[str, Any]) -> list[dict]:
    """Drop the detections federated evaluation never looks at (category neither annotated in the image
    nor in its ``neg_category_ids``). faster-coco-eval drops them too, but its mask path then fails on
    an image left without annotations and detections (IndexError ``unordered_map::at``, 1.8.0)."""
    evaluated: dict[int, set] = {im["id"]: set(im.get("neg_category_ids", [])) for im in gt["images"]}
    for a in gt["annotations"]:
        evaluated[a["image_id"]].add(a["category_id"])
    return [p for p in predictions if p["category_id"] in evaluated[p["image_id"]]]


def _check_predictions(predictions: Sequence[Mapping[str, Any]], gt: Mapping[str, Any], iou_type: str) -> None:
    need = ("image_id", "category_id", "score", "bbox" if iou_type == "bbox" else "segmentation")
    for k, p in enumerate(predictions):
        lacking = [key for key in need if key not in p]
        if lacking:
            raise ValueError(f"prediction {k} lacks {lacking}; {iou_type} evaluation needs {list(need)}")
    image_ids = {im["id"] for im in gt["images"]}
    bad_images = sorted({p["image_id"] for p in predictions} - image_ids)
    if bad_images:
        raise ValueError(f"predictions name {len(bad_images)} image id(s) not in the ground truth: {bad_images[:10]}")
    cat_ids = {c["id"] for c in gt["categories"]}
    bad_cats = sorted({p["category_id"] for p in predictions} - cat_ids)
    if bad_cats:
        raise ValueError(f"predictions name {len(bad_cats)} category id(s) not in the ground truth: {bad_cats[:10]} "
                         "(map contiguous labels back with the dataset's label_to_cat_id)")
    lacking = [c["id"] for c in gt["categories"] if c.get("frequency") not in ("r", "c", "f")]
    if lacking:
        raise ValueError(f"{len(lacking)} ground-truth categories lack a 'frequency' r/c/f (ids {lacking[:10]}); "
                         "LVIS evaluation needs it for APr/APc/APf")


def evaluate_lvis(predictions: Sequence[Mapping[str, Any]], gt: str | Path | Mapping[str, Any], *,
                  iou_type: Literal["bbox", "segm"] = "bbox", max_dets: int = 300) -> dict[str, float]:
    """LVIS AP of ``predictions`` against ground truth ``gt`` (json path or loaded dict).

    predictions: LVIS/COCO result dicts ``{image_id, category_id, score, bbox: [x, y, w, h]}`` and, for
    ``iou_type="segm"``, ``segmentation`` (an RLE); see :func:`to_lvis_results`.
    Returns AP, AP50, AP75, APs, APm, APl, APr, APc, APf as fractions in [0, 1]; a metric over
    categories none of which has ground truth here is NaN (the reference reports -1).
    """
    from faster_coco_eval import COCO, COCOeval_faster

    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    if max_dets < 1:
        raise ValueError(f"max_dets must be >= 1, got {max_dets}")
    if isinstance(gt, (str, Path)):
        with open(gt) as f:
            gt = json.load(f)
    # the evaluator writes into the annotation dicts (ignore flags, RLEs): it gets copies; and it
    # deep-copies the categories into the results, so it gets only the fields it reads
    gt = {"images": gt["images"], "annotations": [dict(a) for a in gt["annotations"]],
          "categories": [{k: c[k] for k in ("id", "name", "frequency") if k in c} for c in gt["categories"]]}
    _check_predictions(predictions, gt, iou_type)
    if not gt["annotations"]:
        return {name: float("nan") for name in METRICS}
    # copies: loadRes writes ids, areas and polygons into the dicts it gets
    # (with a bbox, a result's area for APs/APm/APl is the box area, as in LVISResults)
    dets = [dict(p) for p in _federated(limit_detections_per_image(predictions, max_dets), gt)]
    quiet = lambda *args, **kwargs: None  # noqa: E731
    coco_gt = COCO(gt, print_function=quiet)
    coco_dt = coco_gt.loadRes(dets)
    ev = COCOeval_faster(coco_gt, coco_dt, iou_type, lvis_style=True, print_function=quiet)
    ev.params.maxDets = [max_dets]
    # categories without ground truth here have no AP (-1, left out of every mean) in both evaluators;
    # skipping them is exact and saves most of the (image, category) pairs on a small split
    ev.params.catIds = sorted({a["category_id"] for a in gt["annotations"]})
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    stats = ev.stats_as_dict
    return {name: (float("nan") if stats[key] < 0 else float(stats[key])) for name, key in _FCE_KEYS.items()}


def to_lvis_results(outputs: Sequence[Mapping[str, Tensor]], image_ids: Sequence[int],
                    label_to_cat_id: Mapping[int, int], *, with_masks: bool = False,
                    mask_threshold: float = 0.5) -> list[dict]:
    """torchvision detector outputs -> LVIS result dicts.

    outputs[i]: ``boxes`` (N, 4) xyxy, ``labels`` (N,) contiguous 1..C, ``scores`` (N,), and with
    ``with_masks`` ``masks`` (N, 1, H, W) probabilities, binarised at ``mask_threshold`` into RLE."""
    if len(outputs) != len(image_ids):
        raise ValueError(f"{len(outputs)} outputs but {len(image_ids)} image ids")
    results: list[dict] = []
    for out, image_id in zip(outputs, image_ids):
        boxes = out["boxes"].detach().cpu().double()
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).tolist()
        labels, scores = out["labels"].tolist(), out["scores"].detach().cpu().tolist()
        rles = _encode_masks(out["masks"], mask_threshold) if with_masks else None
        for k, (box, label, score) in enumerate(zip(xywh, labels, scores)):
            if label not in label_to_cat_id:
                raise ValueError(f"label {label} has no category id (known labels 1..{len(label_to_cat_id)})")
            r = {"image_id": int(image_id), "category_id": int(label_to_cat_id[label]), "bbox": box,
                 "score": float(score)}
            if rles is not None:
                r["segmentation"] = rles[k]
            results.append(r)
    return results


def _encode_masks(masks: Tensor, threshold: float) -> list[dict]:
    from faster_coco_eval.core import mask as mask_utils

    binary = (masks.detach().cpu()[:, 0] > threshold).numpy().astype(np.uint8)  # (N, H, W)
    rles = mask_utils.encode(np.asfortranarray(binary.transpose(1, 2, 0)))
    for r in rles:
        r["counts"] = r["counts"].decode("ascii")  # json-serialisable
    return rles
