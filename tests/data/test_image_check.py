"""`longtail data check` and the functions behind it: how many and which images are missing or
unreadable, per split."""

import os

import pytest

from helpers.lt_image_tree import write_jpeg
from longtail.cli.main import main
from longtail.data.check import check_split, find_missing, find_unreadable, first_few
from longtail.data.split_file import SplitFileDataset


def test_find_missing_keeps_list_order_and_handles_missing_folders(tmp_path):
    for p in ("a/1.jpg", "a/3.jpg", "b/c/4.jpg"):
        write_jpeg(tmp_path / p, 0, seed=0, size=(4, 4))
    paths = ["a/1.jpg", "a/2.jpg", "x/9.jpg", "a/3.jpg", "b/c/4.jpg", "b/c/5.jpg", "a/2.jpg"]
    naive = [p for p in paths if not os.path.exists(tmp_path / p)]
    assert find_missing(tmp_path, paths) == naive == ["a/2.jpg", "x/9.jpg", "b/c/5.jpg", "a/2.jpg"]
    assert find_missing(tmp_path, [str(tmp_path / "a/1.jpg"), str(tmp_path / "a/7.jpg")]) == [str(tmp_path / "a/7.jpg")]


def test_first_few():
    assert first_few(["a", "b"]) == "a, b"
    assert first_few([str(i) for i in range(1200)], limit=2) == "0, 1 (and 1,198 more)"


@pytest.mark.parametrize("workers", [0, 2])
def test_find_unreadable_decodes_fully(tmp_path, workers):
    files = []
    for i in range(6):
        write_jpeg(tmp_path / f"{i}.jpg", i, seed=i, size=(32, 32))
        files.append(str(tmp_path / f"{i}.jpg"))
    (tmp_path / "1.jpg").write_bytes(b"\x00" * 100)
    data = (tmp_path / "4.jpg").read_bytes()
    (tmp_path / "4.jpg").write_bytes(data[: len(data) // 2])
    bad = find_unreadable(files, num_workers=workers, batch_size=2)
    assert [f for f, _ in bad] == [files[1], files[4]]
    assert "UnidentifiedImageError" in bad[0][1] and "OSError" in bad[1][1]


def test_check_split_reports_missing_then_unreadable(tmp_path):
    paths = [f"c/{i}.jpg" for i in range(5)]
    for i, p in enumerate(paths):
        write_jpeg(tmp_path / p, i, seed=i, size=(8, 8))
    ds = SplitFileDataset(tmp_path, paths + ["c/gone.jpg"], [0] * 6, check_files=False)
    (tmp_path / paths[3]).write_bytes(b"junk")
    report = check_split("train", ds)
    assert (report.total, report.missing, [os.path.basename(f) for f, _ in report.unreadable]) == (6, ["c/gone.jpg"], ["3.jpg"])
    assert not report.ok
    quick = check_split("train", ds, decode=False)
    assert quick.unreadable == [] and not quick.decoded


def test_data_check_cli_exit_status_and_listing(tmp_path, capsys):
    for split, n in (("train", 6), ("val", 2)):
        for i in range(n):
            write_jpeg(tmp_path / split / f"k{i % 2}" / f"{i}.jpg", i % 2, seed=i, size=(8, 8))
    args = ["data", "check", "image_folder", f"data_root={tmp_path}", "--workers", "0"]
    assert main(args) == 0
    assert "all images present and readable" in capsys.readouterr().out
    (tmp_path / "train" / "k1" / "3.jpg").write_bytes(b"junk")
    assert main(args) == 1
    out = capsys.readouterr().out
    assert "problems found" in out and "unreadable" in out and "3.jpg" in out


def test_data_check_on_places_lt_without_images_lists_missing(tmp_path, capsys):
    code = main(["data", "check", "places_lt", f"data_root={tmp_path}", "--exists-only", "--limit", "2"])
    out = capsys.readouterr().out
    assert code == 1
    assert "train/airfield/00004851.jpg" in out and "62,500" in out and "and 62,498 more" in out


def test_data_check_on_in_memory_dataset_has_nothing_to_check(capsys):
    assert main(["data", "check", "synthetic_lt"]) == 0
    assert "nothing to check" in capsys.readouterr().out
