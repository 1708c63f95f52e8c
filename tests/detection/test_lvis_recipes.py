"""The shipped LVIS R50-FPN recipes (configs/detection/lvis_*.yaml) run through the real CLI: each
config loads, and stage 1 then stage 2 train and evaluate on a tiny LVIS-format set that carries the
real LVIS category list and train statistics (1230 classes for v0.5, 1203 for v1), on the CPU, with the
recipe's model (Mask R-CNN, ResNet-50-FPN, the recipe's head) at a small image size. Full-scale runs need
a GPU and the LVIS images; this catches a broken key, head or stage-2 hand-over before anyone gets there."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from longtail.config import DetectConfig, load_config
from longtail.workflows.detect import run_detection_training

REPO = Path(__file__).resolve().parents[2]
RECIPES = sorted((REPO / "configs" / "detection").glob("lvis_*.yaml"))
STATS = REPO / "src" / "longtail" / "resources" / "lvis"


def test_every_recipe_loads_and_names_its_stage_one():
    assert len(RECIPES) >= 7
    names = {p.stem for p in RECIPES}
    for path in RECIPES:
        cfg = load_config(DetectConfig, path)
        assert cfg.backbone == "resnet50_fpn" and cfg.arch == "maskrcnn", path
        if cfg.init_from is not None:  # a stage-2 recipe starts from a stage-1 recipe of the same LVIS version
            assert Path(cfg.init_from).name in names, (path, cfg.init_from)


def _tiny_lvis(folder: Path, version: str) -> dict[str, Path]:
    """Two 96 x 96 images with a few boxes of classes from every frequency, the real category list of
    ``version`` with its train instance counts (BAGS groups by them) and frequencies; val = test = the
    same two images. Image counts become 1 of the 2 images: the sigmoid Balanced Softmax prior needs
    image_count <= number of images."""
    stats_file = next(STATS.glob(f"lvis_{version}_train_category_stats.json"))
    categories = [{**c, "image_count": 1} for c in json.loads(stats_file.read_text())["categories"]]
    by_freq = {f: [c["id"] for c in categories if c["frequency"] == f] for f in "rcf"}
    rng = np.random.default_rng(0)
    images, anns = [], []
    for k in range(2):
        name = f"img{k}.png"
        Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)).save(folder / name)
        images.append({"id": k + 1, "file_name": name, "height": 96, "width": 96, "neg_category_ids": [],
                       "not_exhaustive_category_ids": []})
        for j, freq in enumerate("rcf"):
            x, y = 10 + 25 * j, 10 + 20 * k
            anns.append({"id": len(anns) + 1, "image_id": k + 1, "category_id": by_freq[freq][k], "area": 400.0,
                         "bbox": [x, y, 20, 20], "segmentation": [[x, y, x + 20, y, x + 20, y + 20, x, y + 20]]})
    train = folder / "train.json"
    train.write_text(json.dumps({"images": images, "annotations": anns, "categories": categories}))
    return {"train": train, "val": train}


@pytest.mark.slow
@pytest.mark.parametrize("version, stage1, stage2", [("v0.5", "lvis_v0.5_stage1_sigmoid_rfs", "lvis_v0.5_balms"),
                                                     ("v1", "lvis_v1_stage1_softmax", "lvis_v1_bags")])
def test_recipe_pair_trains_and_evaluates(tmp_path, version, stage1, stage2):
    torch.set_num_threads(1)
    data = _tiny_lvis(tmp_path, version)
    small = ["device=cpu", "num_workers=0", "backbone_weights_path=null", "epochs=1", "batch_size=1",
             "warmup_iters=1", "lr_steps=[]", "eval_batch_size=2", f"output_dir={tmp_path / 'runs'}",
             f"train_json={data['train']}", f"val_json={data['val']}", f"test_json={data['val']}",
             f"image_root={tmp_path}", "detector_options={min_size: 96, max_size: 96, box_detections_per_img: 10, "
             "box_score_thresh: 0.0001, rpn_pre_nms_top_n_train: 200, rpn_post_nms_top_n_train: 100, "
             "rpn_pre_nms_top_n_test: 100, rpn_post_nms_top_n_test: 50, box_batch_size_per_image: 64}"]
    first = run_detection_training(load_config(DetectConfig, REPO / "configs/detection" / f"{stage1}.yaml",
                                               small + [f"name={stage1}"]), quiet=True)
    second = run_detection_training(load_config(DetectConfig, REPO / "configs/detection" / f"{stage2}.yaml",
                                                small + [f"name={stage2}", f"init_from={tmp_path / 'runs' / stage1}"]),
                                    quiet=True)
    num_classes = 1230 if version == "v0.5" else 1203
    for result in (first, second):
        assert len(result["class_stats"]["instance_counts"]) == num_classes
        assert all(np.isfinite(h["loss"]) for h in result["history"])
        assert set(result["val"]["bbox"]) >= {"AP", "APr", "APc", "APf"} and "segm" in result["test"]
    assert second["decoupled"] and not first["decoupled"]
    if second["head"] == "balms":
        assert len(second["reweighter"]) == num_classes
    logits = torch.load(tmp_path / "runs" / stage2 / "model.pt", weights_only=True)["roi_heads.box_predictor.cls_score.weight"]
    expected = {"bags": {"v0.5": 1236, "v1": 1209}[version], "balms": num_classes}[second["head"]]
    assert logits.shape[0] == expected  # BAGS: C + 1 + 4 groups from the real instance counts
