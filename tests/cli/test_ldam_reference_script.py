"""benchmarks/cifar10_ldam_reference.py, the independent re-implementation of the LDAM code's CE run: its
long-tailed draw, its learning-rate schedule, a run on a generated copy of CIFAR-10's layout (figures of
every epoch, the last-vs-best summary), resuming exactly, and the refusals that protect a run."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from helpers.cifar_stand_in import write_stand_in
from helpers.runs import assert_same_weights, subprocess_env

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "cifar10_ldam_reference.py"
SMALL = ["--n-max", "12", "--imbalance-factor", "4", "--epochs", "3"]


def load_script():
    spec = importlib.util.spec_from_file_location("cifar10_ldam_reference", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def stand_in(tmp_path_factory) -> Path:
    return write_stand_in(tmp_path_factory.mktemp("cifar") / "copy.tar", per_class={"train": 12, "test": 3})


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, timeout=300,
                          env=subprocess_env(), cwd=REPO)


def test_the_long_tailed_draw_keeps_the_ldam_counts_of_each_class_reproducibly():
    script = load_script()
    labels = np.repeat(np.arange(10), 50)[np.random.default_rng(1).permutation(500)]
    keep, counts = script.ldam_long_tail(labels, n_max=50, imbalance_factor=10)
    assert counts == [int(50 * 0.1 ** (c / 9)) for c in range(10)] == [50, 38, 29, 23, 17, 13, 10, 8, 6, 5]
    assert len(set(keep.tolist())) == len(keep) == sum(counts)
    assert np.bincount(labels[keep], minlength=10).tolist() == counts
    again, _ = script.ldam_long_tail(labels, n_max=50, imbalance_factor=10)
    assert again.tolist() == keep.tolist()
    # the subset is a draw, not the first files of each class
    assert keep[:50 + 38].tolist() != np.where(labels == 0)[0][:50].tolist() + np.where(labels == 1)[0][:38].tolist()
    with pytest.raises(script.UsageError, match="class airplane has 50 training images, fewer than the 60"):
        script.ldam_long_tail(labels, n_max=60, imbalance_factor=10)


def test_learning_rate_is_the_ldam_schedule_at_200_epochs():
    lr = load_script().learning_rate
    assert [lr(e, 200) for e in (0, 1, 4, 5, 159)] == pytest.approx([0.02, 0.04, 0.1, 0.1, 0.1])
    assert [lr(e, 200) for e in (160, 179, 180, 199)] == pytest.approx([1e-3, 1e-3, 1e-5, 1e-5])


def test_runs_scores_every_epoch_and_prints_last_against_best(stand_in, tmp_path):
    proc = run("--data", str(stand_in), "--out", str(tmp_path / "ref"), *SMALL)
    assert proc.returncode == 0, proc.stderr[-2000:]
    record = json.loads((tmp_path / "ref" / "history.json").read_text())
    assert record["train_counts"] == [12, 10, 8, 7, 6, 5, 4, 4, 3, 3]
    history = record["history"]
    assert [r["epoch"] for r in history] == [1, 2, 3]
    assert [r["lr"] for r in history] == pytest.approx([0.02, 0.04, 0.06])
    for r in history:  # 3 test images per class: per-class accuracies in thirds, top-1 their mean
        assert all(round(a * 3 / 100, 6) == round(a * 3 / 100) for a in r["test_per_class"])
        assert r["test_top1"] == pytest.approx(np.mean(r["test_per_class"]))
    best = max(history, key=lambda r: r["test_top1"])
    last = history[-1]["test_top1"]
    assert proc.stdout.strip().splitlines()[-1] == (
        f"last epoch (3): {last:.2f}   best over epochs 1-3 (epoch {best['epoch']}): {best['test_top1']:.2f}   "
        f"best - last: {best['test_top1'] - last:+.2f}")


def test_a_run_stopped_and_resumed_equals_an_uninterrupted_one(stand_in, tmp_path):
    whole = run("--data", str(stand_in), "--out", str(tmp_path / "whole"), *SMALL)
    first = run("--data", str(stand_in), "--out", str(tmp_path / "split"), *SMALL, "--stop-after", "1")
    assert whole.returncode == first.returncode == 0, whole.stderr + first.stderr
    assert "stopped after epoch 1 of 3: continue with --resume" in first.stdout
    rest = run("--data", str(stand_in), "--out", str(tmp_path / "split"), *SMALL, "--resume")
    assert rest.returncode == 0, rest.stderr
    assert "epochs 2-3" in rest.stdout.splitlines()[0]

    def figures(folder: Path) -> list[dict]:
        return [{k: v for k, v in r.items() if k != "seconds"}
                for r in json.loads((folder / "history.json").read_text())["history"]]
    assert figures(tmp_path / "split") == figures(tmp_path / "whole")
    assert_same_weights(*(torch.load(tmp_path / name / "checkpoint.pt", weights_only=False)["model"]
                          for name in ("split", "whole")))


def test_refuses_what_would_lose_or_mix_up_a_run(stand_in, tmp_path):
    out = tmp_path / "ref"
    assert run("--data", str(stand_in), "--out", str(out), *SMALL, "--stop-after", "1").returncode == 0
    before = (out / "checkpoint.pt").read_bytes()

    again = run("--data", str(stand_in), "--out", str(out), *SMALL)
    assert again.returncode != 0
    assert again.stderr.strip() == f"error: {out} already holds a run: add --resume to continue it, or choose another --out"
    other = run("--data", str(stand_in), "--out", str(out), *SMALL[:-1], "4", "--resume")
    assert other.returncode != 0 and "was run with" in other.stderr and "'epochs': 3" in other.stderr
    assert (out / "checkpoint.pt").read_bytes() == before  # neither refusal touched the run

    missing = run("--data", str(tmp_path / "nowhere.tar"), "--out", str(tmp_path / "x"))
    assert missing.returncode != 0 and "no such file or folder" in missing.stderr
    nothing = run("--data", str(stand_in), "--out", str(tmp_path / "y"), "--resume")
    assert nothing.returncode != 0 and "holds no checkpoint.pt to continue" in nothing.stderr
