"""COCO-format detection: crowd regions are never training positives, COCO-style evaluation (with AP1..AP4)
equals pycocotools' COCOeval on real COCO images with crowd regions, and the COCO-LT split builder keeps
exactly the listed instances or names the categories that differ."""

import copy
import json
import random

import numpy as np
import pytest

from helpers.fashion_mnist import fashion_mnist_root_or_skip
from longtail.detection.coco import (
    COCO_LT_AP_BIN_EDGES,
    CocoDetection,
    ap_bins,
    binned_ap,
    build_coco_lt,
    evaluate_coco,
    load_coco_lt_split,
    per_class_ap,
)
from references.lvis_reference import LVIS_VAL_100, make_detections


def coco_from_lvis(crowd_fraction: float = 0.05, seed: int = 0) -> dict:
    """The 100 real COCO images of the LVIS v0.5 val sample as a COCO-format json (no federated fields), with
    a seeded share of the annotations turned into crowd regions."""
    lvis = json.loads(LVIS_VAL_100.read_text())
    rng = random.Random(seed)
    images = [{k: im[k] for k in ("id", "width", "height") if k in im} for im in lvis["images"]]
    annotations = [{"id": a["id"], "image_id": a["image_id"], "category_id": a["category_id"], "bbox": a["bbox"],
                    "area": a["area"], "segmentation": a["segmentation"],
                    "iscrowd": int(rng.random() < crowd_fraction)} for a in lvis["annotations"]]
    categories = [{"id": c["id"], "name": c["name"]} for c in lvis["categories"]]
    return {"images": images, "annotations": annotations, "categories": categories}


def pycocotools_eval(gt: dict, dets: list[dict], iou_type: str):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    coco_gt = COCO()
    coco_gt.dataset = copy.deepcopy(gt)
    coco_gt.createIndex()
    coco_dt = coco_gt.loadRes(copy.deepcopy(dets))
    ev = COCOeval(coco_gt, coco_dt, iou_type)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return ev


@pytest.fixture(scope="module")
def coco_val():
    gt = coco_from_lvis()
    assert sum(a["iscrowd"] for a in gt["annotations"]) > 20
    return gt


@pytest.mark.parametrize("iou_type", ["bbox", "segm"])
def test_equals_pycocotools_with_crowd_regions(coco_val, iou_type):
    dets = make_detections(coco_val, seed=1, with_masks=iou_type == "segm")
    ref = pycocotools_eval(coco_val, dets, iou_type)
    cats = [c["id"] for c in coco_val["categories"]]
    counts = {cid: random.Random(cid).choice([5, 50, 900, 20000]) for cid in cats}  # every bin populated
    ours = evaluate_coco(dets, coco_val, iou_type=iou_type, instance_counts=counts)
    for k, name in enumerate(("AP", "AP50", "AP75", "APs", "APm", "APl")):
        expected = float("nan") if ref.stats[k] < 0 else ref.stats[k]
        assert ours[name] == pytest.approx(expected, abs=1e-9, nan_ok=True), name
    reference_class_ap = dict(zip(ref.params.catIds, per_class_ap(ref.eval["precision"])))
    assert set(ours["per_class"]) == set(reference_class_ap)
    for cid, ap in reference_class_ap.items():
        assert ours["per_class"][cid] == pytest.approx(ap, abs=1e-9, nan_ok=True)
    expected_bins = binned_ap(reference_class_ap, ap_bins(counts))
    for name, value in expected_bins.items():
        assert ours[name] == pytest.approx(value, abs=1e-9, nan_ok=True)
    assert 0 < ours["AP"] < 1 and all(np.isfinite(ours[f"AP{b}"]) for b in range(1, 5))


def test_a_detection_on_a_crowd_region_is_ignored_not_a_false_positive(coco_val):
    crowd = next(a for a in coco_val["annotations"] if a["iscrowd"])
    image = {"image_id": crowd["image_id"], "category_id": crowd["category_id"], "score": 0.99}
    on_crowd = dict(image, bbox=list(crowd["bbox"]))
    dets = make_detections(coco_val, seed=2)
    with_it = evaluate_coco(dets + [on_crowd], coco_val)
    assert with_it["AP"] == pytest.approx(evaluate_coco(dets, coco_val)["AP"], abs=1e-12)


def test_ap_bins_are_half_open():
    assert ap_bins({1: 1, 2: 19, 3: 20, 4: 399, 5: 400, 6: 7999, 7: 8000}) == {1: 1, 2: 1, 3: 2, 4: 2, 5: 3, 6: 3, 7: 4}
    counts = {c["category_id"]: c["instance_count"] for c in load_coco_lt_split()["categories"]}
    sizes = np.bincount(list(ap_bins(counts, COCO_LT_AP_BIN_EDGES).values()), minlength=5)[1:]
    assert sizes.tolist() == [4, 24, 32, 20]  # COCO-LT's AP1..AP4 class groups


def test_crowd_regions_are_never_training_targets(tmp_path, coco_val):
    from PIL import Image

    gt = copy.deepcopy(coco_val)
    gt["images"] = gt["images"][:6]
    ids = {im["id"] for im in gt["images"]}
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] in ids]
    crowd_image = gt["images"][0]["id"]
    gt["annotations"].append({"id": 10**9, "image_id": crowd_image, "category_id": gt["categories"][0]["id"],
                              "bbox": [1.0, 2.0, 30.0, 40.0], "area": 1200.0, "segmentation": [], "iscrowd": 1})
    for im in gt["images"]:
        im["file_name"] = f"{im['id']}.png"
        Image.new("RGB", (im["width"], im["height"])).save(tmp_path / im["file_name"])
    dataset = CocoDetection(gt, tmp_path)
    crowd = {a["id"] for a in gt["annotations"] if a["iscrowd"]}
    assert dataset.num_crowd == len(crowd)
    _, target = dataset[0]
    assert dataset.crowd_boxes[0].tolist()[-1] == [1.0, 2.0, 31.0, 42.0]
    objects = [a for a in gt["annotations"] if a["image_id"] == crowd_image and not a["iscrowd"]]
    assert target["boxes"].shape[0] == len(objects)  # only the non-crowd annotations are targets
    assert not any(b.tolist() == [1.0, 2.0, 31.0, 42.0] for b in target["boxes"])
    # the class statistics count objects, not crowd regions
    assert sum(dataset.instance_counts) == sum(1 for a in gt["annotations"] if not a["iscrowd"])


# --- the COCO-LT split builder -----------------------------------------------------------------------------

def small_split(images_per_class: int = 3) -> dict:
    """The shipped COCO-LT list cut to its first images per category (the same categories and ids)."""
    split = load_coco_lt_split()
    cats = [{**c, "image_ids": c["image_ids"][:images_per_class]} for c in split["categories"]]
    return {**split, "categories": cats}


# COCO's 80 category ids; the list's label k is the k-th of them
COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]


def fake_instances(split: dict, *, crowd_counted: bool = True, seed: int = 0) -> tuple[dict, dict]:
    """A fake instances_train2017.json built from ``split``: each category gets 1-3 annotations in each of
    its listed images plus a crowd region in its first one, and distractors the rule must drop (the category
    in an image not listed for it). Returns (json, split with the instance counts the rule gives)."""
    rng = random.Random(seed)
    images, annotations, counts = {}, [], {}
    extra_images = iter(range(10**7, 10**8))
    for c in split["categories"]:
        cid, n = COCO_IDS[c["label"] - 1], 0
        for k, image_id in enumerate(c["image_ids"]):
            images.setdefault(image_id, {"id": image_id, "width": 64, "height": 48, "file_name": f"{image_id}.jpg"})
            for _ in range(rng.randint(1, 3)):
                annotations.append({"image_id": image_id, "category_id": cid, "bbox": [1, 1, 5, 5], "area": 25,
                                    "iscrowd": 0})
                n += 1
            if k == 0:
                annotations.append({"image_id": image_id, "category_id": cid, "bbox": [0, 0, 9, 9], "area": 81,
                                    "iscrowd": 1})
                n += crowd_counted
        other = next(extra_images)  # not listed for anything: its annotations and the image go
        images[other] = {"id": other, "width": 64, "height": 48, "file_name": f"{other}.jpg"}
        annotations.append({"image_id": other, "category_id": cid, "bbox": [2, 2, 5, 5], "area": 25, "iscrowd": 0})
        counts[cid] = n
    for i, a in enumerate(annotations):
        a["id"] = i + 1
    cats = [{"id": COCO_IDS[c["label"] - 1], "name": f"class{c['label']}", "supercategory": "x"}
            for c in split["categories"]]
    fake = {"images": list(images.values()), "annotations": annotations, "categories": cats}
    listed = {**split, "categories": [{**c, "instance_count": counts[COCO_IDS[c["label"] - 1]]}
                                      for c in split["categories"]]}
    return fake, listed


@pytest.mark.parametrize("crowd_counted", [True, False])
def test_builder_keeps_the_listed_instances(crowd_counted):
    fake, split = fake_instances(small_split(), crowd_counted=crowd_counted)
    out = build_coco_lt(fake, split)
    assert out["info"]["instances_counted"] == ("with crowd" if crowd_counted else "without crowd")
    listed = {COCO_IDS[c["label"] - 1]: set(c["image_ids"]) for c in split["categories"]}
    assert {im["id"] for im in out["images"]} == set().union(*listed.values())
    assert all(a["image_id"] in listed[a["category_id"]] for a in out["annotations"])
    kept = {cid: sum(a["category_id"] == cid for a in out["annotations"]) for cid in listed}
    assert kept == {COCO_IDS[c["label"] - 1]: c["instance_count"] for c in split["categories"]}
    assert [c["instance_count"] for c in out["categories"]] == [c["instance_count"] for c in split["categories"]]


def test_builder_names_the_categories_whose_counts_differ():
    fake, split = fake_instances(small_split())
    victim = split["categories"][11]  # label 12: stop sign, COCO id 13 (the ids skip 12)
    drop = next(a for a in fake["annotations"] if a["category_id"] == 13
                and a["image_id"] in victim["image_ids"] and not a["iscrowd"])
    fake["annotations"].remove(drop)
    with pytest.raises(ValueError, match=r"1 category differs from the list: class12 \(id 13\)"):
        build_coco_lt(fake, split)


def test_builder_on_the_whole_list_from_a_fake_json():
    """The real list at full size (99,411 images, 666,493 instances) through the builder, in seconds."""
    split = load_coco_lt_split()
    images = [{"id": i, "width": 8, "height": 8} for i in set().union(*(c["image_ids"] for c in split["categories"]))]
    annotations = []
    for c in split["categories"]:
        ids, n = c["image_ids"], c["instance_count"]
        annotations += [{"id": len(annotations) + k + 1, "image_id": ids[k % len(ids)],
                         "category_id": COCO_IDS[c["label"] - 1],
                         "bbox": [0, 0, 2, 2], "area": 4, "iscrowd": 0} for k in range(n)]
    cats = [{"id": COCO_IDS[c["label"] - 1], "name": str(c["label"])} for c in split["categories"]]
    out = build_coco_lt({"images": images, "annotations": annotations, "categories": cats})
    assert len(out["images"]) == split["num_images"] == 99_411 and len(out["annotations"]) == 666_493


# --- through the command line ------------------------------------------------------------------------------

def test_coco_lt_command_writes_the_split_or_names_the_classes(tmp_path, capsys):
    from longtail.cli.main import main

    fake, split = fake_instances(small_split(2))
    (tmp_path / "instances.json").write_text(json.dumps(fake))
    (tmp_path / "list.json").write_text(json.dumps(split))
    out = tmp_path / "coco_lt" / "train.json"
    args = ["detect", "coco-lt", str(tmp_path / "instances.json"), "--list", str(tmp_path / "list.json")]
    assert main([*args, "--out", str(out)]) == 0
    written = json.loads(out.read_text())
    assert len(written["annotations"]) == sum(c["instance_count"] for c in split["categories"])
    assert main([*args, "--out", str(out)]) == 2 and "exists" in capsys.readouterr().err  # never overwritten
    fake["annotations"] = [a for a in fake["annotations"] if a["category_id"] != 90]  # toothbrush's annotations
    (tmp_path / "instances.json").write_text(json.dumps(fake))
    assert main([*args, "--out", str(tmp_path / "other.json")]) == 2
    err = capsys.readouterr().err
    assert "class80 (id 90): 0 kept" in err and not (tmp_path / "other.json").exists()


@pytest.mark.slow
def test_coco_lt_stand_in_trains_every_head_and_reports_ap_bins(tmp_path, capsys):
    """The COCO-LT stand-in (make-data --size coco_lt_ci) through `detect compare`: COCO evaluation with
    AP1..AP4 for the stage-1 detector and decoupled BAGS / BALMS / softmax with repeat-factor sampling."""
    from pathlib import Path

    from longtail.cli.main import main

    fashion_mnist_root_or_skip()  # the stand-in pastes Fashion-MNIST objects
    configs = Path(__file__).resolve().parents[2] / "configs" / "detection"
    assert main(["detect", "make-data", str(tmp_path / "data"), "--size", "coco_lt_ci"]) == 0
    assert "4 / 24 / 32 / 20" in capsys.readouterr().out
    suite = {"stage1": str(configs / "coco_lt_embedded_stage1.yaml"),
             "stage2": {"bags": {"config": str(configs / "coco_lt_embedded_bags.yaml"),
                                 "overrides": ["head_options={bin_edges: [2, 10]}"]},
                        "balms": str(configs / "coco_lt_embedded_balms.yaml"),
                        "softmax_rfs": {"config": str(configs / "coco_lt_embedded_softmax.yaml"),
                                        "overrides": ["repeat_threshold=0.001"]}},
             "seeds": [0], "output_dir": str(tmp_path / "runs"),
             "overrides": [f"{split}_json={tmp_path / 'data' / f'coco_lt_{split}.json'}" for split in ("train", "val", "test")]
             + ["epochs=1", "lr_steps=[]", "warmup_iters=20", "max_val_images=12"]}
    (tmp_path / "suite.yaml").write_text(json.dumps(suite))
    assert main(["detect", "compare", str(tmp_path / "suite.yaml"), "--quiet", "--json-out", str(tmp_path / "t.json")]) == 0
    printed = capsys.readouterr().out
    assert "COCO-style bbox AP on the test split" in printed and "AP4" in printed
    table = json.loads((tmp_path / "t.json").read_text())
    assert set(table["rows"]) == {"softmax (stage 1, 1 ep)", "bags", "balms", "softmax_rfs"}
    for row in table["rows"].values():
        assert {"AP", "AP1", "AP2", "AP3", "AP4"} <= set(row["bbox"])
    metrics = json.loads((tmp_path / "runs" / "balms_s0" / "metrics.json").read_text())
    assert metrics["test"]["bbox"]["APbins"] == pytest.approx(
        np.nanmean([metrics["test"]["bbox"][f"AP{b}"] for b in range(1, 5)]))
    assert len(metrics["class_stats"]["ap_bin_counts"]) == 80
