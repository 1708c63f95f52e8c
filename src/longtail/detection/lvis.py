"""LVIS data: category statistics, frequency groups r/c/f, and a torchvision-format detection dataset.

LVIS (Gupta, Dollar and Girshick, CVPR 2019) is COCO-like json. Categories carry ``frequency`` from the
number of *training images* that contain them (rare 1-10, common 11-100, frequent > 100), ``image_count``
and ``instance_count``. Images carry ``neg_category_ids`` (verified absent) and
``not_exhaustive_category_ids`` (not every instance annotated), which federated evaluation uses.
v0.5 images have ``file_name``; v1 images only ``coco_url`` (``.../train2017/000000391895.jpg``).
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

FREQUENCIES = ("r", "c", "f")
STATS_FILES = {"v0.5": "lvis_v0.5_train_category_stats.json", "v1": "lvis_v1_train_category_stats.json"}


def frequency_of(image_count: int) -> str:
    """LVIS frequency label of a class seen in ``image_count`` training images: r (1-10), c (11-100), f (>100)."""
    return "r" if image_count <= 10 else "c" if image_count <= 100 else "f"


@dataclass(frozen=True)
class CategoryStats:
    """Per-category statistics in category-id order; position k is contiguous label k + 1."""

    ids: tuple[int, ...]
    names: tuple[str, ...]
    frequencies: tuple[str, ...]
    image_counts: tuple[int, ...]
    instance_counts: tuple[int, ...]

    @classmethod
    def from_categories(cls, categories: Sequence[Mapping[str, Any]]) -> "CategoryStats":
        """From an LVIS ``categories`` list; every entry needs id, image_count and instance_count
        (``frequency`` is derived from image_count when absent)."""
        cats = sorted(categories, key=lambda c: c["id"])
        for key in ("id", "image_count", "instance_count"):
            lacking = [c.get("id", "?") for c in cats if key not in c]
            if lacking:
                raise ValueError(f"{len(lacking)} categories lack {key!r} (ids {lacking[:10]}); "
                                 "category statistics need id, image_count and instance_count")
        freqs = tuple(c.get("frequency") or frequency_of(c["image_count"]) for c in cats)
        bad = sorted({f for f in freqs if f not in FREQUENCIES})
        if bad:
            raise ValueError(f"unknown frequency label(s) {bad}; LVIS uses {FREQUENCIES}")
        return cls(ids=tuple(int(c["id"]) for c in cats), names=tuple(str(c.get("name", c["id"])) for c in cats),
                   frequencies=freqs, image_counts=tuple(int(c["image_count"]) for c in cats),
                   instance_counts=tuple(int(c["instance_count"]) for c in cats))

    def __len__(self) -> int:
        return len(self.ids)

    def frequency_groups(self) -> dict[str, list[int]]:
        """r/c/f -> 0-based positions (contiguous label - 1) of the classes in that group."""
        groups: dict[str, list[int]] = {f: [] for f in FREQUENCIES}
        for k, f in enumerate(self.frequencies):
            groups[f].append(k)
        return groups


def load_lvis_category_stats(version: str | Path = "v1") -> CategoryStats:
    """The real LVIS train-split category statistics shipped with the package (``"v0.5"``: 1230
    classes, ``"v1"``: 1203), or any json holding a ``categories`` list (a path)."""
    if str(version) in STATS_FILES:
        text = (resources.files("longtail") / "resources" / "lvis" / STATS_FILES[str(version)]).read_text()
    else:
        path = Path(version)
        if not path.exists():
            raise FileNotFoundError(f"no LVIS statistics {version!r}: give one of {sorted(STATS_FILES)} or a json path")
        text = path.read_text()
    return CategoryStats.from_categories(json.loads(text)["categories"])


def image_path_candidates(image: Mapping[str, Any], image_root: Path) -> list[Path]:
    """Where an LVIS or COCO image may lie: ``root/file_name`` (LVIS v0.5; its ``COCO_val2014_`` names also
    tried as the COCO 2017 12-digit name; COCO, with root the split folder), then
    ``root/<split folder>/<basename>`` from ``coco_url`` (LVIS v1; COCO, with root the folder of train2017/)."""
    paths = []
    if image.get("file_name"):
        name = str(image["file_name"])
        paths.append(image_root / name)
        if Path(name).name.startswith("COCO_"):  # v0.5 json, images from the COCO 2017 folders
            paths.append(image_root / Path(name).parent / Path(name).name[-16:])
    if image.get("coco_url"):
        split, base = str(image["coco_url"]).rstrip("/").split("/")[-2:]
        paths.append(image_root / split / base)
    if paths:
        return paths
    raise ValueError(f"image {image.get('id')} has neither 'file_name' nor 'coco_url'; cannot locate its file")


def polygons_to_mask(segmentation: Any, height: int, width: int) -> np.ndarray:
    """(H, W) uint8 mask of an LVIS/COCO segmentation (polygon list or RLE), via the COCO mask API."""
    from faster_coco_eval.core import mask as mask_utils

    if segmentation is None:
        raise ValueError("an annotation has no 'segmentation'; with_masks=True needs polygons or RLE")
    if isinstance(segmentation, list):
        rle = mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
    elif isinstance(segmentation.get("counts"), list):  # uncompressed RLE
        rle = mask_utils.frPyObjects(segmentation, height, width)
    else:
        rle = segmentation
    return mask_utils.decode(rle).astype(np.uint8)


def collate_detection(batch: Sequence[tuple[Tensor, dict]]) -> tuple[list[Tensor], list[dict]]:
    """DataLoader collate for detection: images of different sizes stay a list, as torchvision wants."""
    images, targets = zip(*batch)
    return list(images), list(targets)


class LvisDetection(Dataset):
    """An LVIS v0.5 / v1 split as torchvision detection samples.

    ``dataset[i]`` is ``(image, target)``: image (3, H, W) float32 in [0, 1]; target ``boxes`` (N, 4)
    xyxy float32, ``labels`` (N,) int64 in 1..C (0 is background), ``image_id`` int, and with
    ``with_masks=True`` ``masks`` (N, H, W) uint8 rasterised from the polygons (COCO mask API).

    Args:
        annotations: path of the json, or the loaded dict.
        image_root: folder the image paths are relative to (see :func:`image_path_candidates`).
        with_masks: also return instance masks (Mask R-CNN).
        counts_from: "json" (the categories' ``instance_count``/``image_count``; right for a train
            json), "annotations" (counted from the kept annotations), or "auto" (json when every
            category has both fields).
        check_images: fail at construction when image files are missing (set False to defer).
        transforms: optional ``(image, target) -> (image, target)``.

    Annotations naming an unknown category or image are an error. Degenerate boxes (width or height
    <= 0 in float32) are skipped; their number is in ``skipped_degenerate`` and reported by a warning.
    """

    def __init__(self, annotations: str | Path | Mapping[str, Any], image_root: str | Path, *,
                 with_masks: bool = False, counts_from: Literal["auto", "json", "annotations"] = "auto",
                 check_images: bool = True, transforms: Callable | None = None) -> None:
        data = annotations if isinstance(annotations, Mapping) else _read_json(Path(annotations))
        where = "the annotation json" if isinstance(annotations, Mapping) else str(annotations)
        for key in ("images", "annotations", "categories"):
            if key not in data:
                raise ValueError(f"{where} lacks the {key!r} list")
        self.image_root, self.with_masks, self.transforms = Path(image_root), with_masks, transforms
        cats = sorted(data["categories"], key=lambda c: c["id"])
        self.category_ids: tuple[int, ...] = tuple(int(c["id"]) for c in cats)
        self.cat_id_to_label = {cid: k + 1 for k, cid in enumerate(self.category_ids)}
        self.class_names = [str(c.get("name", c["id"])) for c in cats]
        self.images = list(data["images"])
        self.image_ids = [int(im["id"]) for im in self.images]
        if len(set(self.image_ids)) != len(self.image_ids):
            seen, twice = set(), []
            for i in self.image_ids:
                (twice.append(i) if i in seen else seen.add(i))
            raise ValueError(f"{where} lists {len(twice)} duplicate image id(s): {sorted(set(twice))[:5]}; each image "
                             "must appear once in 'images'")
        self.neg_category_ids = [list(im.get("neg_category_ids", [])) for im in self.images]
        self.not_exhaustive_category_ids = [list(im.get("not_exhaustive_category_ids", [])) for im in self.images]
        self._anns, self.skipped_degenerate = self._index_annotations(data["annotations"], where)
        # unique labels per image, what repeat-factor sampling needs
        self.image_labels = [sorted({int(lab) for lab in a["labels"]}) for a in self._anns]
        self.stats = self._category_stats(cats, counts_from)
        self.paths = [self._resolve(im) for im in self.images]
        if check_images:
            self.check_images()

    @property
    def num_classes(self) -> int:
        return len(self.category_ids)

    @property
    def label_to_cat_id(self) -> dict[int, int]:
        return {k + 1: cid for k, cid in enumerate(self.category_ids)}

    @property
    def instance_counts(self) -> list[int]:
        return list(self.stats.instance_counts)

    @property
    def image_counts(self) -> list[int]:
        return list(self.stats.image_counts)

    @property
    def frequencies(self) -> list[str]:
        return list(self.stats.frequencies)

    def _index_annotations(self, annotations: Sequence[Mapping[str, Any]], where: str) -> tuple[list[dict], int]:
        pos = {iid: k for k, iid in enumerate(self.image_ids)}
        unknown_cat = sorted({a["category_id"] for a in annotations if a["category_id"] not in self.cat_id_to_label})
        if unknown_cat:
            n = sum(a["category_id"] not in self.cat_id_to_label for a in annotations)
            raise ValueError(f"{where}: {n} annotation(s) name {len(unknown_cat)} category id(s) missing from its "
                             f"'categories': {unknown_cat[:10]}. Add those categories or drop the annotations.")
        unknown_img = sorted({a["image_id"] for a in annotations if a["image_id"] not in pos})
        if unknown_img:
            raise ValueError(f"{where}: annotations refer to {len(unknown_img)} image id(s) missing from its "
                             f"'images': {unknown_img[:10]}")
        per_image: list[list] = [[] for _ in self.images]
        skipped: list[int] = []
        for a in annotations:
            x, y, w, h = np.asarray(a["bbox"], dtype=np.float32)
            box = np.array([x, y, x + w, y + h], dtype=np.float32)
            if not (box[2] > box[0] and box[3] > box[1]):  # torchvision rejects such boxes
                skipped.append(int(a.get("id", -1)))
                continue
            per_image[pos[a["image_id"]]].append((box, self.cat_id_to_label[a["category_id"]], a.get("segmentation")))
        if skipped:
            warnings.warn(f"skipped {len(skipped)} degenerate box(es) (width or height <= 0), annotation ids "
                          f"{skipped[:10]}{' ...' if len(skipped) > 10 else ''}", stacklevel=3)
        index = [{"boxes": np.stack([b for b, _, _ in anns]) if anns else np.zeros((0, 4), np.float32),
                  "labels": np.array([lab for _, lab, _ in anns], dtype=np.int64),
                  "segmentations": [s for _, _, s in anns]} for anns in per_image]
        return index, len(skipped)

    def _category_stats(self, cats: list[Mapping[str, Any]], counts_from: str) -> CategoryStats:
        if counts_from not in ("auto", "json", "annotations"):
            raise ValueError(f"counts_from must be 'auto', 'json' or 'annotations', got {counts_from!r}")
        has_counts = all("instance_count" in c and "image_count" in c for c in cats)
        if counts_from == "json" and not has_counts:
            raise ValueError("counts_from='json' but some categories lack instance_count/image_count; "
                             "use counts_from='annotations'")
        if counts_from == "annotations" or (counts_from == "auto" and not has_counts):
            inst = np.zeros(len(cats), dtype=np.int64)
            imgs = np.zeros(len(cats), dtype=np.int64)
            for a, labels in zip(self._anns, self.image_labels):
                np.add.at(inst, a["labels"] - 1, 1)
                imgs[np.asarray(labels, dtype=np.int64) - 1] += 1
            cats = [{**c, "instance_count": int(n), "image_count": int(m)} for c, n, m in zip(cats, inst, imgs)]
        return CategoryStats.from_categories(cats)

    def _resolve(self, image: Mapping[str, Any]) -> Path:
        candidates = image_path_candidates(image, self.image_root)
        return next((p for p in candidates if p.exists()), candidates[0])

    def check_images(self) -> None:
        """Raise FileNotFoundError naming how many (and which) image files are missing."""
        missing = [str(p) for p in self.paths if not p.exists()]
        if missing:
            raise FileNotFoundError(
                f"{len(missing)} of {len(self.paths)} images are missing under {self.image_root}, e.g. "
                f"{missing[:5]}. image_root must be the folder the json's file_name paths are relative to "
                "(LVIS v1: the folder holding COCO's train2017/ and val2017/).")

    @property
    def num_annotated_images(self) -> int:
        """Images with at least one (non-degenerate) annotation: the denominator of the official BALMS
        code's image frequency f_j and of detectron2's repeat factors."""
        return sum(1 for labels in self.image_labels if labels)

    def repeat_factors(self, threshold: float = 0.001, count_unannotated: bool = False) -> Tensor:
        """(N,) LVIS repeat factors of the images (see :func:`longtail.samplers.lvis_repeat_factors`)."""
        from ..samplers.repeat_factor import lvis_repeat_factors

        return lvis_repeat_factors(self.image_labels, threshold=threshold, count_unannotated=count_unannotated)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        from PIL import Image
        from torchvision.transforms.functional import pil_to_tensor

        info, anns = self.images[index], self._anns[index]
        with Image.open(self.paths[index]) as im:
            image = pil_to_tensor(im.convert("RGB")).float().div_(255)
        height, width = image.shape[-2:]
        if (info.get("height", height), info.get("width", width)) != (height, width):
            raise ValueError(f"image {self.paths[index]} is {height}x{width} but the json says "
                             f"{info.get('height')}x{info.get('width')}")
        target: dict[str, Any] = {"boxes": torch.from_numpy(anns["boxes"].copy()),
                                  "labels": torch.from_numpy(anns["labels"].copy()),
                                  "image_id": self.image_ids[index]}
        if self.with_masks:
            masks = [polygons_to_mask(s, height, width) for s in anns["segmentations"]]
            target["masks"] = (torch.from_numpy(np.stack(masks)) if masks
                               else torch.zeros((0, height, width), dtype=torch.uint8))
        if self.transforms is not None:
            image, target = self.transforms(image, target)
        return image, target


def _read_json(path: Path) -> dict:
    if not path.exists():
        raise FileNotFoundError(f"LVIS annotation file {path} does not exist")
    try:
        with open(path) as f:
            data = json.load(f)
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err.msg} at line {err.lineno}, column {err.colno}); the file "
                         "may be truncated: download or copy it again") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object with images, annotations and categories")
    return data
