"""The reference LVIS evaluation (PyPI ``lvis`` 0.5.3, the LVIS authors' evaluator) and generated
detections on real LVIS annotations; what tests/detection/test_lvis_eval.py and
benchmarks/lvis_eval_speed.py compare longtail's evaluator against (so neither imports the other).

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

# Real LVIS annotations of 100 val images (CC BY 4.0), shipped gzipped in references/data/ (PROVENANCE.md) and
# unpacked once per machine into the temp folder; LONGTAIL_LVIS_VAL_100 points at another copy.


def _unpacked_val_100() -> Path:
    import gzip

    packed = Path(__file__).with_name("data") / "lvis_v0.5_val_100.json.gz"
    if not packed.exists():
        return packed
    target = Path(tempfile.gettempdir()) / "longtail_tests" / f"lvis_v0.5_val_100.{packed.stat().st_size}.json"
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_bytes(gzip.decompress(packed.read_bytes()))
        os.replace(tmp, target)  # atomic: parallel test processes never read half a file
    return target


LVIS_VAL_100 = Path(os.environ["LONGTAIL_LVIS_VAL_100"]) if "LONGTAIL_LVIS_VAL_100" in os.environ else _unpacked_val_100()
# the LVIS v0.5 train statistics ship with the package
LVIS_TRAIN_STATS = (Path(__file__).resolve().parents[1] / "src" / "longtail" / "resources" / "lvis"
                    / "lvis_v0.5_train_category_stats.json")
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


def make_lvis_val(templates: dict, train_stats: list[dict], n_images: int, *, seed: int = 0) -> dict:
    """An LVIS-format val set of ``n_images`` images, each a copy of a real template image (size,
    boxes, polygons, areas) whose categories are redrawn: the template's distinct categories map to
    distinct new ones drawn with probability proportional to the LVIS train ``image_count``, except
    that one randomly chosen (image, category) slot per class is reserved for that class, so every
    class has ground truth once there are more slots than classes (~3 per image: from ~420 images).
    ``neg_category_ids`` are redrawn likewise among absent classes, as many as the template has;
    ``not_exhaustive_category_ids`` follow the mapping (in LVIS they are annotated classes).
    Categories are the templates' (real names, frequency r/c/f) with this set's counts."""
    rng = np.random.default_rng(seed)
    cat_ids = np.array([c["id"] for c in templates["categories"]])
    count = {c["id"]: c["image_count"] for c in train_stats}
    weight = np.array([count[c] for c in cat_ids], dtype=float)
    by_image: dict[int, list[dict]] = {im["id"]: [] for im in templates["images"]}
    for a in templates["annotations"]:
        by_image[a["image_id"]].append(a)
    order = rng.permutation(len(templates["images"]))
    sources = [templates["images"][order[i % len(order)]] for i in range(n_images)]
    slot_cats = [list(dict.fromkeys(a["category_id"] for a in by_image[t["id"]])) for t in sources]
    n_slots = sum(map(len, slot_cats))
    reserved = dict(zip(rng.choice(n_slots, min(n_slots, len(cat_ids)), replace=False).tolist(),
                        rng.permutation(cat_ids).tolist()))
    images, annotations, slot = [], [], 0
    for i, (template, old_cats) in enumerate(zip(sources, slot_cats)):
        mapping = {old: reserved.get(slot + k) for k, old in enumerate(old_cats)}
        slot += len(old_cats)
        free = ~np.isin(cat_ids, [c for c in mapping.values() if c is not None])
        drawn = iter(_draw(rng, cat_ids[free], weight[free], sum(c is None for c in mapping.values())))
        mapping = {old: int(new) if new is not None else int(next(drawn)) for old, new in mapping.items()}
        absent = ~np.isin(cat_ids, list(mapping.values()))
        neg = _draw(rng, cat_ids[absent], weight[absent], len(template.get("neg_category_ids", [])))
        image_id = i + 1
        not_exhaustive = [mapping[c] for c in template.get("not_exhaustive_category_ids", [])]
        images.append({**template, "id": image_id, "file_name": f"{image_id:012d}.jpg",
                       "neg_category_ids": [int(c) for c in neg], "not_exhaustive_category_ids": not_exhaustive})
        for a in by_image[template["id"]]:
            annotations.append({**a, "id": len(annotations) + 1, "image_id": image_id,
                                "category_id": mapping[a["category_id"]]})
    n_img: dict[int, set] = {int(c): set() for c in cat_ids}
    n_ann = dict.fromkeys(n_img, 0)
    for a in annotations:
        n_img[a["category_id"]].add(a["image_id"])
        n_ann[a["category_id"]] += 1
    categories = [{**c, "image_count": len(n_img[c["id"]]), "instance_count": n_ann[c["id"]]}
                  for c in templates["categories"]]
    return {"info": {"description": f"{n_images} images built from LVIS v0.5 val templates, seed {seed}"},
            "images": images, "annotations": annotations, "categories": categories}


def _draw(rng: np.random.Generator, ids: np.ndarray, weight: np.ndarray, k: int) -> np.ndarray:
    """``k`` distinct ids drawn with probability proportional to ``weight``."""
    return rng.choice(ids, size=k, replace=False, p=weight / weight.sum()) if k else ids[:0]


def make_detections(gt: dict, *, seed: int = 0, with_masks: bool = False, crowded_images: int = 2,
                    dets_per_image: int | None = None) -> list[dict]:
    """Detections around real ground truth: each object detected 0-2 times with jittered boxes (and
    masks: the polygon moved by the same jitter), 15% with a wrong category, plus false positives per
    image in annotated, negative, not-exhaustive and unverified categories; ``crowded_images`` images
    get 400 extra detections so the per-image top-300 cut matters. Scores are uniform random.
    With ``dets_per_image``, every image is then topped up with false positives (random boxes, the
    same category pools) to that many detections, as a detector emitting its top-k per image does."""
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
    if dets_per_image is not None:
        dets += _top_up(dets, images, pools_of={i: [present[i], im.get("neg_category_ids", []),
                                                    im.get("not_exhaustive_category_ids", []), cat_ids]
                                                for i, im in images.items()},
                        dets_per_image=dets_per_image, rng=rng, with_masks=with_masks)
    return dets


def _top_up(dets: list[dict], images: dict, *, pools_of: dict, dets_per_image: int, rng: np.random.Generator,
            with_masks: bool) -> list[dict]:
    """False positives bringing each image to ``dets_per_image`` detections, drawn a whole image at a
    time (a million detections one by one would take minutes): a category pool per detection, a
    category in it, a random box (and its box mask)."""
    from faster_coco_eval.core import mask as mask_utils

    have = dict.fromkeys(images, 0)
    for d in dets:
        have[d["image_id"]] += 1
    extra: list[dict] = []
    for image_id, im in images.items():
        n = dets_per_image - have[image_id]
        if n <= 0:
            continue
        pools = [p for p in pools_of[image_id] if len(p)]
        which = rng.integers(0, len(pools), n)
        pick = rng.random(n)
        cats = [int(pools[w][int(u * len(pools[w]))]) for w, u in zip(which, pick)]
        size = np.array([im["width"], im["height"]], dtype=float)
        wh = 4 + rng.random((n, 2)) * (size / 2 - 4)  # as random_box: 4 px to half the image
        xy = rng.random((n, 2)) * (size - wh)
        boxes = np.concatenate([xy, wh], axis=1)
        scores = rng.random(n)
        rles = mask_utils.frPyObjects(boxes, im["height"], im["width"]) if with_masks else None
        for k in range(n):
            d = {"image_id": image_id, "category_id": cats[k], "bbox": boxes[k].tolist(), "score": float(scores[k])}
            if rles is not None:
                rles[k]["counts"] = rles[k]["counts"].decode("ascii")
                d["segmentation"] = rles[k]
                d["bbox"] = [float(v) for v in mask_utils.toBbox(rles[k])]
            extra.append(d)
    return extra
