"""The reference LVIS evaluation (PyPI ``lvis`` 0.5.3, the LVIS authors' evaluator) and generated
detections on real LVIS annotations; shared by tests/detection/test_lvis_eval.py and
benchmarks/lvis_eval_speed.py.

``lvis`` 0.5.3 uses ``np.float`` (removed in numpy 1.24) and imports ``cv2`` for drawing only: both
are shimmed here, for the reference run only, without touching the library under test.
"""

from __future__ import annotations

import contextlib
import copy
import importlib
import json
import os
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

LVIS_VAL_100 = Path(os.environ.get("LONGTAIL_SHARED_DATA", "/work/shared/data")) / "lvis" / "lvis_v0.5_val_100.json"
_REMOVED_NUMPY_ALIASES = {"float": float, "int": int, "bool": bool, "object": object, "complex": complex}


@contextlib.contextmanager
def numpy_aliases():
    """Restore the numpy aliases lvis 0.5.3 uses while the reference runs, then remove them again."""
    added = [name for name in _REMOVED_NUMPY_ALIASES if name not in np.__dict__]
    for name in added:
        setattr(np, name, _REMOVED_NUMPY_ALIASES[name])
    try:
        yield
    finally:
        for name in added:
            delattr(np, name)


def import_reference_lvis():
    """The ``lvis`` module, or None when it is not installed (``pip install lvis==0.5.3 --no-deps``)."""
    stub = False
    try:
        importlib.import_module("cv2")
    except ImportError:  # lvis/vis.py imports cv2 at module level; evaluation never calls it
        sys.modules["cv2"] = types.ModuleType("cv2")
        stub = True
    try:
        with numpy_aliases():
            return importlib.import_module("lvis")
    except ImportError:
        return None
    finally:
        if stub:
            sys.modules.pop("cv2", None)


def reference_lvis_eval(lvis, gt: dict, detections: list[dict], iou_type: str, max_dets: int = 300) -> dict:
    """AP, AP50, ... APf from the reference LVISEval (fresh copies: it rewrites its inputs)."""
    with tempfile.TemporaryDirectory() as tmp, numpy_aliases():
        path = Path(tmp) / "gt.json"
        path.write_text(json.dumps(gt))
        lvis_gt = lvis.LVIS(str(path))
        lvis_dt = lvis.LVISResults(lvis_gt, copy.deepcopy(detections), max_dets=max_dets)
        ev = lvis.LVISEval(lvis_gt, lvis_dt, iou_type)
        ev.params.max_dets = max_dets
        ev.run()
        return {k: float(v) for k, v in ev.get_results().items()}


def make_detections(gt: dict, *, seed: int = 0, with_masks: bool = False, crowded_images: int = 2) -> list[dict]:
    """Detections around real ground truth: each object detected 0-2 times with jittered boxes (and
    masks: the polygon moved by the same jitter), 15% with a wrong category, plus false positives per
    image in annotated, negative, not-exhaustive and unverified categories; ``crowded_images`` images
    get 400 extra detections so the per-image top-300 cut matters. Scores are uniform random."""
    from faster_coco_eval.core import mask as mask_utils

    rng = np.random.default_rng(seed)
    images = {im["id"]: im for im in gt["images"]}
    cat_ids = [c["id"] for c in gt["categories"]]
    present: dict[int, list[int]] = {i: [] for i in images}
    for a in gt["annotations"]:
        present[a["image_id"]].append(a["category_id"])
    dets: list[dict] = []

    def add(image_id: int, cat: int, box: list[float], polygon: list[float] | None) -> None:
        im = images[image_id]
        d = {"image_id": image_id, "category_id": int(cat), "bbox": [float(v) for v in box],
             "score": float(rng.random())}
        if with_masks:
            x, y, w, h = box
            poly = polygon if polygon is not None else [x, y, x + w, y, x + w, y + h, x, y + h]
            rle = mask_utils.merge(mask_utils.frPyObjects([poly], im["height"], im["width"]))
            rle["counts"] = rle["counts"].decode("ascii")
            d["segmentation"] = rle
            d["bbox"] = [float(v) for v in mask_utils.toBbox(rle)]
        dets.append(d)

    for a in gt["annotations"]:
        x, y, w, h = a["bbox"]
        for _ in range(int(rng.integers(0, 3))):
            dx, dy = rng.normal(0, 0.08, 2) * [w, h]
            sw, sh = np.exp(rng.normal(0, 0.1, 2))
            cat = a["category_id"] if rng.random() > 0.15 else int(rng.choice(cat_ids))
            polygon = None
            if with_masks and isinstance(a["segmentation"], list) and len(a["segmentation"][0]) >= 6:
                p = np.asarray(a["segmentation"][0], dtype=float).reshape(-1, 2)
                p = (p - [x, y]) * [sw, sh] + [x + dx, y + dy]
                polygon = p.ravel().tolist()
            add(a["image_id"], cat, [x + dx, y + dy, max(w * sw, 1.0), max(h * sh, 1.0)], polygon)

    def random_box(im: dict) -> list[float]:
        w, h = rng.uniform(4, im["width"] / 2), rng.uniform(4, im["height"] / 2)
        return [rng.uniform(0, im["width"] - w), rng.uniform(0, im["height"] - h), w, h]

    for k, (image_id, im) in enumerate(images.items()):
        pools = [present[image_id], im.get("neg_category_ids", []), im.get("not_exhaustive_category_ids", []), cat_ids]
        n_fp = int(rng.integers(3, 12)) + (400 if k < crowded_images else 0)
        for _ in range(n_fp):
            pool = [p for p in pools if p][int(rng.integers(0, sum(1 for p in pools if p)))]
            add(image_id, int(rng.choice(pool)), random_box(im), None)
    return dets
