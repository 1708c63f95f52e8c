"""A user's own long-tailed image folders: counts from the files, val drawn per class when there is no
val folder, class order from the training folder, clear errors for bad layouts."""

from collections import Counter

import pytest
import torch

from helpers.lt_image_tree import write_jpeg
from longtail.data import DatasetNotFoundError, build_dataset
from longtail.data.image_folder import load_image_folders, split_off_val

COUNTS = {"cat": 9, "ant": 1, "dog": 3, "eel": 20}  # sorted class order: ant, cat, dog, eel


def _make(root, counts=COUNTS, split="train"):
    for name, n in counts.items():
        for i in range(n):
            write_jpeg(root / split / name / f"{i}.jpg", len(name) + i, seed=i, size=(8, 8))


def test_counts_come_from_the_files_and_val_is_drawn_per_class(tmp_path):
    _make(tmp_path)
    data = build_dataset("image_folder", root=tmp_path, val_per_class=3, image_size=8, seed=1)
    assert data.class_names == ["ant", "cat", "dog", "eel"]
    # min(3, n // 2) per class goes to val: ant 0, cat 3, dog 1, eel 3
    assert data.class_counts == [1, 6, 2, 17]
    assert Counter(data.val.targets.tolist()) == {1: 3, 2: 1, 3: 3}
    assert data.test.paths is data.val.paths and "test split is the val split" in data.notes["test"]
    assert not set(data.train.paths) & set(data.val.paths)
    assert len(set(data.train.paths) | set(data.val.paths)) == sum(COUNTS.values())
    for path, label in zip(data.train.paths, data.train.targets.tolist()):
        assert path.split("/")[0] == data.class_names[label]
    image, label = data.train[0]
    assert image.shape == (3, 8, 8) and label == 0


def test_val_draw_is_seeded(tmp_path):
    _make(tmp_path)
    a = load_image_folders(tmp_path, val_per_class=3, seed=5)
    b = load_image_folders(tmp_path, val_per_class=3, seed=5)
    c = load_image_folders(tmp_path, val_per_class=3, seed=6)
    assert a.val.paths == b.val.paths and a.val.paths != c.val.paths


def test_split_off_val_reference():
    labels = torch.tensor([0] * 5 + [1] * 1 + [2] * 40)
    train, val = split_off_val(labels, 3, val_per_class=10, seed=0)
    assert torch.bincount(labels[val], minlength=3).tolist() == [2, 0, 10]
    assert sorted(torch.cat([train, val]).tolist()) == list(range(46))
    assert torch.equal(train, train.sort().values) and torch.equal(val, val.sort().values)


def test_val_and_test_folders_are_used_with_the_training_class_order(tmp_path):
    _make(tmp_path)
    _make(tmp_path, {"eel": 2, "ant": 1}, split="val")  # a val folder may lack classes
    _make(tmp_path, {"dog": 2}, split="test")
    data = build_dataset("image_folder", root=tmp_path, image_size=8)
    assert data.class_counts == [1, 9, 3, 20]
    assert sorted(data.val.targets.tolist()) == [0, 3, 3] and data.test.targets.tolist() == [2, 2]


def test_flat_layout_root_is_the_training_folder(tmp_path):
    for name, n in {"a": 4, "b": 2}.items():
        for i in range(n):
            write_jpeg(tmp_path / name / f"{i}.png", i, seed=i, size=(8, 8))
    splits = load_image_folders(tmp_path, val_per_class=1)
    assert splits.classes == ["a", "b"] and len(splits.train) + len(splits.val) == 6


def test_bad_layouts_say_what_is_wrong(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_image_folders(tmp_path / "nope")
    (tmp_path / "train").mkdir()
    with pytest.raises(DatasetNotFoundError, match="no class folders"):
        load_image_folders(tmp_path)
    _make(tmp_path)
    (tmp_path / "train" / "zebra").mkdir()
    with pytest.raises(ValueError, match="1 training class folder.*zebra"):
        load_image_folders(tmp_path)
    (tmp_path / "train" / "zebra").rmdir()
    _make(tmp_path, {"yak": 1}, split="val")
    with pytest.raises(ValueError, match="not in the training folder: yak"):
        load_image_folders(tmp_path)
