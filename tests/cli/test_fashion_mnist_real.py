"""A short real Fashion-MNIST-LT run through the CLI (the embedded default dataset)."""

import math

import pytest

from helpers.runs import read_metrics
from longtail.cli.main import main
from longtail.data import build_dataset, sources

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not all((sources.DEBIAN_FASHION_MNIST / f"{n}.gz").exists() for n in sources.FASHION_MNIST_FILES),
                       reason=f"Fashion-MNIST is not installed in {sources.DEBIAN_FASHION_MNIST} "
                              "(apt-get install dataset-fashion-mnist)"),
]


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    return tmp_path_factory.mktemp("data")  # filled from the Debian package on first use


def test_fashion_mnist_lt_split(data_root):
    data = build_dataset("fashion_mnist_lt", root=data_root)
    assert data.class_counts == [1000, 599, 359, 215, 129, 77, 46, 27, 16, 10]
    assert len(data.train) == 2478 and len(data.val) == 2000 and len(data.test) == 10000
    assert data.in_channels == 1 and data.image_size == 28
    image, label = data.train[0]
    assert tuple(image.shape) == (1, 28, 28) and 0 <= label < 10


def test_short_real_run_through_the_cli(data_root, tmp_path, capsys):
    code = main(["train", "configs/fashion_mnist_lt/balanced_softmax.yaml", f"data_root={data_root}",
                 f"output_dir={tmp_path}", "name=fmnist", "epochs=1", "warmup_epochs=0", "device=cpu"])
    out = " ".join(capsys.readouterr().out.split())
    assert code == 0
    assert "fashion_mnist_lt (2478 train / 2000 val / 10000 test, 10 classes)" in out
    m = read_metrics(tmp_path / "fmnist")
    assert m["class_counts"] == [1000, 599, 359, 215, 129, 77, 46, 27, 16, 10]
    test = m["test"]
    assert test["num_samples"] == 10000 and test["group_sizes"] == {"many": 5, "medium": 3, "few": 2}
    assert all(math.isfinite(test[k]) and 0 <= test[k] <= 1 for k in ("top1", "mean_class", "many", "medium", "few"))
    assert test["top1"] == pytest.approx(test["mean_class"]), "balanced test set: top-1 = mean per-class"
    assert test["mean_class"] > 0.2, "one epoch already beats chance (0.1) by far"
    assert len(m["history"]) == 1 and math.isfinite(m["history"][0]["train_loss"])
