"""COCO-format detection and the COCO-LT benchmark (Wang et al., "The Devil is in Classification: A Simple
Framework for Long-tail Instance Segmentation", ECCV 2020).

- :class:`CocoDetection`: a COCO-format json (COCO, COCO-LT) as torchvision samples. It is
  :class:`~longtail.detection.lvis.LvisDetection` (same targets, checks and statistics) with COCO's
  crowd regions (``iscrowd: 1``) taken out of the training targets: a crowd region is never a positive
  (the detectron2 / torchvision-references convention); it stays in the evaluation ground truth, where
  COCO's protocol ignores detections matched to it.
- :func:`build_coco_lt`: the COCO-LT training json from a user's ``instances_train2017.json`` and the
  shipped class/image list (``resources/coco_lt``), checked against the list's instance counts.
- :func:`evaluate_coco`: COCO-style AP (not federated; 100 detections per image) on faster-coco-eval, with
  AP1..AP4: the mean per-class AP of the classes whose training instance count falls in
  [1, 20), [20, 400), [400, 8000), [8000, inf) (4 / 24 / 32 / 20 classes on COCO-LT), and their mean.
"""

from __future__ import annotations

import gzip
import json
from collections import Counter
from importlib import resources
from pathlib import Path
from typing import Any, Literal, Mapping, Sequence

import numpy as np

from .lvis import LvisDetection, _read_json

COCO_LT_AP_BIN_EDGES = (20, 400, 8000)  # AP1: [1, 20), AP2: [20, 400), AP3: [400, 8000), AP4: [8000, inf)
COCO_METRIC_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AP1", "AP2", "AP3", "AP4", "APbins")
COCO_LT_SPLIT_FILE = "coco_lt_train_class_images.json.gz"
_FCE_COCO_KEYS = {"AP": "AP_all", "AP50": "AP_50", "AP75": "AP_75", "APs": "AP_small", "APm": "AP_medium",
                  "APl": "AP_large"}


class CocoDetection(LvisDetection):
    """A COCO-format split as torchvision detection samples (see :class:`LvisDetection` for the targets and
    arguments). Crowd annotations are not training targets; ``crowd_boxes[i]`` (K, 4) xyxy keeps those of
    image i. Class counts (``instance_counts``, ``image_counts``) come from the categories' fields when
    every category has them (the COCO-LT json written by :func:`build_coco_lt`), else from the non-crowd
    annotations; ``ap_bin_counts`` ({category id: count}) is what AP1..AP4 bin the classes by."""

    def __init__(self, annotations: str | Path | Mapping[str, Any], image_root: str | Path, **kwargs: Any) -> None:
        data = annotations if isinstance(annotations, Mapping) else _read_json(Path(annotations))
        crowd = [a for a in data.get("annotations", []) if a.get("iscrowd", 0)]
        objects = [a for a in data.get("annotations", []) if not a.get("iscrowd", 0)]
        super().__init__({**data, "annotations": objects}, image_root, **kwargs)
        position = {image_id: k for k, image_id in enumerate(self.image_ids)}
        boxes: list[list] = [[] for _ in self.image_ids]
        for a in crowd:
            if a["image_id"] not in position:
                raise ValueError(f"a crowd annotation refers to image id {a['image_id']}, missing from 'images'")
            x, y, w, h = a["bbox"]
            boxes[position[a["image_id"]]].append([x, y, x + w, y + h])
        self.crowd_boxes = [np.asarray(b, dtype=np.float32).reshape(-1, 4) for b in boxes]
        self.num_crowd = len(crowd)
        # the count AP1..AP4 bin a class by: its training instance count, or, in a scaled-down stand-in for
        # COCO-LT (the embedded profile), the real count of the class it stands for ("bin_instance_count")
        cats = {int(c["id"]): c for c in data["categories"]}
        self.ap_bin_counts = {cid: int(cats[cid].get("bin_instance_count", n))
                              for cid, n in zip(self.category_ids, self.instance_counts)}


# --- the COCO-LT split ------------------------------------------------------------------------------------

def load_coco_lt_split() -> dict[str, Any]:
    """The shipped COCO-LT class/image list: ``categories`` (label, category_id, instance_count, image_count,
    image_ids) and ``num_images``, with its provenance in ``info``."""
    packed = resources.files("longtail") / "resources" / "coco_lt" / COCO_LT_SPLIT_FILE
    return json.loads(gzip.decompress(packed.read_bytes()))


def build_coco_lt(instances: str | Path | Mapping[str, Any], split: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The COCO-LT training json from COCO's ``instances_train2017.json`` (path or dict).

    The list identifies a category by its ``label`` 1..80, the position of its COCO id among the 80 sorted
    ids (the contiguous labels of mmdetection / detectron2; the list's own ``category_id`` field repeats
    the label, it is not a COCO id). Rule (inferred from the published list, so it is checked): for every
    category, its annotations in the images the list gives for it are kept, every other annotation is
    dropped, and the images are those the list names. The kept instances of every category must equal the
    list's count, counting the crowd regions (the list's person count, 262,465, is COCO's full count) or,
    if the counts match that way, without them; the json records which. Any other difference is an error
    naming the categories. The categories gain the list's ``instance_count``, ``image_count`` and label."""
    split = split if split is not None else load_coco_lt_split()
    data = instances if isinstance(instances, Mapping) else _read_json(Path(instances))
    for key in ("images", "annotations", "categories"):
        if key not in data:
            raise ValueError(f"the instances json lacks the {key!r} list (is it COCO's instances_train2017.json?)")
    names = {int(c["id"]): c.get("name", str(c["id"])) for c in data["categories"]}
    coco_ids = sorted(names)
    if len(coco_ids) != len(split["categories"]):
        raise ValueError(f"the instances json has {len(coco_ids)} categories, the COCO-LT list "
                         f"{len(split['categories'])}: give COCO's instances_train2017.json (80 categories)")
    wanted = {coco_ids[int(c["label"]) - 1]: c for c in split["categories"]}
    keep_images = {cid: set(c["image_ids"]) for cid, c in wanted.items()}
    kept = [a for a in data["annotations"] if a["image_id"] in keep_images.get(a["category_id"], ())]
    with_crowd = Counter(a["category_id"] for a in kept)
    without_crowd = Counter(a["category_id"] for a in kept if not a.get("iscrowd", 0))
    counted = {rule: [cid for cid, c in wanted.items() if counts[cid] != c["instance_count"]]
               for rule, counts in (("with crowd", with_crowd), ("without crowd", without_crowd))}
    rule = next((r for r, differ in counted.items() if not differ), None)
    if rule is None:
        differ = counted["with crowd"]
        listed = ", ".join(f"{names[cid]} (id {cid}): {with_crowd[cid]} kept ({without_crowd[cid]} without crowd) "
                           f"vs {wanted[cid]['instance_count']} listed" for cid in differ[:10])
        raise ValueError(f"COCO-LT cannot be rebuilt from this json: the kept instances of {len(differ)} "
                         f"categor{'y differs' if len(differ) == 1 else 'ies differ'} from the list: {listed}"
                         f"{' ...' if len(differ) > 10 else ''}. Give COCO's instances_train2017.json, unmodified.")
    if rule == "without crowd":
        kept = [a for a in kept if not a.get("iscrowd", 0)]
    listed_images = set().union(*keep_images.values())
    images = [im for im in data["images"] if im["id"] in listed_images]
    if len(images) != len(listed_images):
        missing = sorted(listed_images - {im["id"] for im in images})
        raise ValueError(f"{len(missing)} image(s) of the COCO-LT list are not in the json's 'images': {missing[:10]}")
    categories = [{**c, "instance_count": int(wanted[c["id"]]["instance_count"]),
                   "coco_lt_label": int(wanted[c["id"]]["label"]),
                   "image_count": int(wanted[c["id"]]["image_count"])} for c in data["categories"] if c["id"] in wanted]
    info = {"description": "COCO-LT training split (Wang et al., ECCV 2020), rebuilt by longtail from COCO "
                           "instances_train2017.json and the SimCal class/image list",
            "source": split.get("info", ""), "instances_counted": rule}
    return {"info": info, "licenses": data.get("licenses", []), "images": images, "annotations": kept,
            "categories": categories}


# --- evaluation --------------------------------------------------------------------------------------------

def ap_bins(instance_counts: Mapping[int, int], edges: Sequence[float] = COCO_LT_AP_BIN_EDGES) -> dict[int, int]:
    """{category id: bin 1..len(edges)+1}: bin b holds the counts in [edges[b-2], edges[b-1]) (1: below edges[0])."""
    return {int(cid): 1 + int(np.searchsorted(np.asarray(edges), n, side="right"))
            for cid, n in instance_counts.items()}


def per_class_ap(precision: np.ndarray) -> np.ndarray:
    """(K,) AP of each category from a COCOeval ``eval["precision"]`` array (T, R, K, A, M): the mean over
    IoU thresholds and recall points at area "all" and the largest maxDets, NaN where nothing is defined."""
    p = precision[:, :, :, 0, -1]
    valid = p > -1
    total = np.where(valid, p, 0.0).sum(axis=(0, 1))
    count = valid.sum(axis=(0, 1))
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def binned_ap(class_ap: Mapping[int, float], bins: Mapping[int, int], num_bins: int = 4) -> dict[str, float]:
    """AP1..APn: the mean of the defined per-class APs of each bin (NaN for a bin without one), and
    ``APbins``, the mean of the defined bin APs."""
    out = {}
    for b in range(1, num_bins + 1):
        values = [ap for cid, ap in class_ap.items() if bins.get(cid) == b and np.isfinite(ap)]
        out[f"AP{b}"] = float(np.mean(values)) if values else float("nan")
    defined = [v for v in out.values() if np.isfinite(v)]
    out["APbins"] = float(np.mean(defined)) if defined else float("nan")
    return out


def evaluate_coco(predictions: Sequence[Mapping[str, Any]], gt: str | Path | Mapping[str, Any], *,
                  iou_type: Literal["bbox", "segm"] = "bbox", max_dets: int = 100,
                  instance_counts: Mapping[int, int] | None = None,
                  bin_edges: Sequence[float] = COCO_LT_AP_BIN_EDGES) -> dict[str, float]:
    """COCO AP of ``predictions`` (result dicts ``{image_id, category_id, score, bbox [x, y, w, h]}``, and an
    RLE ``segmentation`` for ``segm``) against ``gt`` (json path or dict), as pycocotools' COCOeval computes
    it (crowd regions ignored in matching; at most ``max_dets`` detections per image).

    With ``instance_counts`` ({category id: training instance count}) it adds AP1..AP4 (bins at
    ``bin_edges``) and their mean ``APbins``; also ``per_class`` ({category id: AP}). Fractions in
    [0, 1]; a metric with nothing to average is NaN."""
    from faster_coco_eval import COCO, COCOeval_faster

    if iou_type not in ("bbox", "segm"):
        raise ValueError(f"iou_type must be 'bbox' or 'segm', got {iou_type!r}")
    if isinstance(gt, (str, Path)):
        gt = _read_json(Path(gt))
    quiet = lambda *args, **kwargs: None  # noqa: E731
    # the evaluator writes into the dicts it is given (areas, RLEs, ignore flags): copies
    ground = {"images": gt["images"], "annotations": [dict(a) for a in gt["annotations"]],
              "categories": [{k: c[k] for k in ("id", "name") if k in c} for c in gt["categories"]]}
    known = {im["id"] for im in ground["images"]}
    strays = sorted({p["image_id"] for p in predictions if p["image_id"] not in known})
    if strays:
        raise ValueError(f"detections refer to {len(strays)} image id(s) not in the ground truth: {strays[:10]}")
    if not ground["annotations"] or not predictions:
        out = {name: float("nan") for name in COCO_METRIC_NAMES}
        return {**out, "per_class": {}} if instance_counts is not None else out
    dets = [dict(p, bbox=list(p["bbox"])) for p in predictions]
    coco_gt = COCO(ground, print_function=quiet)
    coco_dt = coco_gt.loadRes(dets)
    ev = COCOeval_faster(coco_gt, coco_dt, iou_type, print_function=quiet)
    ev.params.maxDets = [1, 10, max_dets]
    ev.evaluate()
    ev.accumulate()
    ev.summarize()
    stats = ev.stats_as_dict
    out = {name: (float("nan") if stats[key] < 0 else float(stats[key])) for name, key in _FCE_COCO_KEYS.items()}
    if instance_counts is not None:
        aps = per_class_ap(np.asarray(ev.eval["precision"]))
        class_ap = {int(cid): float(ap) for cid, ap in zip(ev.params.catIds, aps)}
        out.update(binned_ap(class_ap, ap_bins(instance_counts, bin_edges), num_bins=len(bin_edges) + 1))
        out["per_class"] = class_ap
    return out
