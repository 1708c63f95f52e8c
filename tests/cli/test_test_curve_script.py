"""benchmarks/cifar10_test_curve.py: a run whose history also holds the test score of every epoch from
``--from-epoch`` on, trained exactly as ``longtail train`` trains it, and the best-over-epochs vs last figures it
prints; and ``run_training(hooks=...)``, which it is built on, resuming with those scores."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.runs import TINY, assert_same_weights, load_weights, read_metrics, run_longtail, subprocess_env
from longtail.config import TrainConfig, load_config
from longtail.engine import Hook, distributed
from longtail.workflows import build
from longtail.workflows.train import run_training

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "cifar10_test_curve.py"
RUN = [*TINY, "epochs=3", "select_on=last", "eval_every=1", "threads=1"]
TEST_KEYS = ("test_mean_class", "test_top1")


def without_test_scores(metrics: dict) -> dict:
    history = [{k: v for k, v in r.items() if k not in (*TEST_KEYS, "seconds", "val_seconds")} for r in metrics["history"]]
    return {"history": history, "test": metrics["test"]}


def test_scores_every_epoch_from_the_given_one_and_trains_as_longtail_train_does(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), *RUN, f"output_dir={tmp_path}", "name=curve", "--from-epoch", "2"],
                          capture_output=True, text=True, timeout=300, env=subprocess_env(), cwd=REPO)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    plain = run_longtail("train", *RUN, f"output_dir={tmp_path}", "name=plain", "--quiet")
    assert plain.returncode == 0, plain.stderr

    curve, reference = read_metrics(tmp_path / "curve"), read_metrics(tmp_path / "plain")
    assert [sorted(set(TEST_KEYS) & r.keys()) for r in curve["history"]] == [[], sorted(TEST_KEYS), sorted(TEST_KEYS)]
    # scoring the test set between epochs changes nothing about training: same weights, history and test figures
    assert without_test_scores(curve) == without_test_scores(reference)
    for name in ("best.pt", "checkpoint.pt"):
        assert_same_weights(load_weights(tmp_path / "curve" / name), load_weights(tmp_path / "plain" / name))
    # the last scored epoch is the run's own (last-epoch) test figure
    assert curve["history"][-1]["test_mean_class"] == pytest.approx(curve["test"]["mean_class"])

    scores = {r["epoch"]: 100 * r["test_mean_class"] for r in curve["history"] if "test_mean_class" in r}
    best_epoch = max(scores, key=scores.get)
    summary = proc.stdout.strip().splitlines()[-1]
    assert summary == (f"last epoch (3): {scores[3]:.2f}   best over epochs 2-3 (epoch {best_epoch}): "
                       f"{scores[best_epoch]:.2f}   best - last: {scores[best_epoch] - scores[3]:+.2f}")


def test_refuses_a_from_epoch_outside_the_run(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), *RUN, f"output_dir={tmp_path}", "--from-epoch", "4"],
                          capture_output=True, text=True, timeout=120, env=subprocess_env(), cwd=REPO)
    assert proc.returncode != 0 and "--from-epoch must lie in [1, epochs = 3], got 4" in proc.stderr
    assert not any(tmp_path.iterdir())  # refused before any run directory


class Interrupt(Hook):
    """Stops the run after ``epoch``'s training, before its checkpoint (as a kill there would)."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def after_epoch(self, epoch, record):
        if epoch + 1 == self.epoch:
            raise KeyboardInterrupt


def test_a_resumed_run_keeps_its_hooks_records(tmp_path):
    spec = importlib.util.spec_from_file_location("cifar10_test_curve", SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    def config(name):
        return load_config(TrainConfig, None, [*RUN, f"output_dir={tmp_path}", f"name={name}"])

    def curve_hook(cfg):
        return script.TestCurve(build.eval_loader(build.build_data(cfg).test, cfg, distributed.setup("cpu")), 1)

    cfg = config("whole")
    whole = run_training(cfg, quiet=True, hooks=[curve_hook(cfg)])
    cfg = config("resumed")
    with pytest.raises(KeyboardInterrupt):
        run_training(cfg, quiet=True, hooks=[curve_hook(cfg), Interrupt(3)])
    assert json.loads((tmp_path / "resumed" / "metrics.json").read_text())["epochs_completed"] == 2
    resumed = run_training(cfg, resume=True, quiet=True, hooks=[curve_hook(cfg)])
    assert [r["test_mean_class"] for r in resumed["history"]] == [r["test_mean_class"] for r in whole["history"]]
    assert resumed["test"] == whole["test"]
