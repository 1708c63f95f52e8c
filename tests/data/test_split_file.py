"""Split-list datasets: parsing, the shipped Places-LT / ImageNet-LT lists, missing and unreadable
images (at construction and inside DataLoader workers), and the registered factories."""

from collections import Counter
from importlib import resources
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader

from helpers.lt_image_tree import write_jpeg
from longtail.data import DatasetNotFoundError, build_dataset
from longtail.data.split_file import (
    ImageLoadError,
    MissingImagesError,
    SplitFileDataset,
    class_names_from_paths,
    find_split_file,
    read_split_file,
    shipped_split_dir,
)
from longtail.evaluation import shot_groups


def test_read_split_file_parses_paths_and_labels(tmp_path):
    f = tmp_path / "list.txt"
    f.write_text("train/a/1.jpg 0\n\ntrain/b b/2.jpg 3\n  train/a/3.jpg   0  \n")
    assert read_split_file(f) == (["train/a/1.jpg", "train/b b/2.jpg", "train/a/3.jpg"], [0, 3, 0])


@pytest.mark.parametrize("line", ["train/a/1.jpg", "train/a/1.jpg x", "train/a/1.jpg -1", "7"])
def test_read_split_file_names_the_bad_line(tmp_path, line):
    f = tmp_path / "list.txt"
    f.write_text(f"train/a/0.jpg 0\n{line}\n")
    with pytest.raises(ValueError, match=r"list.txt:2: expected 'relative/path label'"):
        read_split_file(f)


def test_shipped_places_lt_lists_give_the_published_statistics():
    """Must-show: 365 classes, 62,500 training images, many/medium/few = 131/163/71 (Liu et al. 2019)."""
    data = build_dataset("places_lt", check_files=False)
    counts = data.class_counts
    assert (len(counts), sum(counts), max(counts), min(counts)) == (365, 62_500, 4_980, 5)
    assert {k: len(v) for k, v in shot_groups(counts, 100, 20).items()} == {"many": 131, "medium": 163, "few": 71}
    assert len(data.val) == 7_300 and set(Counter(data.val.targets.tolist()).values()) == {20}
    assert len(data.test) == 36_500 and set(Counter(data.test.targets.tolist()).values()) == {100}
    assert data.class_names[0] == "airfield" and data.num_classes == 365
    assert torch.equal(data.train_labels, data.train.targets)


def test_shipped_imagenet_lt_val_and_test_lists_are_balanced():
    for name, per_class in (("ImageNet_LT_val.txt", 20), ("ImageNet_LT_test.txt", 50)):
        _, labels = read_split_file(shipped_split_dir("imagenet_lt") / name)
        counts = Counter(labels)
        assert len(counts) == 1000 and set(counts.values()) == {per_class}


def test_shipped_lists_are_package_resources():
    """importlib.resources finds them (so an installed wheel does too: package-data resources/**/*)."""
    for folder, names in (("places_lt", ["Places_LT_train.txt", "Places_LT_val.txt", "Places_LT_test.txt"]),
                          ("imagenet_lt", ["ImageNet_LT_val.txt", "ImageNet_LT_test.txt"])):
        for name in names:
            assert (resources.files("longtail") / "resources" / "splits" / folder / name).is_file()
    assert (resources.files("longtail") / "resources" / "splits" / "PROVENANCE.md").is_file()


def test_imagenet_lt_without_train_list_says_where_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="OLTR") as info:
        build_dataset("imagenet_lt", root=tmp_path, check_files=False)
    assert "ImageNet_LT_train.txt" in str(info.value) and "split_dir" in str(info.value)


def test_split_dir_list_wins_and_shipped_lists_fill_in(tmp_path):
    (tmp_path / "ImageNet_LT_train.txt").write_text("train/n01440764/x.JPEG 0\ntrain/n01443537/y.JPEG 1\n")
    data = build_dataset("imagenet_lt", root=tmp_path / "images", split_dir=tmp_path, check_files=False)
    assert data.notes["train_list"] == str(tmp_path / "ImageNet_LT_train.txt")
    assert data.notes["val_list"] == str(shipped_split_dir("imagenet_lt") / "ImageNet_LT_val.txt")
    assert data.class_counts[:2] == [1, 1] and len(data.class_counts) == 1000  # classes from val/test too
    assert data.class_names[:2] == ["n01440764", "n01443537"] and data.class_names[999] == "n15075141"


def test_find_split_file_order(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (b / "Places_LT_val.txt").write_text("x 0\n")
    assert find_split_file("Places_LT_val.txt", split_dir=a, shipped="places_lt", root=b).parent == shipped_split_dir("places_lt")
    assert find_split_file("Places_LT_val.txt", split_dir=b, shipped="places_lt", root=a) == b / "Places_LT_val.txt"
    assert find_split_file("Places_LT_val.txt", split_dir=None, shipped=None, root=b) == b / "Places_LT_val.txt"
    with pytest.raises(DatasetNotFoundError, match="looked in"):
        find_split_file("nope.txt", split_dir=a, shipped=None, root=b, hint="get it here")


def _tree(tmp_path, n=6):
    paths = [f"train/c{i % 2}/{i}.jpg" for i in range(n)]
    for i, p in enumerate(paths):
        write_jpeg(tmp_path / p, i % 2, seed=i)
    return paths, [i % 2 for i in range(n)]


def test_missing_images_reported_at_construction_with_count_and_names(tmp_path):
    paths, labels = _tree(tmp_path)
    listed = paths + [f"train/c0/gone{i}.jpg" for i in range(7)] + ["train/nodir/x.jpg"]
    with pytest.raises(MissingImagesError) as info:
        SplitFileDataset(tmp_path, listed, labels + [0] * 8, source="mylist.txt")
    msg = str(info.value)
    assert "8 of 14 images listed in mylist.txt are missing" in msg
    assert "train/c0/gone0.jpg, train/c0/gone1.jpg" in msg and "(and 3 more)" in msg
    assert "data_root" in msg and "longtail data check" in msg
    with pytest.raises(MissingImagesError, match="does not exist"):
        SplitFileDataset(tmp_path / "nowhere", paths, labels)


def test_items_are_transformed_images_with_labels(tmp_path):
    paths, labels = _tree(tmp_path)
    ds = SplitFileDataset(tmp_path, paths, labels, transform=lambda im: torch.tensor(im.size))
    assert len(ds) == 6 and ds[3][1] == 1 and ds[3][0].tolist() == [20, 16]
    twin = ds.with_transform(None)
    assert twin.paths is ds.paths and twin[0][0].mode == "RGB" and ds.transform is not None
    sub = ds.subset([4, 1])
    assert sub.paths == [paths[4], paths[1]] and sub.targets.tolist() == [0, 1]


def _corrupt(tmp_path, paths):
    (tmp_path / paths[2]).write_bytes(b"not a jpeg at all")
    data = (tmp_path / paths[4]).read_bytes()
    (tmp_path / paths[4]).write_bytes(data[: len(data) // 2])  # truncated JPEG


@pytest.mark.parametrize("workers", [0, 1])
def test_unreadable_image_error_names_the_file_even_from_a_worker(tmp_path, workers):
    paths, labels = _tree(tmp_path)
    _corrupt(tmp_path, paths)
    ds = SplitFileDataset(tmp_path, paths, labels, transform=lambda im: torch.zeros(1), source="mylist.txt")
    loader = DataLoader(ds, batch_size=2, num_workers=workers)
    with pytest.raises(ImageLoadError) as info:
        list(loader)
    msg = str(info.value)
    assert msg.startswith(f"cannot read image {tmp_path / paths[2]} (item 2 of mylist.txt): UnidentifiedImageError")
    assert "longtail data check" in msg and "Traceback" not in msg
    with pytest.raises(ImageLoadError, match=rf"{paths[4]} .*(?i:truncated)"):
        ds[4]


def test_class_names_from_paths():
    names = class_names_from_paths(["train/airfield/1.jpg", "train/bar/2.jpg", "train/airfield/3.jpg"], [0, 2, 0], 4)
    assert names == ["airfield", "class_1", "bar", "class_3"]


def test_inat2018_reads_the_list_format_and_uses_val_as_test(tmp_path):
    train = [f"train_val2018/Plantae/{c}/{i}.jpg {c}" for c in (0, 1, 2) for i in range(c + 2)]
    val = [f"train_val2018/Plantae/{c}/v{c}.jpg {c}" for c in (0, 1, 2)]
    (tmp_path / "iNaturalist18_train.txt").write_text("\n".join(train) + "\n")
    (tmp_path / "iNaturalist18_val.txt").write_text("\n".join(val) + "\n")
    for line in train + val:
        p, y = line.split()
        write_jpeg(tmp_path / "img" / p, int(y), seed=0)
    data = build_dataset("inat2018", root=tmp_path / "img", split_dir=tmp_path, image_size=8, num_classes=3)
    assert data.class_counts == [2, 3, 4] and data.class_names == ["0", "1", "2"]
    assert data.val.paths is data.test.paths and len(data.test) == 3
    image, label = data.train[0]
    assert image.shape == (3, 8, 8) and image.dtype == torch.float32 and label == 0
    with pytest.raises(DatasetNotFoundError, match="classifier-balancing"):
        build_dataset("inat2018", root=tmp_path / "img", check_files=False)


def test_split_dataset_factories_reject_unknown_options():
    with pytest.raises(ValueError, match="does not take option"):
        build_dataset("places_lt", imbalance_factor=10, check_files=False)


def test_default_roots_follow_longtail_data(tmp_path, monkeypatch):
    monkeypatch.setenv("LONGTAIL_DATA", str(tmp_path))
    assert build_dataset("places_lt", check_files=False).notes["root"] == str(Path(tmp_path) / "places_lt")


def test_a_label_outside_the_declared_classes_names_file_and_line(tmp_path):
    lst = tmp_path / "train.txt"
    lst.write_text("a/1.jpg 0\na/2.jpg 2\nb/3.jpg 50\n")
    assert read_split_file(lst)[1] == [0, 2, 50]  # no class count declared: any label >= 0
    with pytest.raises(ValueError, match=r"train.txt:3: label 50 is outside 0..2 \(the dataset has 3 classes\)"):
        read_split_file(lst, num_classes=3)


def test_places_lt_has_365_classes_whatever_the_largest_label(tmp_path):
    """A Places-LT list with a label 400 is an error, not a 401-class model."""
    from longtail.data import build_dataset

    split_dir = tmp_path / "lists"
    split_dir.mkdir()
    for name in ("Places_LT_train.txt", "Places_LT_val.txt", "Places_LT_test.txt"):
        (split_dir / name).write_text("train/a/1.jpg 0\ntrain/b/2.jpg 3\n")
    data = build_dataset("places_lt", root=tmp_path, split_dir=split_dir, check_files=False)
    assert data.num_classes == 365 and data.class_counts[:4] == [1, 0, 0, 1]
    (split_dir / "Places_LT_val.txt").write_text("train/a/1.jpg 0\ntrain/b/2.jpg 400\n")
    with pytest.raises(ValueError, match="Places_LT_val.txt:2: label 400 is outside 0..364"):
        build_dataset("places_lt", root=tmp_path, split_dir=split_dir, check_files=False)
