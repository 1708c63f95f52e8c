"""LVIS evaluation speed, side by side in one run: ``longtail.detection.evaluate_lvis`` (faster-coco-eval,
C++) against the reference Python evaluator (PyPI ``lvis`` 0.5.3) on the same inputs, box and mask AP.

Ground truth: by default the real LVIS v0.5 val annotations of 100 images (1230 classes, 190 of them
with ground truth). With ``--images N``, an LVIS-format val set of N images built from those 100 as
templates (``make_lvis_val``: real boxes, polygons and areas, categories redrawn with the LVIS v0.5
train class frequencies so that every class has ground truth, negative and not-exhaustive lists
redrawn), written to a temporary folder; N = 5000 is the size of LVIS v0.5 val.
Detections: jittered ground truth, wrong classes, false positives, two images over the 300-detection
cut, and with ``--dets-per-image K`` every image topped up to K detections (real detectors emit 300).
Each evaluator starts from the json path and the detection list, so both pay their loading.
The script checks that the nine metrics agree to 1e-4 and prints the median time of each and the ratio.

    .venv/bin/pip install lvis==0.5.3 --no-deps   # the reference, once
    .venv/bin/python benchmarks/lvis_eval_speed.py [--repeats 3]
    .venv/bin/python benchmarks/lvis_eval_speed.py --images 5000 --dets-per-image 300 --iou bbox --repeats 1
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root: references/
from longtail.detection.evaluation import LVIS_METRIC_NAMES, evaluate_lvis  # noqa: E402
from references.lvis_reference import (  # noqa: E402
    LVIS_TRAIN_STATS,
    LVIS_VAL_100,
    import_reference_lvis,
    make_detections,
    make_lvis_val,
    numpy_aliases,
)


def reference(lvis, gt_path: Path, dets: list[dict], iou_type: str) -> dict:
    with numpy_aliases():
        gt = lvis.LVIS(str(gt_path))
        ev = lvis.LVISEval(gt, lvis.LVISResults(gt, dets, max_dets=300), iou_type)
        ev.run()
        return dict(ev.get_results())


def fresh(dets: list[dict]) -> list[dict]:
    """Copies each evaluator may write into (the reference adds ids, areas and box polygons to the
    dicts); the nested bbox and RLE are copied too, cheaper than a deepcopy of a million dicts."""
    return [{**d, "bbox": list(d["bbox"]), **({"segmentation": dict(d["segmentation"])} if "segmentation" in d else {})}
            for d in dets]


def timed(fn, repeats: int, dets: list[dict]) -> tuple[float, dict]:
    times, out = [], None
    for _ in range(repeats):
        arg = fresh(dets)  # outside the clock
        start = time.perf_counter()
        out = fn(arg)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--images", type=int, default=None,
                        help="build a val set of this many images from the 100 real ones (default: the real 100)")
    parser.add_argument("--dets-per-image", type=int, default=None,
                        help="top every image up to this many detections (default: ~25 per image)")
    parser.add_argument("--iou", nargs="+", choices=("bbox", "segm"), default=["bbox", "segm"])
    args = parser.parse_args()
    lvis = import_reference_lvis()
    if lvis is None:
        print("the reference evaluator is not installed: .venv/bin/pip install lvis==0.5.3 --no-deps")
        return 1
    logging.getLogger("lvis").setLevel(logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        gt_path = LVIS_VAL_100
        gt = json.loads(LVIS_VAL_100.read_text())
        if args.images is not None:
            stats = json.loads(LVIS_TRAIN_STATS.read_text())["categories"]
            gt = make_lvis_val(gt, stats, args.images, seed=args.seed)
            gt_path = Path(tmp) / "lvis_val.json"
            gt_path.write_text(json.dumps(gt))
        with_gt = len({a["category_id"] for a in gt["annotations"]})
        print(f"{'LVIS v0.5 val' if args.images is None else 'built from LVIS v0.5 val'}: {len(gt['images'])} images, "
              f"{len(gt['annotations'])} objects, {len(gt['categories'])} classes, {with_gt} with ground truth; "
              f"median of {args.repeats}")
        print(f"{'iou':<5} {'detections':>10} {'lvis 0.5.3 (s)':>15} {'faster-coco-eval (s)':>21} {'speed-up':>9} "
              f"{'max |diff|':>11}", flush=True)
        worst = math.inf
        for iou_type in args.iou:
            dets = make_detections(gt, seed=args.seed, with_masks=iou_type == "segm",
                                   dets_per_image=args.dets_per_image)
            t_ours, ours = timed(lambda d: evaluate_lvis(d, gt_path, iou_type=iou_type), args.repeats, dets)
            t_ref, ref = timed(lambda d: reference(lvis, gt_path, d, iou_type), args.repeats, dets)
            diff = max(abs(ours[m] - ref[m]) for m in LVIS_METRIC_NAMES if not math.isnan(ours[m]))
            assert all(math.isnan(ours[m]) == (ref[m] == -1) for m in LVIS_METRIC_NAMES), (ours, ref)
            worst = min(worst, t_ref / t_ours)
            print(f"{iou_type:<5} {len(dets):>10} {t_ref:>15.3f} {t_ours:>21.3f} {t_ref / t_ours:>8.1f}x {diff:>11.1e}",
                  flush=True)
            if diff > 1e-4:
                print(f"results differ: {ours} vs {ref}")
                return 1
            print(f"      AP {ours['AP']:.4f} APr {ours['APr']:.4f} APc {ours['APc']:.4f} APf {ours['APf']:.4f}")
    print(f"slowest speed-up {worst:.1f}x (target >= 5x)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
