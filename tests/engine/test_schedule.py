"""The lr schedules against naive references: warm-up + cosine (BALMS recipes) and warm-up + steps (the LDAM-DRW
CIFAR code, the detection recipes), through an optimiser, a CLI run, and the clear refusals of bad keys."""

import math

import pytest
import torch

from helpers.runs import read_metrics, tiny_args
from longtail.cli.main import main
from longtail.config import ConfigError, TrainConfig
from longtail.engine import WarmupCosine, WarmupStep
from longtail.workflows import build


def ldam_code_lr(epoch: int, base_lr: float = 0.1) -> float:
    """The LDAM-DRW CIFAR code's adjust_learning_rate, per epoch (0-based), written out as it reads there."""
    epoch = epoch + 1
    if epoch <= 5:
        return base_lr * epoch / 5
    if epoch > 180:
        return base_lr * 0.0001
    if epoch > 160:
        return base_lr * 0.01
    return base_lr


def lrs_through_an_optimizer(cfg: TrainConfig, steps_per_epoch: int) -> list[float]:
    """The lr of every iteration of ``cfg``'s run, read from an SGD optimiser driven by build_scheduler."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    scheduler = build.build_scheduler(cfg, optimizer, steps_per_epoch)
    seen = []
    for _ in range(cfg.epochs * steps_per_epoch):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return seen


def test_step_schedule_matches_the_ldam_code_after_the_warm_up():
    cfg = TrainConfig(lr=0.1, epochs=200, warmup_epochs=5, warmup_start_factor=0.2, lr_schedule="step",
                      lr_milestones=[160, 180], lr_gamma=0.01)
    steps = 3
    lrs = lrs_through_an_optimizer(cfg, steps)
    for epoch in range(5, 200):  # every iteration of an epoch has the code's lr for that epoch
        for i in range(steps):
            assert lrs[epoch * steps + i] == pytest.approx(ldam_code_lr(epoch), rel=1e-12), (epoch, i)
    # the warm-up: per iteration, linear from 0.2 x lr (the code's first epoch) towards lr, never above it
    warm = lrs[:5 * steps]
    assert warm[0] == pytest.approx(0.02) and all(a < b for a, b in zip(warm, warm[1:])) and warm[-1] < 0.1
    for t, lr in enumerate(warm):
        assert lr == pytest.approx(0.1 * (0.2 + 0.8 * t / (5 * steps)), rel=1e-12)


def test_cosine_schedule_against_its_formula():
    cfg = TrainConfig(lr=0.1, epochs=7, warmup_epochs=2, warmup_start_factor=0.5)
    steps = 4
    total, warmup = 7 * steps, 2 * steps
    for t, lr in enumerate(lrs_through_an_optimizer(cfg, steps)):
        if t < warmup:
            expected = 0.1 * (0.5 + 0.5 * t / warmup)
        else:
            expected = 0.1 * 0.5 * (1 + math.cos(math.pi * (t - warmup) / (total - warmup)))
        assert lr == pytest.approx(expected, rel=1e-12, abs=1e-15), t


def test_the_detection_defaults_and_pickling():
    # the detection recipes: warm-up from 0.001 x lr, x0.1 per step; the factor objects pickle (checkpoints)
    factor = WarmupStep([8, 11], warmup=4)
    assert [factor(t) for t in (0, 2, 4, 7, 8, 10, 11, 30)] == pytest.approx(
        [0.001, 0.001 + 0.999 * 0.5, 1, 1, 0.1, 0.1, 0.01, 0.01])
    import pickle
    for obj in (factor, WarmupCosine(10, 2)):
        copy = pickle.loads(pickle.dumps(obj))
        assert [copy(t) for t in range(12)] == [obj(t) for t in range(12)]


def test_a_step_run_records_the_stepped_lr(tmp_path):
    args = tiny_args(tmp_path, "step", "epochs=4", "lr_schedule=step", "lr_milestones=[2, 3]", "lr_gamma=0.1")
    assert main(["train", *args, "--quiet"]) == 0
    history = read_metrics(tmp_path / "step")["history"]
    # each epoch's record holds the lr the next epoch starts with: x0.1 from epoch 2 (0-based) on, again from 3
    expected = [0.05 * 0.1 ** sum(e + 1 >= m for m in (2, 3)) for e in range(4)]
    assert [rec["lr"] for rec in history] == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("keys, message", [
    ({"lr_schedule": "multistep"}, "lr_schedule must be one of"),
    ({"lr_milestones": [160, 180]}, "are the steps of lr_schedule: step"),
    ({"lr_schedule": "step"}, "needs lr_milestones"),
    ({"lr_schedule": "step", "lr_milestones": [180, 160]}, "increasing whole epochs"),
    ({"lr_schedule": "step", "lr_milestones": [160, 160]}, "increasing whole epochs"),
    ({"lr_schedule": "step", "lr_milestones": [160, 200]}, "before the last epoch"),
    ({"lr_schedule": "step", "lr_milestones": [3, 160]}, "from the end of the warm-up"),
    ({"lr_schedule": "step", "lr_milestones": [160.5]}, "whole epochs"),
    ({"lr_schedule": "step", "lr_milestones": [160], "lr_gamma": 0.0}, "lr_gamma must lie in"),
    ({"lr_schedule": "step", "lr_milestones": [160], "lr_gamma": 2.0}, "lr_gamma must lie in"),
])
def test_bad_schedules_are_refused_before_any_data_is_built(keys, message):
    with pytest.raises(ConfigError, match=message):
        build.check_schedule(TrainConfig(epochs=200, warmup_epochs=5, **keys))


def test_the_cli_refuses_a_bad_schedule_with_the_fix(tmp_path, capsys):
    assert main(["train", *tiny_args(tmp_path, "bad", "lr_schedule=step"), "--quiet"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "needs lr_milestones" in err and "lr_milestones=[160, 180] lr_gamma=0.01" in err
    assert not (tmp_path / "bad").exists()  # refused before the run directory is made
