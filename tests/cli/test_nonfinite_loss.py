"""A non-finite training loss stops the run with a message naming epoch and step; the CLI exits with 2
and the last checkpoint stays as it was."""

import hashlib

import pytest
import torch
from torch import nn

from helpers.runs import read_metrics, tiny_args
from longtail.cli.main import main
from longtail.engine import NonFiniteLossError, train_one_epoch
from longtail.workflows import build


def test_huge_learning_rate_stops_the_cli_with_exit_code_2(tmp_path, capsys):
    assert main(["train", *tiny_args(tmp_path, "diverge", "lr=1e30"), "--quiet"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "non-finite training loss" in err and "at epoch 1, step 2/" in err
    assert "Lower the learning rate" in err
    assert not (tmp_path / "diverge" / "checkpoint.pt").exists()


class NaNInEpoch(nn.Module):
    """Cross-entropy that turns NaN at a chosen (epoch, step); on entering that epoch it records the
    hash of the checkpoint written by the previous one."""

    def __init__(self, epoch: int, step: int, checkpoint) -> None:
        super().__init__()
        self.bad_epoch, self.bad_step, self.checkpoint = epoch, step, checkpoint
        self.epoch, self.step, self.hash_before = 0, 0, None

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.step = epoch, 0
        if epoch == self.bad_epoch:
            self.hash_before = hashlib.sha256(self.checkpoint.read_bytes()).hexdigest()

    def forward(self, logits, target):
        loss = nn.functional.cross_entropy(logits, target)
        bad = (self.epoch, self.step) == (self.bad_epoch, self.bad_step)
        self.step += 1
        return loss * float("nan") if bad else loss


def test_nan_in_a_later_epoch_keeps_the_last_checkpoint(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "nan"
    loss = NaNInEpoch(epoch=1, step=2, checkpoint=run_dir / "checkpoint.pt")
    monkeypatch.setattr(build, "build_loss", lambda cfg, data: loss)
    assert main(["train", *tiny_args(tmp_path, "nan", "epochs=3"), "--quiet"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "non-finite training loss (nan on this rank) at epoch 2, step 3/6" in err
    assert "The last checkpoint is intact" in err
    assert hashlib.sha256((run_dir / "checkpoint.pt").read_bytes()).hexdigest() == loss.hash_before
    state = torch.load(run_dir / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert state["epoch"] == 1
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())
    m = read_metrics(run_dir)
    assert m["epochs_completed"] == 1 and not m["finished"]


def test_engine_raises_before_the_update():
    model = nn.Linear(3, 2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    loader = [(torch.randn(4, 3), torch.tensor([0, 1, 0, 1]))] * 3
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    calls = []

    def loss_fn(logits, target):
        calls.append(1)
        ce = nn.functional.cross_entropy(logits, target)
        return {"ce": ce, "extra": ce * float("inf")} if len(calls) == 1 else {"ce": ce}

    with pytest.raises(NonFiniteLossError, match=r"at epoch 5, step 1/3 \(.*global step 12\).*'extra': inf"):
        train_one_epoch(model, loader, loss_fn, optimizer, device=torch.device("cpu"), epoch=4)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before), "the bad step changed no weight"
