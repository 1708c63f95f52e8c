"""A dataset that is not on disk gives an error that says how to get it."""

import pytest

from longtail.cli.main import main
from longtail.data import DatasetNotFoundError, build_dataset, sources


def test_missing_fashion_mnist_says_how_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST", tmp_path / "no-such-debian-package")
    (tmp_path / "empty").mkdir()  # an existing root without the files (a missing root: test_error_messages.py)
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist") as info:
        build_dataset("fashion_mnist_lt", root=tmp_path / "empty")
    assert "download=true" in str(info.value)
    assert str(tmp_path / "empty") in str(info.value)


def test_missing_dataset_through_the_cli_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(sources, "DEBIAN_FASHION_MNIST", tmp_path / "no-such-debian-package")
    (tmp_path / "empty").mkdir()
    code = main(["train", "dataset=fashion_mnist_lt", f"data_root={tmp_path / 'empty'}", "name=x",
                 f"output_dir={tmp_path / 'runs'}", "epochs=1", "device=cpu", "--quiet"])
    assert code == 2
    assert "dataset-fashion-mnist" in capsys.readouterr().err


def test_missing_cifar_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFoundError, match="download=true"):
        build_dataset("cifar10_lt", root=tmp_path)
