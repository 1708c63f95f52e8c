"""An embedded long-tailed detection benchmark in LVIS format, built offline from real images.

Each object is a real Fashion-MNIST item (train items for the train split; test items for val and
test, where the test split never reuses an item that val used),
tinted and scaled, pasted without overlap on a 128 x 128 canvas with a smooth random background.
A class is (item, tint, size band): 10 x 6 x 2 = 120 classes. Its mask is the polygon traced around
the item's silhouette (holes filled), and the pasted pixels are exactly that polygon's raster.

Per-class training instance counts follow the real LVIS v1 train profile: the 1203 sorted instance
counts are read at the C quantile midpoints, divided by ``scale`` and rounded (at least 1), then dealt
to the classes in a seeded random order. Val has ``val_per_class`` instances of every class, test
``test_per_class``: val is for choosing settings (learning rates), test for reporting.
Categories carry LVIS fields (``frequency`` r/c/f from the train image count, ``image_count``,
``instance_count``); images carry ``neg_category_ids`` (a random ``neg_fraction`` of the absent
classes, as LVIS verifies only some absences) and ``not_exhaustive_category_ids`` (present classes
marked with probability ``not_exhaustive_prob``; their instances are still all annotated).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from ..data import sources
from .lvis import FREQUENCIES, frequency_of, load_lvis_category_stats

TINTS = {"red": (1.0, 0.25, 0.2), "green": (0.25, 0.95, 0.3), "blue": (0.3, 0.45, 1.0),
         "yellow": (1.0, 0.9, 0.2), "cyan": (0.2, 0.9, 1.0), "magenta": (1.0, 0.3, 0.9)}
SIZE_BANDS = {"small": (14, 22), "large": (30, 44)}  # side of the pasted item in pixels; a gap between bands
BAGS_BIN_EDGES = (10, 100, 1000)


@dataclass(frozen=True)
class SyntheticLvisConfig:
    """Generator settings; see :data:`PRESETS`."""

    scale: float = 10.0  # LVIS v1 instance counts are divided by this
    val_per_class: int = 6
    test_per_class: int = 6
    canvas: int = 128
    objects_per_image: tuple[int, int] = (2, 7)  # inclusive range of objects tried per image
    neg_fraction: float = 0.2
    not_exhaustive_prob: float = 0.03
    image_format: str = "png"
    profile: str = "lvis"  # lvis: 120 classes, LVIS v1 counts | coco_lt: 80 classes, COCO-LT counts (COCO format)


PRESETS = {
    # ~12,000 train instances; all four BAGS bins (10, 100, 1000) and all r/c/f groups populated
    "default": SyntheticLvisConfig(),
    # tiny, for CI: ~2,000 train instances; the [1000, inf) BAGS bin is empty (see docs/lvis.md)
    "ci": SyntheticLvisConfig(scale=60.0, val_per_class=2, test_per_class=2),
    # COCO-LT stand-in (docs/detection.md): 80 classes, the COCO-LT counts / 100 (~6,700 train instances)
    "coco_lt": SyntheticLvisConfig(scale=100.0, val_per_class=5, test_per_class=5, profile="coco_lt"),
    # tiny COCO-LT stand-in, for CI: the counts / 800 (~1,100 train instances)
    "coco_lt_ci": SyntheticLvisConfig(scale=800.0, val_per_class=2, test_per_class=2, profile="coco_lt"),
}
PROFILES = ("lvis", "coco_lt")


def lvis_profile_counts(num_classes: int, scale: float, version: str = "v1") -> np.ndarray:
    """(num_classes,) int64 instance counts, descending: the real LVIS train counts sorted, read at
    the quantile midpoints (k + 0.5) / num_classes, divided by ``scale``, rounded, at least 1."""
    if num_classes < 1 or scale <= 0:
        raise ValueError(f"need num_classes >= 1 and scale > 0, got {num_classes=}, {scale=}")
    real = np.sort(np.asarray(load_lvis_category_stats(version).instance_counts))[::-1]
    pos = np.minimum(((np.arange(num_classes) + 0.5) / num_classes * len(real)).astype(int), len(real) - 1)
    return np.maximum(1, np.round(real[pos] / scale)).astype(np.int64)


def coco_lt_profile_counts(scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(80,) scaled and (80,) real COCO-LT training instance counts, in COCO-LT label order: the real
    counts divided by ``scale``, rounded, at least 1."""
    from .coco import load_coco_lt_split

    if scale <= 0:
        raise ValueError(f"need scale > 0, got {scale}")
    real = np.asarray([c["instance_count"] for c in sorted(load_coco_lt_split()["categories"], key=lambda c: c["label"])])
    return np.maximum(1, np.round(real / scale)).astype(np.int64), real


def class_table() -> list[tuple[int, str, str]]:
    """(Fashion-MNIST item, tint, size band) of each class, in category-id order (id = position + 1)."""
    return [(item, tint, size) for item in range(10) for tint in TINTS for size in SIZE_BANDS]


def _simplify(points: np.ndarray, eps: float) -> np.ndarray:
    """Ramer-Douglas-Peucker on an open polyline (N, 2): keep points farther than eps from the chord."""
    keep = np.zeros(len(points), dtype=bool)
    keep[[0, -1]] = True
    stack = [(0, len(points) - 1)]
    while stack:
        a, b = stack.pop()
        if b - a < 2:
            continue
        chord, rel = points[b] - points[a], points[a + 1:b] - points[a]
        norm = np.hypot(*chord)
        dist = np.abs(chord[0] * rel[:, 1] - chord[1] * rel[:, 0]) / norm if norm > 0 else np.hypot(rel[:, 0], rel[:, 1])
        k = int(np.argmax(dist))
        if dist[k] > eps:
            keep[a + 1 + k] = True
            stack += [(a, a + 1 + k), (a + 1 + k, b)]
    return points[keep]


def silhouette_polygons(gray: np.ndarray, level: float = 0.08, eps: float = 0.35) -> list[np.ndarray]:
    """Outer boundary loops (K, 2) in pixel coordinates (x, y; pixel centres at +0.5) of ``gray`` (H, W)
    in [0, 1] at ``level``; holes are dropped, so the polygons' union is the filled silhouette."""
    import contourpy

    padded = np.pad(gray, 1)  # closes the loops of items touching the border
    loops = contourpy.contour_generator(z=padded, line_type="Separate").lines(level)
    polygons = []
    for loop in loops:
        x, y = loop[:, 0], loop[:, 1]
        if 0.5 * np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y) < 2.0:  # a hole (negative) or a speck
            continue
        simple = _simplify(loop[:-1], eps)
        if len(simple) >= 3:
            polygons.append(simple - 1 + 0.5)  # undo the pad; index i is the pixel centre i + 0.5
    return polygons


class _Painter:
    """Pastes items on canvases and writes LVIS image + annotation records."""

    def __init__(self, cfg: SyntheticLvisConfig, items: np.ndarray, item_labels: np.ndarray,
                 rng: np.random.Generator, exclude: set[int] = frozenset()) -> None:
        self.cfg, self.items, self.rng = cfg, items, rng
        keep = np.ones(len(item_labels), dtype=bool)
        keep[list(exclude)] = False
        self.by_item = [np.flatnonzero((item_labels == k) & keep) for k in range(10)]
        self.classes = class_table()
        self.used: set[int] = set()  # item indices drawn, so a later split can avoid them

    def background(self) -> np.ndarray:
        from PIL import Image

        s = self.cfg.canvas
        coarse = self.rng.uniform(15, 75, size=(4, 4, 3)).astype(np.uint8)
        # smooth, without pixel noise: noise would triple the PNG files for little realism
        return np.asarray(Image.fromarray(coarse).resize((s, s), Image.BILINEAR), dtype=np.float32)

    def item(self, cls: int, side: int) -> tuple[np.ndarray, list[np.ndarray]]:
        from PIL import Image

        item, _, _ = self.classes[cls]
        while True:
            index = int(self.rng.choice(self.by_item[item]))
            self.used.add(index)
            raw = self.items[index]
            gray = np.asarray(Image.fromarray(raw).resize((side, side), Image.BILINEAR), dtype=np.float32) / 255
            polygons = silhouette_polygons(gray)
            if polygons:
                return gray, polygons

    def paint(self, canvas: np.ndarray, cls: int, x0: int, y0: int, side: int, image_id: int,
              ann_id: int) -> dict[str, Any] | None:
        from faster_coco_eval.core import mask as mask_utils

        gray, polygons = self.item(cls, side)
        s = self.cfg.canvas
        polys = [(p + [x0, y0]).round(2) for p in polygons]
        rle = mask_utils.merge(mask_utils.frPyObjects([p.ravel().tolist() for p in polys], s, s))
        mask = mask_utils.decode(rle).astype(bool)
        if mask.sum() < 4:
            return None
        _, tint, _ = self.classes[cls]
        local = np.zeros((s, s), dtype=np.float32)
        local[y0:y0 + side, x0:x0 + side] = gray
        # the tint stays visible on the item's dark parts, so the raster of the polygon is the object
        colour = 255 * np.asarray(TINTS[tint], dtype=np.float32) * (0.35 + 0.65 * local[..., None])
        canvas[mask] = colour[mask]
        pts = np.concatenate(polys)
        x_min, y_min = pts.min(0)
        x_max, y_max = pts.max(0)
        return {"id": ann_id, "image_id": image_id, "category_id": cls + 1,
                "segmentation": [p.ravel().tolist() for p in polys], "area": float(mask_utils.area(rle)),
                "bbox": [float(round(x_min, 2)), float(round(y_min, 2)), float(round(x_max - x_min, 2)),
                         float(round(y_max - y_min, 2))]}

    def place(self, taken: list[tuple[int, int, int]], side: int) -> tuple[int, int] | None:
        for _ in range(30):
            x0, y0 = (int(v) for v in self.rng.integers(0, self.cfg.canvas - side + 1, size=2))
            if all(x0 + side <= x or x + w <= x0 or y0 + side <= y or y + w <= y0 for x, y, w in taken):
                return x0, y0
        return None


def _render_split(painter: _Painter, pool: list[int], split: str, out: Path, first_image_id: int,
                  first_ann_id: int) -> tuple[list[dict], list[dict]]:
    """Deal the class pool into images; an object that does not fit goes to the next image."""
    from PIL import Image

    cfg, rng = painter.cfg, painter.rng
    images, annotations = [], []
    (out / split).mkdir(parents=True, exist_ok=True)
    pending = list(pool)
    image_id, ann_id = first_image_id, first_ann_id
    while pending:
        want = int(rng.integers(cfg.objects_per_image[0], cfg.objects_per_image[1] + 1))
        batch, pending = pending[:want], pending[want:]
        canvas, taken, anns, deferred = painter.background(), [], [], []
        for cls in batch:
            lo, hi = SIZE_BANDS[painter.classes[cls][2]]
            side = int(rng.integers(lo, hi + 1))
            spot = painter.place(taken, side)
            ann = painter.paint(canvas, cls, *spot, side, image_id, ann_id) if spot else None
            if ann is None:
                deferred.append(cls)
                continue
            taken.append((*spot, side))
            anns.append(ann)
            ann_id += 1
        pending = deferred + pending
        present = sorted({a["category_id"] for a in anns})
        absent = np.setdiff1d(np.arange(1, len(painter.classes) + 1), present)
        neg = rng.choice(absent, size=int(round(cfg.neg_fraction * len(absent))), replace=False)
        not_exhaustive = [c for c in present if rng.random() < cfg.not_exhaustive_prob]
        name = f"{split}/{image_id:012d}.{cfg.image_format}"
        Image.fromarray(np.clip(canvas, 0, 255).round().astype(np.uint8)).save(out / name)
        images.append({"id": image_id, "file_name": name, "height": cfg.canvas, "width": cfg.canvas,
                       "neg_category_ids": sorted(int(c) for c in neg), "not_exhaustive_category_ids": not_exhaustive})
        annotations += anns
        image_id += 1
    return images, annotations


def _categories(anns: list[dict], num_images_by_class: np.ndarray, train_images: np.ndarray) -> list[dict]:
    inst = np.bincount([a["category_id"] - 1 for a in anns], minlength=len(num_images_by_class))
    cats = []
    for k, (item, tint, size) in enumerate(class_table()[:len(num_images_by_class)]):
        name = f"{tint}_{sources.FASHION_MNIST_CLASSES[item].lower().replace('/', '_').replace(' ', '_')}_{size}"
        cats.append({"id": k + 1, "name": name, "synset": name, "synonyms": [name],
                     "def": f"a {size} {tint} {sources.FASHION_MNIST_CLASSES[item]} (Fashion-MNIST item)",
                     "frequency": frequency_of(int(train_images[k])), "image_count": int(num_images_by_class[k]),
                     "instance_count": int(inst[k])})
    return cats


def _image_counts(anns: list[dict], num_classes: int) -> np.ndarray:
    pairs = {(a["image_id"], a["category_id"]) for a in anns}
    return np.bincount([c - 1 for _, c in pairs], minlength=num_classes)


def make_synthetic_lvis(out_dir: str | Path, *, size: str = "default", scale: float | None = None, seed: int = 0,
                        data_root: str | Path | None = None) -> dict[str, Any]:
    """Write ``out_dir/lvis_{train,val,test}.json`` and the images under ``train/``, ``val/`` and ``test/``;
    the same arguments give the same files (and the train and val splits of a generator without the test
    split: test is drawn last, from Fashion-MNIST test items that val did not use).
    ``size``: a :data:`PRESETS` name; ``scale`` overrides its
    instance-count divisor. Returns a summary (class, image and instance counts; r/c/f group and
    BAGS bin sizes), also written to ``out_dir/summary.json``."""
    if size not in PRESETS:
        raise ValueError(f"unknown size {size!r}; choose one of {sorted(PRESETS)}")
    cfg = PRESETS[size] if scale is None else replace(PRESETS[size], scale=float(scale))
    out = Path(out_dir)
    if (out / "lvis_train.json").exists() or (out / "coco_lt_train.json").exists():
        raise FileExistsError(f"{out} already holds a generated dataset; remove it or choose another folder")
    root = Path(data_root) if data_root is not None else sources.default_data_root()
    rng = np.random.default_rng(seed)
    if cfg.profile not in PROFILES:
        raise ValueError(f"unknown profile {cfg.profile!r}; choose one of {PROFILES}")
    num_classes = 80 if cfg.profile == "coco_lt" else len(class_table())
    counts = np.empty(num_classes, dtype=np.int64)
    stands_for = None  # coco_lt: the real COCO-LT count of the class each generated class stands for
    if cfg.profile == "coco_lt":
        scaled, real = coco_lt_profile_counts(cfg.scale)
        order = rng.permutation(num_classes)
        counts[order], stands_for = scaled, np.empty(num_classes, dtype=np.int64)
        stands_for[order] = real
    else:
        counts[rng.permutation(num_classes)] = lvis_profile_counts(num_classes, cfg.scale)
    prefix = "coco_lt" if cfg.profile == "coco_lt" else "lvis"

    splits: dict[str, tuple[list[dict], list[dict]]] = {}
    used_test_items: set[int] = set()  # Fashion-MNIST test items already pasted into val
    items_by_split: dict[str, set[int]] = {}
    for split, per_class in (("train", counts), ("val", np.full(num_classes, cfg.val_per_class)),
                             ("test", np.full(num_classes, cfg.test_per_class))):
        items, labels = sources.load_fashion_mnist(root, train=split == "train")
        painter = _Painter(cfg, items.numpy(), labels.numpy(), rng, exclude=used_test_items)
        pool = rng.permutation(np.repeat(np.arange(num_classes), per_class)).tolist()
        first_image = 1 + sum(len(images) for images, _ in splits.values())  # ids unique over all splits
        first_ann = 1 + sum(len(anns) for _, anns in splits.values())
        splits[split] = _render_split(painter, pool, split, out, first_image, first_ann)
        items_by_split[split] = painter.used
        if split != "train":
            used_test_items |= painter.used

    train_images = _image_counts(splits["train"][1], num_classes)
    summary: dict[str, Any] = {"config": {**asdict(cfg), "size": size, "seed": seed}, "num_classes": num_classes}
    for split, (images, anns) in splits.items():
        cats = _categories(anns, _image_counts(anns, num_classes), train_images)
        profile = "LVIS v1 train profile" if stands_for is None else "COCO-LT train profile (COCO format)"
        info = {"description": f"longtail synthetic benchmark, {split} split: Fashion-MNIST items on canvases, "
                               f"class instance counts from the {profile}",
                "generator": "longtail.detection.synthetic", **summary["config"],
                "suggested_bags_bin_edges": list(suggested_bin_edges(cfg.scale))}
        if stands_for is not None:  # AP1..AP4 bin the classes by the real counts they stand for; COCO fields
            for c in cats:
                c["bin_instance_count"] = int(stands_for[c["id"] - 1])
            for a in anns:
                a["iscrowd"] = 0
        with open(out / f"{prefix}_{split}.json", "w") as f:
            json.dump({"info": info, "licenses": [], "images": images, "annotations": anns, "categories": cats}, f)
        summary[split] = {"images": len(images), "instances": len(anns), "source_items": len(items_by_split[split])}
    summary["test"]["source_items_shared_with_val"] = len(items_by_split["test"] & items_by_split["val"])
    summary["train"].update(_group_sizes(np.bincount([a["category_id"] - 1 for a in splits["train"][1]],
                                                     minlength=num_classes), train_images, cfg.scale))
    if stands_for is not None:
        from .coco import COCO_LT_AP_BIN_EDGES, ap_bins

        bins = ap_bins(dict(enumerate(stands_for.tolist())), COCO_LT_AP_BIN_EDGES)
        summary["train"]["ap_bins"] = {f"AP{b}": sum(v == b for v in bins.values()) for b in range(1, 5)}
        summary["files"] = prefix
    (out / "summary.json").write_text(json.dumps(summary, indent=1))
    return summary


def suggested_bin_edges(scale: float) -> tuple[int, ...]:
    """BAGS bin edges for counts divided by ``scale``: the paper's (10, 100, 1000) x 10 / scale, so that
    any preset gets the groups the default preset (scale 10) gets with the paper's edges."""
    return tuple(max(2, round(e * 10 / scale)) for e in BAGS_BIN_EDGES)


def _bins(instances: np.ndarray, edges: tuple) -> dict[str, int]:
    bounds = (1, *edges, np.inf)
    return {f"[{lo},{hi})": int(((instances >= lo) & (instances < hi)).sum()) for lo, hi in zip(bounds[:-1], bounds[1:])}


def _group_sizes(instances: np.ndarray, images: np.ndarray, scale: float) -> dict[str, Any]:
    freq = [frequency_of(int(n)) for n in images]
    return {"frequency_groups": {f: freq.count(f) for f in FREQUENCIES},
            "bags_bins": _bins(instances, BAGS_BIN_EDGES), "suggested_bin_edges": list(suggested_bin_edges(scale)),
            "bags_bins_at_suggested_edges": _bins(instances, suggested_bin_edges(scale)),
            "max_instances": int(instances.max()), "min_instances": int(instances.min())}
