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


# The official optimiser settings (OLTR / BALMS configs, ../shared/REFERENCE.md): stage 1 and BALMS stage 2.
OFFICIAL = {
    "imagenet_lt/ce_resnet10.yaml": dict(lr=0.2, backbone_lr=None, momentum=0.9, weight_decay=5e-4, batch_size=512,
                                         epochs=90),
    "places_lt/ce_resnet152.yaml": dict(lr=0.1, backbone_lr=0.001, momentum=0.9, weight_decay=5e-4, batch_size=128,
                                        epochs=30),
    "imagenet_lt/balms_resnet10.yaml": dict(lr=0.5, epochs=20, batch_size=512, meta_lr=0.001, meta_init_pow=0.1,
                                            meta_batch_size=1024, sampler="meta", loss="balanced_softmax"),
    "places_lt/balms_resnet152.yaml": dict(lr=0.02, epochs=10, batch_size=256, meta_lr=0.001, meta_init_pow=0.3,
                                           sampler="meta", loss="balanced_softmax"),
}


@pytest.mark.parametrize("path", sorted(OFFICIAL))
def test_configs_carry_the_official_optimiser_settings(path):
    cfg = load_config(TrainConfig, Path(__file__).parents[2] / "configs" / path)
    for key, value in OFFICIAL[path].items():
        assert getattr(cfg, key) == value, (path, key)


def test_places_lt_fine_tunes_the_backbone_at_its_own_learning_rate():
    """The Places-LT stage-1 config builds two parameter groups: the classifier at 0.1, the backbone at 0.001."""
    import torch

    from longtail.models import create_model
    from longtail.workflows import build

    cfg = load_config(TrainConfig, Path(__file__).parents[2] / "configs/places_lt/ce_resnet152.yaml")
    model = create_model("resnet18", 365)  # the same backbone / head split as resnet152, smaller
    optimizer = build.build_optimizer(cfg, model)
    head, backbone = optimizer.param_groups
    assert (head["lr"], backbone["lr"]) == (0.1, 0.001) and isinstance(optimizer, torch.optim.SGD)
    assert {id(p) for p in head["params"]} == {id(p) for p in model.head.parameters()}
    assert len(backbone["params"]) == len(list(model.backbone.parameters()))
