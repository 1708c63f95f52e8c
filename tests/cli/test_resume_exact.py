"""A run SIGKILLed mid-way and continued with --resume ends with exactly the metrics and weights of an
uninterrupted run (every epoch re-seeds all RNGs; optimizer, scheduler and history are checkpointed)."""

import json
import signal
import subprocess
import time

import pytest
import torch

from helpers.runs import (
    LONGTAIL,
    assert_same_weights,
    load_weights,
    read_metrics,
    run_longtail,
    subprocess_env,
    tiny_args,
    without_timing,
)
from longtail.cli.main import main

# Bigger than the other tests' runs so that an epoch lasts long enough to be killed inside
EPOCHS = 5
RESUME = ["n_max=60", "dataset_options={image_size: 16}", f"epochs={EPOCHS}", "warmup_epochs=1"]


def wait_for_first_epoch(proc: subprocess.Popen, run_dir, timeout: float = 120) -> int:
    """Poll until metrics.json (written after checkpoint.pt) reports >= 1 finished epoch."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the run ended (rc {proc.returncode}) before it could be killed: {proc.stderr.read()}")
        try:
            done = json.loads((run_dir / "metrics.json").read_text())["epochs_completed"]
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            done = 0
        if done >= 1:
            return done
        time.sleep(0.02)
    proc.kill()
    pytest.fail("no epoch finished in time")


@pytest.mark.slow
def test_killed_run_resumes_to_the_same_result(tmp_path):
    killed_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.Popen([LONGTAIL, "train", *tiny_args(tmp_path, "killed", *RESUME), "--quiet"],
                            env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_for_first_epoch(proc, killed_dir)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    interrupted = read_metrics(killed_dir)
    assert not interrupted["finished"] and 1 <= interrupted["epochs_completed"] < EPOCHS, "killed mid-way"
    state_epoch = torch.load(killed_dir / "checkpoint.pt", weights_only=True)["epoch"]
    assert 1 <= state_epoch < EPOCHS

    resumed = run_longtail("train", *tiny_args(tmp_path, "killed", *RESUME), "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert f"resuming {killed_dir} at epoch {state_epoch}/{EPOCHS}" in " ".join(resumed.stdout.split())
    clean = run_longtail("train", *tiny_args(tmp_path, "clean", *RESUME), "--quiet")
    assert clean.returncode == 0, clean.stderr

    a, b = read_metrics(killed_dir), read_metrics(clean_dir)
    assert a["finished"] and len(a["history"]) == EPOCHS
    assert without_timing(a) == without_timing(b)
    for name in ("checkpoint.pt", "best.pt"):
        assert_same_weights(load_weights(killed_dir / name), load_weights(clean_dir / name))


def test_resume_with_a_changed_setting_is_refused(tmp_path, capsys):
    args = tiny_args(tmp_path, "run", "epochs=1")
    assert main(["train", *args, "--quiet"]) == 0
    assert main(["train", *args, "lr=0.5", "--resume", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "changed config" in err and "lr: 0.05 -> 0.5" in err
    # settings that do not change the computation may differ; a finished run just re-tests
    assert main(["train", *args, "eval_batch_size=7", "--resume", "--quiet"]) == 0
