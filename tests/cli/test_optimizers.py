"""Parameter groups (backbone / head lr and weight decay), AdamW, and the clear refusals."""

import pytest
import torch

from helpers.runs import read_metrics, tiny_args
from longtail.cli.main import main
from longtail.config import ConfigError, TrainConfig
from longtail.models import create_model
from longtail.workflows import build


def test_backbone_and_head_get_their_own_groups():
    model = create_model("resnet8_small", 6, 1)
    cfg = TrainConfig(lr=0.1, backbone_lr=0.001, weight_decay=5e-4, backbone_weight_decay=1e-4)
    opt = build.build_optimizer(cfg, model)
    head, backbone = opt.param_groups
    assert (head["lr"], head["weight_decay"], backbone["lr"], backbone["weight_decay"]) == (0.1, 5e-4, 0.001, 1e-4)
    assert {id(p) for p in head["params"]} == {id(p) for p in model.head.parameters()}
    assert {id(p) for p in backbone["params"]} == {id(p) for p in model.backbone.parameters()}
    # one step moves the backbone 100x less than a single-lr SGD would (plain SGD, no momentum / decay)
    cfg = TrainConfig(lr=0.1, backbone_lr=0.001, weight_decay=0.0, momentum=0.0)
    opt = build.build_optimizer(cfg, model)
    before = [p.detach().clone() for p in model.backbone.parameters()]
    model(torch.randn(4, 1, 28, 28)).sum().backward()
    grads = [p.grad.clone() for p in model.backbone.parameters()]
    opt.step()
    for b, g, p in zip(before, grads, model.backbone.parameters()):
        torch.testing.assert_close(p.detach(), b - 0.001 * g)


def test_adamw_trains_and_is_refused_with_the_meta_sampler(tmp_path, capsys):
    assert main(["train", *tiny_args(tmp_path, "adamw", "optimizer=adamw", "lr=0.003", "weight_decay=0.05"), "--quiet"]) == 0
    assert read_metrics(tmp_path / "adamw")["finished"]
    assert main(["train", *tiny_args(tmp_path, "m", f"init_from={tmp_path / 'adamw'}", "sampler=meta",
                                     "optimizer=adamw"), "--quiet"]) == 2
    assert "cannot be mirrored: use optimizer: sgd" in " ".join(capsys.readouterr().err.split())


@pytest.mark.parametrize("cfg, message", [
    (TrainConfig(optimizer="adam"), "optimizer must be one of"),
    (TrainConfig(backbone_lr=0.01), "stage 2 .* freezes the backbone"),
])
def test_bad_optimizer_settings(cfg, message):
    with pytest.raises(ConfigError, match=message):
        build.build_optimizer(cfg, create_model("resnet8_small", 6, 1), stage2="stage 2" in message)


def test_list_keys_explains_the_keys(capsys):
    assert main(["train", "--list-keys"]) == 0
    out = capsys.readouterr().out
    line = next(row for row in out.splitlines() if row.split()[0] == "backbone_lr")
    assert "default None" in line and "separate lr for the backbone" in line
