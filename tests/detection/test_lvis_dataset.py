"""LvisDetection on real LVIS annotations and on a generated LVIS-format dataset; the shipped LVIS
category statistics."""

from __future__ import annotations

import copy
import json
import shutil

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from helpers.fashion_mnist import fashion_mnist_root_or_skip
from longtail.detection.lvis import CategoryStats, LvisDetection, collate_detection, load_lvis_category_stats
from longtail.detection.synthetic import make_synthetic_lvis
from references.lvis_reference import LVIS_VAL_100


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    fashion_mnist_root_or_skip()  # the generated images paste Fashion-MNIST objects
    out = tmp_path_factory.mktemp("lvis_syn")
    make_synthetic_lvis(out, size="ci", scale=400, seed=0)
    return out, json.loads((out / "lvis_train.json").read_text())


@pytest.mark.parametrize("version, n, rcf, bins", [("v0.5", 1230, (454, 461, 315), (294, 453, 302, 181)),
                                                    ("v1", 1203, (337, 461, 405), (200, 412, 334, 257))])
def test_shipped_category_statistics(version, n, rcf, bins):
    stats = load_lvis_category_stats(version)
    assert len(stats) == n and list(stats.ids) == sorted(stats.ids)
    assert tuple(len(g) for g in stats.frequency_groups().values()) == rcf
    counts = np.asarray(stats.instance_counts)
    # the BAGS groups: half-open instance-count bins [1,10), [10,100), [100,1000), [1000,inf)
    assert tuple(np.histogram(counts, [1, 10, 100, 1000, np.inf])[0]) == bins
    assert all(f == ("r" if m <= 10 else "c" if m <= 100 else "f")
               for f, m in zip(stats.frequencies, stats.image_counts)), "LVIS frequency rule"


def test_category_stats_errors():
    with pytest.raises(ValueError, match="instance_count"):
        CategoryStats.from_categories([{"id": 1, "image_count": 3}])
    with pytest.raises(ValueError, match="frequency"):
        CategoryStats.from_categories([{"id": 1, "image_count": 3, "instance_count": 4, "frequency": "x"}])
    with pytest.raises(FileNotFoundError, match="v0.5"):
        load_lvis_category_stats("v2")


@pytest.mark.skipif(not LVIS_VAL_100.exists(), reason=f"real LVIS annotations not found at {LVIS_VAL_100}")
def test_real_lvis_v05_annotations():
    ds = LvisDetection(LVIS_VAL_100, "/images/not/here", check_images=False)
    raw = json.loads(LVIS_VAL_100.read_text())
    assert ds.num_classes == 1230 and len(ds) == 100 and ds.skipped_degenerate == 0
    # the json's counts describe these 100 images: counting the annotations gives the same
    counted = LvisDetection(raw, "/images/not/here", check_images=False, counts_from="annotations")
    assert counted.instance_counts == ds.instance_counts and counted.image_counts == ds.image_counts
    assert sum(ds.instance_counts) == len(raw["annotations"])
    assert ds.neg_category_ids[0] == raw["images"][0]["neg_category_ids"]
    assert [len(x) for x in ds.not_exhaustive_category_ids] == [len(im["not_exhaustive_category_ids"]) for im in raw["images"]]
    assert ds.paths[0].name == raw["images"][0]["file_name"], "file_name paths (v0.5)"
    labels = ds.label_to_cat_id
    assert all(labels[ds.cat_id_to_label[c]] == c for c in ds.category_ids)
    with pytest.raises(FileNotFoundError, match="100 of 100 images are missing"):
        ds.check_images()


def test_generated_samples_in_torchvision_format(generated):
    out, data = generated
    ds = LvisDetection(out / "lvis_train.json", out, with_masks=True)
    assert ds.num_annotated_images == len(ds)  # every generated image has objects: both frequency rules agree
    assert ds.num_classes == 120 and len(ds) == len(data["images"])
    image, target = ds[0]
    anns = [a for a in data["annotations"] if a["image_id"] == data["images"][0]["id"]]
    assert image.shape == (3, 128, 128) and image.dtype == torch.float32 and 0 <= image.min() and image.max() <= 1
    assert target["boxes"].dtype == torch.float32 and target["boxes"].shape == (len(anns), 4)
    assert target["labels"].dtype == torch.int64 and (target["labels"] >= 1).all() and (target["labels"] <= 120).all()
    assert target["image_id"] == data["images"][0]["id"]
    x, y, w, h = anns[0]["bbox"]
    assert target["boxes"][0].tolist() == pytest.approx([x, y, x + w, y + h])
    assert target["masks"].shape == (len(anns), 128, 128) and target["masks"].dtype == torch.uint8
    for mask, box, ann in zip(target["masks"], target["boxes"], anns):
        assert mask.sum().item() == pytest.approx(ann["area"])
        ys, xs = torch.nonzero(mask, as_tuple=True)
        assert xs.min() >= box[0] - 1 and xs.max() <= box[2] and ys.min() >= box[1] - 1 and ys.max() <= box[3]
    # the json's class counts are those of its annotations
    counted = LvisDetection(out / "lvis_train.json", out, counts_from="annotations")
    assert counted.instance_counts == ds.instance_counts and counted.image_counts == ds.image_counts
    images, targets = next(iter(DataLoader(ds, batch_size=3, collate_fn=collate_detection)))
    assert len(images) == len(targets) == 3 and "masks" in targets[0]
    factors = ds.repeat_factors(threshold=0.5)
    assert factors.shape == (len(ds),) and (factors >= 1).all() and factors.max() > 1


def test_coco_url_paths_of_lvis_v1_and_coco_2017_names(generated, tmp_path):
    out, data = generated
    v1 = copy.deepcopy(data)
    for im in v1["images"]:  # LVIS v1: no file_name, the split folder and name come from coco_url
        im["coco_url"] = "http://images.cocodataset.org/" + im.pop("file_name")
    ds = LvisDetection(v1, out)
    assert ds.paths[0] == out / "train" / f"{v1['images'][0]['id']:012d}.png"
    # LVIS v0.5 names COCO_val2014_<12 digits>.jpg; the COCO 2017 folders hold <12 digits>.jpg
    shutil.copy(out / data["images"][0]["file_name"], tmp_path / "000000000001.png")
    v05 = {**data, "images": [{**data["images"][0], "file_name": "COCO_val2014_000000000001.png"}],
           "annotations": [a for a in data["annotations"] if a["image_id"] == data["images"][0]["id"]]}
    assert LvisDetection(v05, tmp_path).paths[0] == tmp_path / "000000000001.png"


def test_clear_errors_and_degenerate_boxes(generated, tmp_path):
    out, data = generated
    bad = copy.deepcopy(data)
    bad["annotations"][0]["category_id"] = 999
    bad["annotations"][1]["category_id"] = 998
    with pytest.raises(ValueError, match=r"2 annotation\(s\) name 2 category id\(s\).*\[998, 999\]"):
        LvisDetection(bad, out)
    bad = copy.deepcopy(data)
    bad["annotations"][0]["image_id"] = 10**9
    with pytest.raises(ValueError, match="image id"):
        LvisDetection(bad, out)
    with pytest.raises(ValueError, match="1 duplicate image id"):
        LvisDetection({**data, "images": data["images"] + data["images"][:1]}, out)
    with pytest.raises(FileNotFoundError, match=f"{len(data['images'])} of {len(data['images'])} images are missing"):
        LvisDetection(data, tmp_path)
    degenerate = copy.deepcopy(data)
    degenerate["annotations"][0]["bbox"][2] = 0.0
    degenerate["annotations"][1]["bbox"][3] = -1.0
    with pytest.warns(UserWarning, match="skipped 2 degenerate"):
        ds = LvisDetection(degenerate, out, counts_from="annotations")
    assert ds.skipped_degenerate == 2 and sum(ds.instance_counts) == len(data["annotations"]) - 2
    with pytest.raises(ValueError, match="counts_from"):
        LvisDetection(data, out, counts_from="json ")


@pytest.mark.skipif(not LVIS_VAL_100.exists(), reason=f"real LVIS annotations not found at {LVIS_VAL_100}")
def test_image_frequency_counts_annotated_images_by_default(tmp_path):
    """The official BALMS code divides image_count by the images that have annotations (and detectron2
    computes repeat factors after dropping unannotated images); frequency_images: all keeps every image."""
    from longtail.detection.runner import class_statistics as _class_stats

    raw = json.loads(LVIS_VAL_100.read_text())
    annotated = {a["image_id"] for a in raw["annotations"]}
    extra = [{**raw["images"][0], "id": 10**9 + k} for k in range(20)]  # 20 images without annotations
    ds = LvisDetection({**raw, "images": raw["images"] + extra}, tmp_path, check_images=False)
    assert len(ds) == 120 and ds.num_annotated_images == len(annotated & set(ds.image_ids))
    assert _class_stats(ds)["num_images"] == ds.num_annotated_images
    assert _class_stats(ds, "all")["num_images"] == 120
    with pytest.raises(ValueError, match="frequency_images must be 'annotated'"):
        _class_stats(ds, "every")
    assert (ds.repeat_factors(0.01, count_unannotated=True) >= ds.repeat_factors(0.01)).all()
