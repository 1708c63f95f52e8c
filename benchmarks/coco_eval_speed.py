"""COCO evaluation speed, side by side in one run: ``longtail.detection.evaluate_coco`` (faster-coco-eval, C++,
with AP1..AP4) against pycocotools' COCOeval on the same ground truth and detections, box (or mask) AP.

Ground truth: the 100 real COCO images of references/data (LVIS v0.5 val annotations, as a COCO-format
json: real boxes, polygons and areas; the LVIS categories folded onto 80 ids; 1% of the objects made
crowd regions), repeated under new image ids to ``--images`` images (5,000 = the size of COCO val2017).
Detections: references.lvis_reference.make_detections (jittered ground truth, wrong classes, false
positives), every image topped up to ``--dets-per-image`` (100, what a COCO detector emits).
Each evaluator starts from the ground-truth dict and the detection list. The script checks that AP, AP50,
AP75, APs, APm, APl agree to 1e-9 and prints the median time of each and the ratio.

    .venv/bin/python benchmarks/coco_eval_speed.py                       # 5,000 images x 100 detections
    .venv/bin/python benchmarks/coco_eval_speed.py --images 500 --repeats 3
"""

from __future__ import annotations

import argparse
import copy
import json
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: references/
from longtail.detection.coco import evaluate_coco  # noqa: E402
from references.lvis_reference import LVIS_VAL_100, make_detections  # noqa: E402

NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def coco_val(n_images: int, seed: int = 0) -> dict:
    lvis = json.loads(LVIS_VAL_100.read_text())
    rng = random.Random(seed)
    base = [{k: im[k] for k in ("id", "width", "height")} for im in lvis["images"]]
    images, annotations = [], []
    for copy_index in range(-(-n_images // len(base))):
        for im in base:
            if len(images) == n_images:
                break
            new_id = copy_index * 10**7 + im["id"]
            images.append({**im, "id": new_id})
            for a in lvis["annotations"]:
                if a["image_id"] == im["id"]:
                    annotations.append({"id": len(annotations) + 1, "image_id": new_id,
                                        "category_id": 1 + a["category_id"] % 80, "bbox": a["bbox"], "area": a["area"],
                                        "segmentation": a["segmentation"], "iscrowd": int(rng.random() < 0.01)})
    categories = [{"id": k, "name": f"class{k}"} for k in range(1, 81)]
    return {"images": images, "annotations": annotations, "categories": categories}


def pycocotools_eval(gt: dict, dets: list[dict], iou_type: str) -> dict:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    coco_gt = COCO()
    coco_gt.dataset = gt
    coco_gt.createIndex()
    ev = COCOeval(coco_gt, coco_gt.loadRes(dets), iou_type)
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    return {name: float(ev.stats[k]) for k, name in enumerate(NAMES)}


def timed(fn, gt: dict, dets: list[dict], repeats: int) -> tuple[float, dict]:
    times, out = [], None
    for _ in range(repeats):
        g, d = copy.deepcopy(gt), copy.deepcopy(dets)  # both evaluators write into their inputs
        start = time.perf_counter()
        out = fn(g, d)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=5000)
    p.add_argument("--dets-per-image", type=int, default=100)
    p.add_argument("--iou", choices=("bbox", "segm"), default="bbox")
    p.add_argument("--repeats", type=int, default=1)
    args = p.parse_args()
    gt = coco_val(args.images)
    dets = make_detections(gt, seed=1, with_masks=args.iou == "segm", crowded_images=0,
                           dets_per_image=args.dets_per_image)
    counts = {k: 10 * k for k in range(1, 81)}  # any training counts: AP1..AP4 cost the same
    ours_s, ours = timed(lambda g, d: evaluate_coco(d, g, iou_type=args.iou, instance_counts=counts), gt, dets, args.repeats)
    ref_s, ref = timed(lambda g, d: pycocotools_eval(g, d, args.iou), gt, dets, args.repeats)
    worst = max(abs(ours[k] - ref[k]) for k in NAMES)
    assert worst < 1e-9, f"the evaluators disagree by {worst}"
    print(f"COCO {args.iou} evaluation, {len(gt['images'])} images, {len(gt['annotations'])} objects, {len(dets)} "
          f"detections ({args.dets_per_image} per image), median of {args.repeats}:")
    print(f"  longtail.evaluate_coco (faster-coco-eval, + AP1..AP4) {ours_s:8.2f} s")
    print(f"  pycocotools COCOeval                                  {ref_s:8.2f} s")
    print(f"  speed-up {ref_s / ours_s:.1f}x; AP {100 * ours['AP']:.2f} (max difference {worst:.1e})")


if __name__ == "__main__":
    main()
