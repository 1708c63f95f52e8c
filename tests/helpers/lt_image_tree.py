"""Small image trees for the file-based dataset tests: tiny JPEGs written with PIL at the paths of
the real split lists (a subset of their lines), so the tests exercise the real lists' layout."""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np
from PIL import Image

from longtail.data.split_file import read_split_file, shipped_split_dir


def write_jpeg(path: Path, label: int, seed: int, size: tuple[int, int] = (20, 16)) -> None:
    """A learnable tiny image: a class-dependent colour plus noise."""
    rng = np.random.default_rng(seed)
    base = np.array([(label * 37) % 256, (label * 91) % 256, (label * 53) % 256], dtype=np.float64)
    pixels = np.clip(base + rng.normal(0, 20, size=(size[1], size[0], 3)), 0, 255).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, quality=90)


def subset_lines(list_file: Path, keep) -> list[tuple[str, int]]:
    """The first ``keep(n_c)`` lines of each class c of a split list, in list order."""
    paths, labels = read_split_file(list_file)
    totals: dict[int, int] = defaultdict(int)
    for y in labels:
        totals[y] += 1
    taken: dict[int, int] = defaultdict(int)
    out = []
    for p, y in zip(paths, labels):
        if taken[y] < keep(totals[y]):
            taken[y] += 1
            out.append((p, y))
    return out


def build_places_tree(base: Path, train_per: int = 500) -> tuple[Path, Path, dict[str, list[tuple[str, int]]]]:
    """(image root, split dir, lines per split): Places-LT over all 365 classes, training class c keeps
    ceil(n_c / train_per) of its real lines (the long tail's shape, ~411 images), val and test 1 each."""
    root, split_dir = base / "places365_standard", base / "lists"
    split_dir.mkdir(parents=True)
    shipped = shipped_split_dir("places_lt")
    keeps = {"train": lambda n: math.ceil(n / train_per), "val": lambda n: 1, "test": lambda n: 1}
    lines = {}
    for split, keep in keeps.items():
        name = f"Places_LT_{split}.txt"
        lines[split] = subset_lines(shipped / name, keep)
        (split_dir / name).write_text("".join(f"{p} {y}\n" for p, y in lines[split]))
        for i, (p, y) in enumerate(lines[split]):
            write_jpeg(root / p, y, seed=i)
    return root, split_dir, lines
