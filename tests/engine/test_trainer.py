"""The library Trainer without any config or run directory: hooks are called where documented, a run
continued from ``state_dict`` ends exactly where an uninterrupted one does, and ``select_on=val`` tests
the weights of the best validation epoch (kept in memory)."""

import copy

import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from longtail.engine import Hook, Trainer
from longtail.losses import CrossEntropyLoss
from longtail.samplers import ClassBalancedSampler

COUNTS = [40, 12, 4]


def data():
    g = torch.Generator().manual_seed(0)
    labels = torch.repeat_interleave(torch.arange(3), torch.tensor(COUNTS))
    x = torch.randn(len(labels), 5, generator=g) + nn.functional.one_hot(labels, 5).float()
    val_labels = torch.arange(3).repeat(6)
    val_x = torch.randn(18, 5, generator=g) + nn.functional.one_hot(val_labels, 5).float()
    return TensorDataset(x, labels), TensorDataset(val_x, val_labels), labels


def make_trainer(epochs=4, hooks=(), **kw):
    train, val, labels = data()
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    sampler = ClassBalancedSampler(labels, seed=3)
    loader = DataLoader(train, batch_size=8, sampler=sampler)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9)
    return Trainer(model, loader, CrossEntropyLoss(COUNTS), optimizer, epochs=epochs, class_counts=COUNTS,
                   val_loader=DataLoader(val, batch_size=6), sampler=sampler, hooks=hooks, many=20, few=5, **kw)


class Recorder(Hook):
    def __init__(self):
        self.calls, self.steps, self.counter = [], 0, 0

    def before_train(self, trainer):
        self.calls.append("before_train")

    def before_epoch(self, epoch):
        self.calls.append(f"before_epoch {epoch}")

    def before_step(self, inputs, targets, global_step):
        assert inputs.shape[0] == targets.shape[0]
        self.steps += 1

    def after_epoch(self, epoch, record):
        self.calls.append(f"after_epoch {epoch} val={'val_mean_class' in record}")
        self.counter += 1

    def state_dict(self):
        return {"counter": self.counter}

    def load_state_dict(self, state):
        self.counter = state["counter"]

    def metrics(self):
        return {"recorder_counter": self.counter}


def test_hooks_are_called_in_order_and_their_state_is_checkpointed():
    hook = Recorder()
    trainer = make_trainer(epochs=3, hooks=[hook], eval_every=2)
    trainer.fit()
    assert hook.calls == ["before_train", "before_epoch 0", "after_epoch 0 val=False", "before_epoch 1",
                          "after_epoch 1 val=True", "before_epoch 2", "after_epoch 2 val=True"]
    assert hook.steps == 3 * len(trainer.loader)
    assert trainer.state_dict()["hooks"] == [{"counter": 3}]
    assert trainer.test(trainer.val_loader)["recorder_counter"] == 3


def test_continuing_from_a_state_dict_matches_an_uninterrupted_run():
    straight = make_trainer(epochs=4)
    straight.fit()
    first = make_trainer(epochs=4)
    first.epochs = 2  # stop after two epochs, keep the checkpoint
    first.fit()
    state = copy.deepcopy(first.state_dict())
    second = make_trainer(epochs=4)
    second.load_state_dict(state)
    assert second.start_epoch == 2
    second.fit()
    for a, b in zip(straight.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)
    assert [r["train_loss"] for r in straight.history] == [r["train_loss"] for r in second.history]


def test_select_on_val_tests_the_best_validation_epoch():
    trainer = make_trainer(epochs=5)
    trainer.fit()
    scores = [r["val_mean_class"] for r in trainer.history]
    assert trainer.best["epoch"] == 1 + max(range(5), key=lambda e: (scores[e], -e))
    last = trainer.test(trainer.val_loader)
    # the selected weights are the ones whose validation score was recorded as best
    assert abs(last["test"]["mean_class"] - trainer.best["score"]) < 1e-9
    assert abs(last["test_last"]["mean_class"] - scores[-1]) < 1e-9


def test_compile_in_place_keeps_the_weights_and_falls_back_to_eager():
    from longtail.engine.loop import compile_in_place

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(5, 8), nn.ReLU(), nn.Linear(8, 3))
    x = torch.randn(4, 5)
    expected = net(x)
    keys = list(net.state_dict())
    assert compile_in_place(net, x[:1], log=lambda text: None)
    torch.testing.assert_close(net(x), expected)
    assert list(net.state_dict()) == keys  # checkpoints load into the eager model and back

    class Unsupported(nn.Module):
        def forward(self, x):
            raise RuntimeError("an op the compiler cannot handle")

    said = []
    assert not compile_in_place(Unsupported(), x, log=said.append)
    assert "Unsupported did not compile (RuntimeError" in said[0] and "training it eagerly" in said[0]


def test_compile_through_the_cli_falls_back_with_a_message(tmp_path, monkeypatch, capsys):
    from helpers.runs import read_metrics, tiny_args
    from longtail.cli.main import main

    def broken(self, *args, **kwargs):
        raise RuntimeError("no C++ compiler here")

    monkeypatch.setattr(nn.Module, "compile", broken)
    assert main(["train", *tiny_args(tmp_path, "compiled", "compile=true", "epochs=1")]) == 0
    printed = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    assert "Classifier did not compile (RuntimeError: no C++ compiler here); training it eagerly" in printed
    assert read_metrics(tmp_path / "compiled")["finished"]
