"""LVIS evaluation speed, side by side in one run: ``longtail.detection.evaluate_lvis`` (faster-coco-eval,
C++) against the reference Python evaluator (PyPI ``lvis`` 0.5.3) on the same inputs: the real LVIS v0.5
val annotations of 100 images (1230 classes) and generated detections (jittered ground truth, wrong
classes, false positives, two images over the 300-detection cut; ~2,500 detections), box and mask AP.
Each evaluator starts from the json path and the detection list, so both pay their loading.
The script checks that the nine metrics agree to 1e-4 and prints the median time of each and the ratio.

    .venv/bin/pip install lvis==0.5.3 --no-deps   # the reference, once
    .venv/bin/python benchmarks/lvis_eval_speed.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "detection"))
from lvis_reference import LVIS_VAL_100, import_reference_lvis, make_detections, numpy_aliases  # noqa: E402

from longtail.detection.evaluation import METRICS, evaluate_lvis  # noqa: E402


def reference(lvis, gt_path: Path, dets: list[dict], iou_type: str) -> dict:
    with numpy_aliases():
        gt = lvis.LVIS(str(gt_path))
        ev = lvis.LVISEval(gt, lvis.LVISResults(gt, dets, max_dets=300), iou_type)
        ev.run()
        return dict(ev.get_results())


def timed(fn, repeats: int, make_input) -> tuple[float, dict]:
    times, out = [], None
    for _ in range(repeats):
        arg = make_input()  # fresh copies outside the clock: the reference rewrites its inputs
        start = time.perf_counter()
        out = fn(arg)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    lvis = import_reference_lvis()
    if lvis is None:
        print("the reference evaluator is not installed: .venv/bin/pip install lvis==0.5.3 --no-deps")
        return 1
    import logging

    logging.getLogger("lvis").setLevel(logging.ERROR)
    gt = json.loads(LVIS_VAL_100.read_text())
    print(f"LVIS v0.5 val, {len(gt['images'])} images, {len(gt['annotations'])} objects, {len(gt['categories'])} classes; "
          f"median of {args.repeats}")
    print(f"{'iou':<5} {'detections':>10} {'lvis 0.5.3 (s)':>15} {'faster-coco-eval (s)':>21} {'speed-up':>9} {'max |diff|':>11}")
    worst = math.inf
    for iou_type in ("bbox", "segm"):
        dets = make_detections(gt, seed=args.seed, with_masks=iou_type == "segm")
        t_ref, ref = timed(lambda d: reference(lvis, LVIS_VAL_100, d, iou_type), args.repeats,
                           lambda: copy.deepcopy(dets))
        t_ours, ours = timed(lambda d: evaluate_lvis(d, LVIS_VAL_100, iou_type=iou_type), args.repeats,
                             lambda: copy.deepcopy(dets))
        diff = max(abs(ours[m] - ref[m]) for m in METRICS if not math.isnan(ours[m]))
        assert all(math.isnan(ours[m]) == (ref[m] == -1) for m in METRICS), (ours, ref)
        worst = min(worst, t_ref / t_ours)
        print(f"{iou_type:<5} {len(dets):>10} {t_ref:>15.3f} {t_ours:>21.3f} {t_ref / t_ours:>8.1f}x {diff:>11.1e}")
        if diff > 1e-4:
            print(f"results differ: {ours} vs {ref}")
            return 1
    print(f"slowest speed-up {worst:.1f}x (target >= 5x); AP {ours['AP']:.4f} segm")
    return 0


if __name__ == "__main__":
    sys.exit(main())
