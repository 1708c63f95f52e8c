"""The embedded LVIS-format benchmark: the LVIS v1 count profile, determinism, LVIS fields and
groups, masks that are the pasted pixels, and `longtail detect make-data`."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from helpers.fashion_mnist import fashion_mnist_root_or_skip
from longtail.cli.main import main
from longtail.detection.lvis import frequency_of, load_lvis_category_stats, polygons_to_mask
from longtail.detection.synthetic import (
    PRESETS,
    TINTS,
    class_table,
    lvis_profile_counts,
    make_synthetic_lvis,
    suggested_bin_edges,
)
from longtail.workflows.detect_data import PRESET_NAMES


@pytest.fixture(scope="module")
def fashion_root():
    return fashion_mnist_root_or_skip()


def digest(folder: Path) -> str:
    h = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            h.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return h.hexdigest()


def test_profile_follows_lvis_v1():
    real = np.sort(np.asarray(load_lvis_category_stats("v1").instance_counts))[::-1]
    counts = lvis_profile_counts(120, 10.0)
    assert len(counts) == 120 and (np.diff(counts) <= 0).all() and counts.min() == 1
    # class k reads the real count at quantile (k + 0.5) / 120 of the 1203 sorted ones
    expected = [max(1, round(real[int((k + 0.5) / 120 * 1203)] / 10)) for k in range(120)]
    assert counts.tolist() == expected
    # at the default scale every BAGS bin [1,10), [10,100), [100,1000), [1000,inf) is populated
    assert tuple(np.histogram(counts, [1, 10, 100, 1000, np.inf])[0]) == (60, 34, 24, 2)
    assert counts.sum() == 12023
    assert suggested_bin_edges(10) == (10, 100, 1000) and suggested_bin_edges(60) == (2, 17, 167)
    with pytest.raises(ValueError, match="scale"):
        lvis_profile_counts(120, 0)


@pytest.mark.slow
def test_deterministic_from_the_seed(fashion_root, tmp_path):
    a = make_synthetic_lvis(tmp_path / "a", size="ci", scale=2000, seed=3, data_root=fashion_root)
    b = make_synthetic_lvis(tmp_path / "b", size="ci", scale=2000, seed=3, data_root=fashion_root)
    assert a == b and digest(tmp_path / "a") == digest(tmp_path / "b")
    make_synthetic_lvis(tmp_path / "c", size="ci", scale=2000, seed=4, data_root=fashion_root)
    assert (tmp_path / "a" / "lvis_train.json").read_bytes() != (tmp_path / "c" / "lvis_train.json").read_bytes()
    with pytest.raises(FileExistsError, match="already holds"):
        make_synthetic_lvis(tmp_path / "a", size="ci", seed=3, data_root=fashion_root)
    with pytest.raises(ValueError, match="unknown size"):
        make_synthetic_lvis(tmp_path / "d", size="huge", data_root=fashion_root)


@pytest.mark.slow
def test_ci_preset_is_an_lvis_style_long_tail(fashion_root, tmp_path):
    from PIL import Image

    summary = make_synthetic_lvis(tmp_path, size="ci", seed=0, data_root=fashion_root)
    train, val, test = (json.loads((tmp_path / f"lvis_{s}.json").read_text()) for s in ("train", "val", "test"))
    cats = train["categories"]
    assert len(cats) == summary["num_classes"] == 120 >= 100
    inst = Counter(a["category_id"] for a in train["annotations"])
    imgs = Counter(c for _, c in {(a["image_id"], a["category_id"]) for a in train["annotations"]})
    # counts follow the profile (dealt to classes in a random order) and the json says so
    assert sorted(inst.values(), reverse=True) == lvis_profile_counts(120, PRESETS["ci"].scale).tolist()
    for c in cats:
        assert c["instance_count"] == inst[c["id"]] and c["image_count"] == imgs[c["id"]]
        assert c["frequency"] == frequency_of(imgs[c["id"]])
    assert all(summary["train"]["frequency_groups"][f] > 0 for f in "rcf"), "every r/c/f group populated"
    assert list(summary["train"]["bags_bins"].values())[:3] == [88, 26, 6]
    # the paper's edges x 10 / scale give the default preset's groups (60 / 34 / 24 / 2 at scale 10)
    assert summary["train"]["suggested_bin_edges"] == [2, 17, 167]
    assert list(summary["train"]["bags_bins_at_suggested_edges"].values()) == [59, 35, 24, 2]
    assert train["info"]["suggested_bags_bin_edges"] == [2, 17, 167]
    # val and test: balanced, with the train frequencies (APr/APc/APf need them)
    assert set(Counter(a["category_id"] for a in val["annotations"]).values()) == {PRESETS["ci"].val_per_class}
    assert set(Counter(a["category_id"] for a in test["annotations"]).values()) == {PRESETS["ci"].test_per_class}
    assert [c["frequency"] for c in val["categories"]] == [c["frequency"] for c in test["categories"]] == \
        [c["frequency"] for c in cats]
    # test never reuses a Fashion-MNIST item that val pasted: choosing on val does not peek at test
    assert summary["test"]["source_items_shared_with_val"] == 0 and summary["val"]["source_items"] > 0
    ann_ids = [a["id"] for d in (train, val, test) for a in d["annotations"]]
    image_ids = [im["id"] for d in (train, val, test) for im in d["images"]]
    assert len(set(ann_ids)) == len(ann_ids) and min(ann_ids) == 1 and len(set(image_ids)) == len(image_ids)
    for data in (train, val, test):
        by_image: dict[int, list] = {}
        for a in data["annotations"]:
            by_image.setdefault(a["image_id"], []).append(a)
        for im in data["images"][:40]:
            anns = by_image.get(im["id"], [])
            present = {a["category_id"] for a in anns}
            assert not present & set(im["neg_category_ids"]) and set(im["not_exhaustive_category_ids"]) <= present
            pixels = np.asarray(Image.open(tmp_path / im["file_name"]).convert("RGB"), dtype=np.float64)
            masks = [polygons_to_mask(a["segmentation"], im["height"], im["width"]) for a in anns]
            assert all(m.sum() == a["area"] for m, a in zip(masks, anns))
            if masks:
                assert np.stack(masks).sum(0).max() == 1, "objects do not overlap"
            for m, a in zip(masks, anns):  # the masked pixels carry the class's tint
                _, tint, _ = class_table()[a["category_id"] - 1]
                colour = pixels[m.astype(bool)].mean(0)
                assert np.corrcoef(colour, TINTS[tint])[0, 1] > 0.8


def test_make_data_command(fashion_root, tmp_path, capsys, monkeypatch):
    assert set(PRESET_NAMES) == set(PRESETS)
    monkeypatch.setenv("LONGTAIL_DATA", str(fashion_root))
    assert main(["detect", "make-data", str(tmp_path / "d"), "--size", "ci", "--scale", "2000", "--seed", "1"]) == 0
    out = capsys.readouterr().out
    assert "120 classes" in out and "frequency groups r / c / f" in out
    assert (tmp_path / "d" / "lvis_val.json").exists() and (tmp_path / "d" / "lvis_test.json").exists()
    assert main(["detect", "make-data", str(tmp_path / "d"), "--size", "ci"]) == 2
    assert "already holds" in capsys.readouterr().err
