"""LVIS evaluation (box and mask AP, with APr / APc / APf) on faster-coco-eval's LVIS mode.

The LVIS protocol (Gupta et al., CVPR 2019; the reference is the ``lvis`` package's ``LVISEval``):
keep each image's ``max_dets`` (300) highest-scoring detections over all categories; federated
rules: a detection of a category that is neither annotated in the image nor in its
``neg_category_ids`` is not evaluated, and an unmatched detection of a category in its
``not_exhaustive_category_ids`` is ignored; AP is COCO's 101-point interpolated AP over IoU
0.50:0.95, averaged over categories; APr / APc / APf average over the categories of frequency r / c / f.
faster-coco-eval (C++) applies the same rules; the per-image top-``max_dets`` cut is done here,
because its ``maxDets`` cuts per (image, category). Tests check equality with ``lvis`` to 1e-4.

Speed (benchmarks/lvis_eval_speed.py): faster-coco-eval walks every image x category pair, nearly
all empty on LVIS (5000 x 1230 on val); the pairs that hold something are packed onto few 'virtual'
images first (:func:`_pack_pairs`, exact), and the per-detection Python work is done once, here.
"""

from __future__ import annotations

import contextlib
import gc
import json
from collections import defaultdict
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor

LVIS_METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "APr", "APc", "APf")
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
    nor in its ``neg_category_ids``), and those of categories without ground truth anywhere (no AP,
    left out of every mean). faster-coco-eval drops the former too, but its mask path then fails on
    an image left without annotations and detections (IndexError ``unordered_map::at``, 1.8.0)."""
    evaluated: dict[int, set] = {im["id"]: set(im.get("neg_category_ids", [])) for im in gt["images"]}
    for a in gt["annotations"]:
        evaluated[a["image_id"]].add(a["category_id"])
    with_gt = {a["category_id"] for a in gt["annotations"]}
    return [p for p in predictions if p["category_id"] in evaluated[p["image_id"]] and p["category_id"] in with_gt]


def _as_results(predictions: list[dict], iou_type: str) -> list[dict]:
    """New result dicts as ``COCO.loadRes`` (and LVISResults) make them, in one pass: ids 1..N in
    order, iscrowd 0, and the area that APs/APm/APl use: the box area when the results carry boxes,
    else the mask area (the first result decides, as in both); results of area 0 are left out."""
    from faster_coco_eval.core import mask as mask_utils

    if not predictions:
        return []
    with_boxes = "bbox" in predictions[0] and len(predictions[0]["bbox"]) > 0
    if with_boxes and not all("bbox" in p for p in predictions):
        raise ValueError("some results carry a 'bbox' and some do not: give all or none (with boxes, "
                         "APs/APm/APl use the box area, as in LVISResults)")
    if with_boxes:
        boxes = [p["bbox"] for p in predictions]
        areas = [b[2] * b[3] for b in boxes]
    else:  # only masks: one call for all areas and boxes
        masks = [p["segmentation"] for p in predictions]
        areas, boxes = mask_utils.area(masks).tolist(), mask_utils.toBbox(masks).tolist()
    # the reference never looks at a result of area 0 (an empty mask, a flat box): LVIS.get_ann_ids
    # keeps area > 0; faster-coco-eval would count it as a false positive
    kept = [(p, box, area) for p, box, area in zip(predictions, boxes, areas) if area > 0]
    results = [{"id": k, "image_id": p["image_id"], "category_id": p["category_id"], "score": p["score"],
                "bbox": box, "area": area, "iscrowd": 0} for k, (p, box, area) in enumerate(kept, 1)]
    if iou_type == "segm":
        for r, (p, _, _) in zip(results, kept):
            r["segmentation"] = p["segmentation"]
    return results


def _pack_pairs(gt: dict, dets: list[dict], *, to_rle: bool) -> dict:
    """Move each category's (image, category) pairs onto 'virtual' images: the k-th image (in id
    order) holding ground truth or an evaluated detection of category c becomes virtual image k
    for c. Rewrites ``image_id`` in the annotation and detection copies; returns the virtual images.

    Exact: LVIS evaluation matches, and applies the federated rules, per (image, category) pair, and
    accumulates a category's pairs in image id order (ties in score keep that order), all of which
    the packing keeps; each virtual image carries, per category, the negative and not-exhaustive
    flags of the real image it stands for. faster-coco-eval loops over every image x category
    pair (5000 x 1230 on LVIS val, nearly all empty); packed, over (most images of one category)
    x categories. Masks are encoded here with their real image size (``to_rle``), as the
    evaluator would, since a virtual image has none."""
    members: dict[int, set] = defaultdict(set)  # category -> images holding one of its pairs
    for a in gt["annotations"]:
        members[a["category_id"]].add(a["image_id"])
    for d in dets:
        members[d["category_id"]].add(d["image_id"])
    slot = {(image_id, cat): k for cat, ids in members.items() for k, image_id in enumerate(sorted(ids), 1)}
    virtual = [{"id": k, "height": 1, "width": 1, "neg_category_ids": [], "not_exhaustive_category_ids": []}
               for k in range(1, 1 + max(map(len, members.values()), default=0))]
    for im in gt["images"]:
        for key in ("neg_category_ids", "not_exhaustive_category_ids"):
            for cat in im.get(key, []):
                k = slot.get((im["id"], cat))
                if k is not None:
                    virtual[k - 1][key].append(cat)
    sizes = {im["id"]: (im["height"], im["width"]) for im in gt["images"]} if to_rle else {}
    for a in gt["annotations"]:
        if to_rle:
            a["segmentation"] = _to_rle(a["segmentation"], *sizes[a["image_id"]])
        a["image_id"] = slot[a["image_id"], a["category_id"]]
    for d in dets:
        d["image_id"] = slot[d["image_id"], d["category_id"]]
    for im in virtual:  # many categories' flags per virtual image: faster-coco-eval tests membership per detection
        im["neg_category_ids"] = frozenset(im["neg_category_ids"])
        im["not_exhaustive_category_ids"] = frozenset(im["not_exhaustive_category_ids"])
    return {"images": virtual, "annotations": gt["annotations"], "categories": gt["categories"]}


def _to_rle(segmentation: Any, height: int, width: int) -> dict:
    """Polygons or uncompressed RLE -> compressed RLE (COCO's annToRLE)."""
    from faster_coco_eval.core import mask as mask_utils

    if isinstance(segmentation, list):
        return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    if isinstance(segmentation["counts"], list):
        return mask_utils.frPyObjects(segmentation, height, width)
    return segmentation


def _check_predictions(predictions: Sequence[Mapping[str, Any]], gt: Mapping[str, Any], iou_type: str) -> None:
    need = ("image_id", "category_id", "score", "bbox" if iou_type == "bbox" else "segmentation")
    needed = set(need)
    for k, p in enumerate(predictions):
        if not p.keys() >= needed:
            lacking = [key for key in need if key not in p]
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
    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    if max_dets < 1:
        raise ValueError(f"max_dets must be >= 1, got {max_dets}")
    with _no_gc():  # a million short-lived dicts, no cycles: the cyclic collector only costs time (~15%)
        return _evaluate_lvis(predictions, gt, iou_type=iou_type, max_dets=max_dets)


@contextlib.contextmanager
def _no_gc():
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _evaluate_lvis(predictions: Sequence[Mapping[str, Any]], gt: str | Path | Mapping[str, Any], *,
                   iou_type: str, max_dets: int) -> dict[str, float]:
    from faster_coco_eval import COCO, COCOeval_faster

    if isinstance(gt, (str, Path)):
        with open(gt) as f:
            gt = json.load(f)
    # the evaluator writes into the annotation dicts (ignore flags, RLEs): it gets copies; and it
    # deep-copies the categories into the results, so it gets only the fields it reads
    lacking = [a.get("id") for a in gt["annotations"] if "area" not in a]
    if lacking:
        raise ValueError(f"{len(lacking)} ground-truth annotations lack 'area' (ids {lacking[:10]}); LVIS "
                         "evaluation needs it for APs/APm/APl")
    # annotations of area 0 are never evaluated by the reference (LVIS.get_ann_ids keeps area > 0)
    gt = {"images": gt["images"], "annotations": [dict(a) for a in gt["annotations"] if a["area"] > 0],
          "categories": [{k: c[k] for k in ("id", "name", "frequency") if k in c} for c in gt["categories"]]}
    _check_predictions(predictions, gt, iou_type)
    if not gt["annotations"]:
        return {name: float("nan") for name in LVIS_METRIC_NAMES}
    dets = _as_results(_federated(limit_detections_per_image(predictions, max_dets), gt), iou_type)
    packed = _pack_pairs(gt, dets, to_rle=iou_type == "segm")
    quiet = lambda *args, **kwargs: None  # noqa: E731
    if iou_type == "segm":  # a mask meets only the ground truth of its pair: decode only those
        with_gt = {(a["image_id"], a["category_id"]) for a in packed["annotations"]}
        for d in dets:
            if (d["image_id"], d["category_id"]) not in with_gt:
                del d["segmentation"]
    coco_gt = COCO(packed, print_function=quiet)
    coco_dt = COCO(dict(packed, annotations=dets), print_function=quiet)  # what loadRes would build
    ev = COCOeval_faster(coco_gt, coco_dt, iou_type, lvis_style=True, print_function=quiet)
    ev.params.maxDets = [max_dets]
    # categories without ground truth have no AP (-1, left out of every mean) in both evaluators
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
