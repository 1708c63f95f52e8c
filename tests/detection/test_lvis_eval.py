"""evaluate_lvis against the reference LVIS evaluation (PyPI lvis 0.5.3) on real LVIS v0.5 val
annotations with generated detections, plus exact cases that need no reference."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from longtail.detection.evaluation import LVIS_METRIC_NAMES, evaluate_lvis, limit_detections_per_image, to_lvis_results
from references.lvis_reference import (
    LVIS_TRAIN_STATS,
    LVIS_VAL_100,
    import_reference_lvis,
    make_detections,
    make_lvis_val,
    reference_lvis_eval,
)

needs_val = pytest.mark.skipif(not LVIS_VAL_100.exists(), reason=f"real LVIS annotations not found at {LVIS_VAL_100} "
                               "(it ships as references/data/lvis_v0.5_val_100.json.gz; "
                               "LONGTAIL_LVIS_VAL_100 points elsewhere)")


@pytest.fixture(scope="module")
def lvis_val():
    return json.loads(LVIS_VAL_100.read_text())


@needs_val
@pytest.mark.parametrize("iou_type,seed", [("bbox", 0), ("bbox", 1), ("segm", 0)])
def test_equals_reference_lvis_eval(lvis_val, iou_type, seed):
    lvis = import_reference_lvis()
    if lvis is None:
        pytest.skip("reference evaluator not installed: pip install lvis==0.5.3 --no-deps (the `test` extra)")
    dets = make_detections(lvis_val, seed=seed, with_masks=iou_type == "segm")
    ours = evaluate_lvis(dets, lvis_val, iou_type=iou_type)
    ref = reference_lvis_eval(lvis, lvis_val, dets, iou_type)
    assert set(ours) == set(LVIS_METRIC_NAMES)
    for name in LVIS_METRIC_NAMES:
        expected = float("nan") if ref[name] == -1 else ref[name]
        if math.isnan(expected):
            assert math.isnan(ours[name]), name
        else:
            assert ours[name] == pytest.approx(expected, abs=1e-4), name
    assert 0.05 < ours["AP"] < 0.95  # the generated detections are neither hopeless nor perfect


@needs_val
@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_ground_truth_as_detections_scores_one(lvis_val, iou_type):
    from faster_coco_eval.core import mask as mask_utils

    images = {im["id"]: im for im in lvis_val["images"]}
    dets = []
    for a in lvis_val["annotations"]:
        d = {"image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"], "score": 1.0}
        if iou_type == "segm":
            im = images[a["image_id"]]
            rle = mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], im["height"], im["width"]))
            d = {k: v for k, v in d.items() if k != "bbox"}  # mask results without boxes
            d["segmentation"] = rle
        dets.append(d)
    res = evaluate_lvis(dets, lvis_val, iou_type=iou_type)
    for name in ("AP", "AP50", "AP75", "APc", "APf"):
        assert res[name] == pytest.approx(1.0), name


def test_max_dets_keeps_the_best_per_image_over_all_categories():
    dets = [{"image_id": 1, "category_id": c, "score": s} for c, s in [(1, 0.1), (2, 0.9), (3, 0.5), (1, 0.7)]]
    dets.append({"image_id": 2, "category_id": 1, "score": 0.01})
    kept = limit_detections_per_image(dets, 2)
    assert sorted((d["image_id"], d["score"]) for d in kept) == [(1, 0.7), (1, 0.9), (2, 0.01)]


def _tiny_gt():
    return {"images": [{"id": 7, "height": 20, "width": 30, "neg_category_ids": [2], "not_exhaustive_category_ids": []}],
            "annotations": [{"id": 1, "image_id": 7, "category_id": 1, "bbox": [2, 3, 10, 8], "area": 80.0,
                             "segmentation": [[2, 3, 12, 3, 12, 11, 2, 11]]}],
            "categories": [{"id": 1, "name": "a", "frequency": "r"}, {"id": 2, "name": "b", "frequency": "f"}]}


def test_federated_rules_on_a_hand_made_case():
    gt = _tiny_gt()
    hit = {"image_id": 7, "category_id": 1, "bbox": [2, 3, 10, 8], "score": 0.5}
    fp_negative = {"image_id": 7, "category_id": 2, "bbox": [0, 0, 5, 5], "score": 0.9}
    assert evaluate_lvis([hit], gt)["AP"] == pytest.approx(1.0)
    # a confident false positive of a verified-absent class counts, but class 2 has no ground truth:
    # its AP is undefined and class 1 keeps AP 1
    res = evaluate_lvis([hit, fp_negative], gt)
    assert res["APr"] == pytest.approx(1.0) and math.isnan(res["APf"])
    fp_same = {"image_id": 7, "category_id": 1, "bbox": [15, 10, 5, 5], "score": 0.9}
    assert evaluate_lvis([hit, fp_same], gt)["AP50"] == pytest.approx(0.5, abs=0.01)  # precision 1/2 at recall 1
    gt["images"][0]["not_exhaustive_category_ids"] = [1]  # now the unmatched detection is ignored
    assert evaluate_lvis([hit, fp_same], gt)["AP50"] == pytest.approx(1.0)
    # as in the reference, a result of area 0 (flat box, empty mask) is not evaluated at all
    gt["images"][0]["not_exhaustive_category_ids"] = []
    flat = {"image_id": 7, "category_id": 1, "bbox": [15, 10, 5, 0], "score": 0.9}
    assert evaluate_lvis([hit, flat], gt)["AP50"] == pytest.approx(1.0)


def test_clear_errors():
    gt = _tiny_gt()
    ok = {"image_id": 7, "category_id": 1, "bbox": [2, 3, 10, 8], "score": 0.5}
    with pytest.raises(ValueError, match="category id"):
        evaluate_lvis([{**ok, "category_id": 99}], gt)
    with pytest.raises(ValueError, match="image id"):
        evaluate_lvis([{**ok, "image_id": 8}], gt)
    with pytest.raises(ValueError, match="segmentation"):
        evaluate_lvis([ok], gt, iou_type="segm")
    with pytest.raises(ValueError, match="iou_type"):
        evaluate_lvis([ok], gt, iou_type="keypoints")


def test_to_lvis_results_converts_torchvision_outputs():
    from faster_coco_eval.core import mask as mask_utils

    masks = torch.zeros(2, 1, 20, 30)
    masks[0, 0, 3:11, 2:12] = 0.9
    masks[1, 0, 0:4, 0:4] = 0.4  # below the threshold: empty mask
    out = {"boxes": torch.tensor([[2.0, 3.0, 12.0, 11.0], [0.0, 0.0, 4.0, 4.0]]), "labels": torch.tensor([1, 2]),
           "scores": torch.tensor([0.8, 0.3]), "masks": masks}
    res = to_lvis_results([out], [7], {1: 1, 2: 2}, with_masks=True)
    assert res[0]["bbox"] == pytest.approx([2.0, 3.0, 10.0, 8.0]) and res[1]["category_id"] == 2
    assert mask_utils.decode(res[0]["segmentation"]).sum() == 80 and mask_utils.decode(res[1]["segmentation"]).sum() == 0
    json.dumps(res)  # results are json-serialisable
    assert evaluate_lvis(res, _tiny_gt(), iou_type="segm")["AP"] == pytest.approx(1.0)
    with pytest.raises(ValueError, match="label 3"):
        to_lvis_results([{**out, "labels": torch.tensor([1, 3])}], [7], {1: 1, 2: 2})
    assert np.isclose(res[1]["score"], 0.3)


@needs_val
@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_equals_reference_on_a_built_val_set(lvis_val, iou_type):
    """Hundreds of classes with ground truth, each spread over its own images (the evaluation packs
    every class's (image, class) pairs onto shared virtual images), with negative and not-exhaustive
    classes; every image topped up to 60 detections; scores on a 0.05 grid, so ties across images
    (kept in image order by both) decide the order of true and false positives."""
    lvis = import_reference_lvis()
    if lvis is None:
        pytest.skip("reference evaluator not installed: pip install lvis==0.5.3 --no-deps (the `test` extra)")
    stats = json.loads(LVIS_TRAIN_STATS.read_text())["categories"]
    gt = make_lvis_val(lvis_val, stats, 150, seed=3)
    assert len({a["category_id"] for a in gt["annotations"]}) > 300
    assert any(im["not_exhaustive_category_ids"] for im in gt["images"])
    dets = make_detections(gt, seed=3, with_masks=iou_type == "segm", dets_per_image=60)
    for d in dets:
        d["score"] = round(d["score"] * 20) / 20
    ours = evaluate_lvis(dets, gt, iou_type=iou_type)
    ref = reference_lvis_eval(lvis, gt, dets, iou_type)
    for name in LVIS_METRIC_NAMES:
        assert ours[name] == pytest.approx(ref[name], abs=1e-4), name
    assert 0.02 < ours["AP"] < 0.95
