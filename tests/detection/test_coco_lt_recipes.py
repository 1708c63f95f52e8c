"""The COCO-LT recipes (configs/detection/coco_lt_*_r50_fpn_1x.yaml): every one loads, a stage-2 recipe starts
from a stage-1 recipe, and a stage-1 / stage-2 pair trains and evaluates (COCO protocol, AP1..AP4) on a tiny
COCO-format set with the real 80 COCO-LT categories and counts, crowd region included."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from longtail.config import DetectConfig, load_config
from longtail.detection.coco import load_coco_lt_split
from longtail.workflows.detect import run_detection_training

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO / "configs" / "detection").glob("coco_lt_*_r50_fpn_1x.yaml"))
COCO_IDS = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]


def test_every_recipe_loads_and_names_its_stage_one():
    assert len(RECIPES) >= 6
    names = {p.stem for p in RECIPES}
    for path in RECIPES:
        cfg = load_config(DetectConfig, path)
        assert cfg.dataset_format == "coco" and cfg.backbone == "resnet50_fpn" and cfg.arch == "maskrcnn", path
        assert cfg.epochs <= 12, path  # 1x
        if cfg.init_from is not None:
            assert Path(cfg.init_from).name in names, (path, cfg.init_from)
        if cfg.head == "bags":  # the groups at COCO-LT's AP-bin edges: none empty
            assert cfg.head_options["bin_edges"] == [20, 400, 8000]


def _tiny_coco_lt(folder: Path) -> Path:
    split = load_coco_lt_split()
    categories = [{"id": COCO_IDS[c["label"] - 1], "name": f"class{c['label']}", "instance_count": c["instance_count"],
                   "image_count": 1} for c in split["categories"]]
    rng = np.random.default_rng(0)
    images, anns = [], []
    for k in range(2):
        name = f"img{k}.png"
        Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(folder / name)
        images.append({"id": k + 1, "file_name": name, "height": 96, "width": 96})
        for j, label in enumerate((11, 2, 1)):  # an AP1, an AP2 and an AP4 class
            x, y = 10 + 25 * j, 10 + 20 * k
            anns.append({"id": len(anns) + 1, "image_id": k + 1, "category_id": COCO_IDS[label - 1], "area": 400.0,
                         "bbox": [x, y, 20, 20], "segmentation": [[x, y, x + 20, y, x + 20, y + 20, x, y + 20]],
                         "iscrowd": 0})
    anns.append({"id": len(anns) + 1, "image_id": 1, "category_id": 1, "area": 900.0, "bbox": [50, 50, 30, 30],
                 "segmentation": [[50, 50, 80, 50, 80, 80, 50, 80]], "iscrowd": 1})
    path = folder / "coco_lt_tiny.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": categories}))
    return path


@pytest.mark.slow
def test_recipe_pair_trains_and_evaluates(tmp_path):
    torch.set_num_threads(1)
    data = _tiny_coco_lt(tmp_path)
    small = ["device=cpu", "num_workers=0", "backbone_weights_path=null", "epochs=1", "batch_size=1",
             "warmup_iters=1", "lr_steps=[]", "eval_batch_size=2", f"output_dir={tmp_path / 'runs'}",
             f"train_json={data}", f"val_json={data}", f"test_json={data}", f"image_root={tmp_path}",
             "detector_options={min_size: 96, max_size: 96, box_detections_per_img: 10, box_score_thresh: 0.0001, "
             "rpn_pre_nms_top_n_train: 200, rpn_post_nms_top_n_train: 100, rpn_pre_nms_top_n_test: 100, "
             "rpn_post_nms_top_n_test: 50, box_batch_size_per_image: 64}"]
    stage1, stage2 = "coco_lt_stage1_softmax_r50_fpn_1x", "coco_lt_bags_r50_fpn_1x"
    first = run_detection_training(load_config(DetectConfig, REPO / "configs/detection" / f"{stage1}.yaml",
                                               small + [f"name={stage1}"]), quiet=True)
    second = run_detection_training(load_config(DetectConfig, REPO / "configs/detection" / f"{stage2}.yaml",
                                                small + [f"name={stage2}", f"init_from={tmp_path / 'runs' / stage1}"]),
                                    quiet=True)
    for result in (first, second):
        assert len(result["class_stats"]["instance_counts"]) == 80
        assert all(np.isfinite(h["loss"]) for h in result["history"])
        assert {"AP", "AP1", "AP2", "AP3", "AP4", "APbins"} <= set(result["val"]["bbox"]) and "segm" in result["test"]
        assert "APr" not in result["val"]["bbox"]  # COCO protocol, not LVIS's
    logits = torch.load(tmp_path / "runs" / stage2 / "model.pt", weights_only=True)["roi_heads.box_predictor.cls_score.weight"]
    assert logits.shape[0] == 80 + 2 + 4  # BAGS: C classes, bg + fg of group 0, an "others" per group (4 groups)
