"""Places-LT through the command line: stats from the shipped lists, one training epoch on a small
image tree built from the real lists, and a training-time error that names an unreadable image."""

import json
from collections import Counter

import pytest

from helpers.lt_image_tree import build_places_tree
from longtail.cli.main import main
from longtail.evaluation import shot_groups


def test_data_stats_shows_the_published_places_lt_split(capsys):
    assert main(["data", "stats", "places_lt"]) == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps at the terminal width
    assert "62,500 training images, 365 classes" in out
    assert "many (> 100) / medium / few (< 20) classes: 131 / 163 / 71" in out
    assert "val 7,300 images, test 36,500 images" in out


def _train_args(root, split_dir, tmp_path, *extra):
    return ["train", "dataset=places_lt", f"data_root={root}", f"dataset_options={{split_dir: {split_dir}, image_size: 16}}",
            "model=resnet8_small", "epochs=1", "batch_size=128", "eval_batch_size=256", "device=cpu",
            f"output_dir={tmp_path / 'runs'}", "name=places", *extra, "--quiet"]


@pytest.mark.slow
def test_one_epoch_on_a_places_lt_image_tree_through_the_cli(tmp_path):
    root, split_dir, lines = build_places_tree(tmp_path)
    assert main(_train_args(root, split_dir, tmp_path, "many_threshold=5", "few_threshold=2")) == 0
    metrics = json.loads((tmp_path / "runs" / "places" / "metrics.json").read_text())
    counts = Counter(y for _, y in lines["train"])
    assert metrics["finished"] and metrics["epochs_completed"] == 1
    assert metrics["class_counts"] == [counts[c] for c in range(365)] and sum(metrics["class_counts"]) == 411
    assert metrics["class_names"][0] == "airfield"
    expected = {k: len(v) for k, v in shot_groups(metrics["class_counts"], 5, 2).items()}
    assert metrics["test"]["group_sizes"] == expected and min(expected.values()) > 0
    assert len(metrics["test"]["per_class"]) == 365
    assert 0.0 <= metrics["test"]["top1"] <= 1.0


def test_unreadable_image_at_training_time_names_the_file(tmp_path, capsys):
    root, split_dir, lines = build_places_tree(tmp_path, train_per=5000)
    bad = root / lines["train"][7][0]
    bad.write_bytes(b"this is not a JPEG")
    # one batch holds every image, so the bad one fails the first batch (no training step needed)
    assert main(_train_args(root, split_dir, tmp_path, "num_workers=1", "batch_size=1024")) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert f"cannot read image {bad}" in err and "UnidentifiedImageError" in err
    assert "longtail data check" in err and "Traceback" not in err


def test_missing_images_stop_training_before_it_starts(tmp_path, capsys):
    root, split_dir, lines = build_places_tree(tmp_path, train_per=5000)
    for p, _ in lines["test"][:3]:
        (root / p).unlink()
    assert main(_train_args(root, split_dir, tmp_path)) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "3 of 365 images listed in" in err and lines["test"][0][0] in err
