"""CIFAR-10/100-LT from an image copy (tar or folder): subset counts, labels, validation rule, errors."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import pytest
import torch

from helpers.cifar_stand_in import PIXEL_STEP, png_of, write_stand_in
from longtail.data import build_dataset, long_tailed_counts
from longtail.data.cifar_images import CIFAR10_CLASSES, CifarImagesError, load_cifar_images

REPO = Path(__file__).parents[2]
# the whole JPEG copy (docs/datasets.md); tests that need it skip where it is absent
FULL_COPY = Path(os.environ.get("LONGTAIL_CIFAR10_JPEG", REPO / "data" / "cifar10_jpeg.tar"))
SLICE = Path(os.environ.get("LONGTAIL_CIFAR10_SLICE", REPO.parent / "shared" / "data" / "cifar10" / "cifar10_jpeg_slice.tar"))


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory) -> Path:
    return write_stand_in(tmp_path_factory.mktemp("cifar") / "cifar10_jpeg.tar")


def labels_from_pixels(images: torch.Tensor) -> torch.Tensor:
    return images[:, 0, 0, 0].long() // PIXEL_STEP


@pytest.mark.parametrize("imbalance_factor, total", [(100, 12_406), (200, 11_203), (10, 20_431)])
def test_cifar10_lt_subset_of_the_stand_in_has_the_papers_counts(stand_in, imbalance_factor, total):
    data = build_dataset("cifar10_lt", root=stand_in, imbalance_factor=imbalance_factor, seed=3)
    assert len(data.train) == total
    assert data.class_counts == long_tailed_counts(10, 5000, imbalance_factor)
    assert torch.bincount(data.train_labels, minlength=10).tolist() == data.class_counts
    assert len(data.test) == 10_000
    # every image carries the label of its folder
    assert torch.equal(labels_from_pixels(data.train.images.permute(0, 2, 3, 1)), data.train.targets)
    assert torch.equal(labels_from_pixels(data.test.images.permute(0, 2, 3, 1)), data.test.targets)
    # validation: 20 leftover images per class; the head class keeps all 5,000 and has none left
    val_counts = torch.bincount(data.val.targets, minlength=10).tolist()
    assert val_counts == [0] + [20] * 9
    assert "classes [0]" in data.notes["val"]


def test_subset_is_seeded_and_val_never_overlaps_train(stand_in):
    from longtail.data import long_tailed_split

    labels = torch.arange(10).repeat_interleave(5000)
    counts = long_tailed_counts(10, 5000, 100)
    a = long_tailed_split(labels, counts, val_per_class=20, seed=1, partial_val=True)
    b = long_tailed_split(labels, counts, val_per_class=20, seed=1, partial_val=True)
    c = long_tailed_split(labels, counts, val_per_class=20, seed=2, partial_val=True)
    assert torch.equal(a.train, b.train) and torch.equal(a.val, b.val)
    assert not torch.equal(a.train, c.train)
    assert not set(a.train.tolist()) & set(a.val.tolist())
    # the training draw does not depend on the validation size
    assert torch.equal(a.train, long_tailed_split(labels, counts, val_per_class=0, seed=1).train)
    with pytest.raises(ValueError, match="fewer than the 5000 training \\+ 20 validation"):
        long_tailed_split(labels, counts, val_per_class=20, seed=1)


def test_class_lists_are_torchvisions():
    """torchvision's CIFAR classes are the batches' label order, which is alphabetical for both datasets."""
    from longtail.data.cifar_images import CIFAR100_CLASSES

    assert len(set(CIFAR10_CLASSES)) == 10 and list(CIFAR10_CLASSES) == sorted(CIFAR10_CLASSES)
    assert len(set(CIFAR100_CLASSES)) == 100 and list(CIFAR100_CLASSES) == sorted(CIFAR100_CLASSES)
    assert {"lobster", "man", "aquarium_fish", "worm"} <= set(CIFAR100_CLASSES)


def test_folder_and_tar_give_the_same_arrays(tmp_path):
    tar_path = write_stand_in(tmp_path / "c.tar", per_class={"train": 3, "test": 2})
    with tarfile.open(tar_path) as tar:
        tar.extractall(tmp_path / "tree", filter="data")
    from_tar = load_cifar_images(tar_path, 10)
    for root in (tmp_path / "tree", tmp_path / "tree" / "cifar10_jpeg"):
        from_folder = load_cifar_images(root, 10)
        for split in ("train", "test"):
            assert torch.equal(from_tar[split].images, from_folder[split].images)
            assert torch.equal(from_tar[split].labels, from_folder[split].labels)
    assert from_tar["train"].images.shape == (30, 32, 32, 3) and from_tar["train"].images.dtype == torch.uint8


def test_a_copy_of_another_dataset_is_refused(tmp_path):
    names = CIFAR10_CLASSES[:9] + ("zebra",)
    path = write_stand_in(tmp_path / "c.tar", per_class={"train": 1, "test": 1}, class_names=names)
    with pytest.raises(CifarImagesError, match="'zebra'.*not CIFAR-10 classes"):
        load_cifar_images(path, 10)


def test_a_missing_class_is_named(tmp_path):
    path = write_stand_in(tmp_path / "c.tar", per_class={"train": 1, "test": 1}, class_names=CIFAR10_CLASSES[:9])
    with pytest.raises(CifarImagesError, match="lacks class folder.*'truck'"):
        load_cifar_images(path, 10)


def test_a_truncated_archive_says_so(tmp_path):
    path = write_stand_in(tmp_path / "c.tar", per_class={"train": 20, "test": 2})
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2 + 100])
    with pytest.raises(CifarImagesError, match="truncated"):
        build_dataset("cifar10_lt", root=path, n_max=10, imbalance_factor=2)


def test_an_image_of_the_wrong_size_or_not_an_image_is_named(tmp_path):
    import io

    for name, payload, message in (("big.png", png_of(1, size=40), "is \\(40, 40\\), not a 32x32"),
                                   ("bad.png", b"not a png", "cannot be decoded")):
        path = write_stand_in(tmp_path / f"{name}.tar", per_class={"train": 1, "test": 1})
        with tarfile.open(path, "a") as tar:
            info = tarfile.TarInfo(f"cifar10_jpeg/train/cat/{name}")
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
        with pytest.raises(CifarImagesError, match=f"{name}.*{message}"):
            load_cifar_images(path, 10)


def test_a_missing_path_explains_both_sources(tmp_path):
    from longtail.data import DatasetNotFoundError

    with pytest.raises(DatasetNotFoundError, match="train/<class>/\\*.jpg"):
        build_dataset("cifar10_lt", root=tmp_path / "nowhere")


CIFAR10_CONFIGS = sorted(str(p.relative_to(REPO)) for p in (REPO / "configs").glob("cifar10_lt/**/*.yaml"))


@pytest.mark.parametrize("config", [c for c in CIFAR10_CONFIGS if "posthoc" not in c and "tau_norm" not in c])
def test_shipped_cifar10_configs_build_their_dataset(stand_in, config):
    from longtail.config import TrainConfig, load_config
    from longtail.workflows import build

    cfg = load_config(TrainConfig, REPO / config, [f"data_root={stand_in}"])
    data = build.build_data(cfg)
    assert sum(data.class_counts) == {10: 20_431, 100: 12_406, 200: 11_203}[int(cfg.imbalance_factor)]
    cfg.eval_batch_size = cfg.batch_size
    images, labels = next(iter(build.eval_loader(data.train, cfg, _single())))  # training transform, one batch
    assert images.shape == (cfg.batch_size, 3, 32, 32) and images.dtype == torch.float32
    assert labels.shape == (cfg.batch_size,)


@pytest.mark.parametrize("config", [c for c in CIFAR10_CONFIGS if "posthoc" in c or "tau_norm" in c])
def test_shipped_cifar10_posthoc_configs_load(config):
    from longtail.config import PosthocConfig, load_config

    cfg = load_config(PosthocConfig, REPO / config)
    assert cfg.method in ("logit_adjust", "tau_norm")


@pytest.fixture(scope="module")
def stand_in_100(tmp_path_factory) -> Path:
    return write_stand_in(tmp_path_factory.mktemp("cifar100") / "cifar100.tar", num_classes=100, prefix="cifar100")


@pytest.mark.parametrize("config", sorted(str(p.relative_to(REPO)) for p in (REPO / "configs").glob("cifar100_lt/*.yaml")))
def test_shipped_cifar100_configs_build_their_dataset(stand_in_100, config):
    from longtail.config import TrainConfig, load_config
    from longtail.workflows import build

    cfg = load_config(TrainConfig, REPO / config, [f"data_root={stand_in_100}"])
    data = build.build_data(cfg)
    assert sum(data.class_counts) == {10: 19_573, 100: 10_847, 200: 9_502}[int(cfg.imbalance_factor)]
    assert torch.equal(labels_from_pixels(data.train.images.permute(0, 2, 3, 1)), data.train.targets)
    assert torch.bincount(data.val.targets, minlength=100)[0] == 0  # the head class keeps all 500


def _single():
    from longtail.engine.distributed import DistInfo

    return DistInfo(rank=0, world_size=1, local_rank=0, device=torch.device("cpu"))


@pytest.mark.slow
@pytest.mark.skipif(not FULL_COPY.is_file(), reason=f"the whole CIFAR-10 JPEG copy is not at {FULL_COPY} "
                    "(set LONGTAIL_CIFAR10_JPEG; docs/datasets.md says how to get it)")
def test_whole_jpeg_copy_gives_the_papers_subsets():
    for imbalance_factor, total in ((100, 12_406), (200, 11_203)):
        data = build_dataset("cifar10_lt", root=FULL_COPY, imbalance_factor=imbalance_factor)
        assert len(data.train) == total and len(data.test) == 10_000
        assert torch.bincount(data.test.targets).tolist() == [1000] * 10


@pytest.mark.slow
@pytest.mark.skipif(not SLICE.is_file(), reason=f"the 2,000-image CIFAR-10 slice is not at {SLICE} (set LONGTAIL_CIFAR10_SLICE)")
def test_real_images_train_end_to_end_through_the_cli(tmp_path):
    import json

    from longtail.cli.main import main

    args = ["train", str(REPO / "configs/cifar10_lt/ldam_protocol/balanced_softmax.yaml"), f"data_root={SLICE}",
            "n_max=100", "imbalance_factor=10", "epochs=2", "warmup_epochs=1", "batch_size=64", "threads=1",
            f"output_dir={tmp_path}", "name=real"]
    assert main(args) == 0
    metrics = json.loads((tmp_path / "real" / "metrics.json").read_text())
    assert metrics["finished"] and metrics["class_counts"] == long_tailed_counts(10, 100, 10)
    assert metrics["test"]["num_samples"] == 1000 and metrics["threads"] == 1
    # eval_every 5 with 2 epochs: validated only after the last epoch
    assert [("val_mean_class" in h) for h in metrics["history"]] == [False, True]


def test_a_packed_long_tailed_copy_reads_back_as_the_same_subset(tmp_path):
    """write_long_tailed_copy keeps the chosen files byte for byte; presampled=true takes them as they are."""
    import io

    from longtail.data import long_tailed_split
    from longtail.data.cifar_images import write_long_tailed_copy

    # pixel value 4 * file number + class % 4: distinct within a class, so the multisets below pin the files
    source = tmp_path / "src.tar"
    with tarfile.open(source, "w") as tar:
        for label, name in enumerate(CIFAR10_CLASSES):
            for split, n in (("train", 60), ("test", 3)):
                for i in range(n):
                    data = png_of(4 * i + (label % 4))
                    info = tarfile.TarInfo(f"c/{split}/{name}/{i:04d}.png")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    full = load_cifar_images(source, 10)
    split = long_tailed_split(full["train"].labels, long_tailed_counts(10, 50, 10), val_per_class=5, seed=0,
                              partial_val=True)
    packed = write_long_tailed_copy(source, tmp_path / "lt.tar.gz", 10, split.train, split.val)
    data = build_dataset("cifar10_lt", root=packed, n_max=50, imbalance_factor=10, presampled=True)
    assert data.class_counts == long_tailed_counts(10, 50, 10) and len(data.test) == 30

    def multiset(images, labels):
        return sorted(zip(labels.tolist(), images.reshape(len(labels), -1)[:, 0].tolist()))
    assert multiset(data.train.images, data.train.targets) == multiset(full["train"].images[split.train].permute(0, 3, 1, 2),
                                                                       full["train"].labels[split.train])
    assert multiset(data.val.images, data.val.targets) == multiset(full["train"].images[split.val].permute(0, 3, 1, 2),
                                                                   full["train"].labels[split.val])
    with pytest.raises(ValueError, match="presampled train/ holds .* pass the settings the copy was written with"):
        build_dataset("cifar10_lt", root=packed, n_max=50, imbalance_factor=20, presampled=True)
