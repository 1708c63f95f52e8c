"""The ImageNet-LT / Places-LT / iNaturalist configs load, name known components with accepted options,
and `data stats` runs on them without images."""

from pathlib import Path

import pytest

from longtail.cli.main import main
from longtail.config import TrainConfig, load_config
from longtail.data import DATASETS
from longtail.models import MODELS
from longtail.workflows.build import check_options

CONFIGS = [str(Path(__file__).parents[2] / "configs" / name) for name in (
    "imagenet_lt/ce_resnet10.yaml", "imagenet_lt/ce_resnext50.yaml", "places_lt/ce_resnet152.yaml",
    "inat2018/ce_resnet50.yaml")]


@pytest.mark.parametrize("path", CONFIGS)
def test_config_names_known_components_with_accepted_options(path):
    cfg = load_config(TrainConfig, path)
    check_options("dataset", cfg.dataset, DATASETS.get(cfg.dataset), cfg.dataset_options)
    check_options("model", cfg.model, MODELS.get(cfg.model), cfg.model_options, reserved=("num_classes", "in_channels"))
    assert cfg.select_on == ("last" if cfg.dataset == "inat2018" else "val")


def test_data_stats_on_the_places_config(capsys):
    assert main(["data", "stats", str(Path(__file__).parents[2] / "configs/places_lt/ce_resnet152.yaml")]) == 0
    assert "131 / 163 / 71" in " ".join(capsys.readouterr().out.split())


def test_imagenet_config_without_train_list_points_to_oltr(tmp_path, capsys):
    cfg = str(Path(__file__).parents[2] / "configs/imagenet_lt/ce_resnet10.yaml")
    assert main(["data", "stats", cfg, f"data_root={tmp_path}"]) == 2
    assert "OpenLongTailRecognition-OLTR" in " ".join(capsys.readouterr().err.split())
