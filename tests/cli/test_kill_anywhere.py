"""kill -9 at a random moment, then --resume: the same result as an uninterrupted run, for stage 1,
a BALMS stage 2 and a detection run (5 seeded trials; the kill may land before the first checkpoint,
inside an epoch, during a checkpoint write or during the final test)."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest

from helpers.runs import (
    LONGTAIL,
    read_metrics,
    run_longtail,
    subprocess_env,
    tiny_args,
    toy_detection_config,
    without_timing,
)

STAGE1 = ["n_max=60", "dataset_options={image_size: 16}", "epochs=4", "warmup_epochs=1"]


def clean_and_killed(tmp_path: Path, command: list[str], name_arg: str, seed: int) -> tuple[dict, dict]:
    """Run ``command`` uninterrupted (timing it), then again killed at a uniform random moment of that
    duration and resumed; return both metrics files."""
    start = time.monotonic()
    clean = subprocess.run([LONGTAIL, *command, f"{name_arg}=clean", "--quiet"], capture_output=True, text=True,
                           env=subprocess_env(), timeout=300)
    assert clean.returncode == 0, clean.stderr
    duration = time.monotonic() - start
    proc = subprocess.Popen([LONGTAIL, *command, f"{name_arg}=killed", "--quiet"], env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(random.Random(seed).uniform(0.3, 0.95) * duration)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    resumed = subprocess.run([LONGTAIL, *command, f"{name_arg}=killed", "--resume", "--quiet"], capture_output=True,
                             text=True, env=subprocess_env(), timeout=300)
    assert resumed.returncode == 0, resumed.stderr
    return clean, resumed


@pytest.mark.slow
@pytest.mark.parametrize("trial", [0, 1])
def test_stage1_killed_anywhere(tmp_path, trial):
    clean_and_killed(tmp_path, ["train", *tiny_args(tmp_path, "x", *STAGE1)], "name", seed=trial)
    assert without_timing(read_metrics(tmp_path / "killed")) == without_timing(read_metrics(tmp_path / "clean"))


@pytest.mark.slow
@pytest.mark.parametrize("trial", [2, 3])
def test_balms_stage2_killed_anywhere(tmp_path, trial):
    out = run_longtail("train", *tiny_args(tmp_path, "ce", *STAGE1), "--quiet")
    assert out.returncode == 0, out.stderr
    stage2 = tiny_args(tmp_path, "x", *STAGE1, f"init_from={tmp_path / 'ce'}", "loss=balanced_softmax",
                       "sampler=meta", "epochs=3", "warmup_epochs=0")
    clean_and_killed(tmp_path, ["train", *stage2], "name", seed=trial)
    a, b = read_metrics(tmp_path / "killed"), read_metrics(tmp_path / "clean")
    assert without_timing(a) == without_timing(b)
    assert a["sampling_probability"] == b["sampling_probability"]


@pytest.mark.slow
def test_detection_run_killed_anywhere(tmp_path):
    config = toy_detection_config(tmp_path, "epochs: 3")
    clean_and_killed(tmp_path, ["detect", "train", str(config)], "name", seed=4)
    a = json.loads((tmp_path / "runs" / "killed" / "metrics.json").read_text())
    b = json.loads((tmp_path / "runs" / "clean" / "metrics.json").read_text())
    assert [h["loss"] for h in a["history"]] == [h["loss"] for h in b["history"]]
    assert a["val"]["bbox"]["AP"] == b["val"]["bbox"]["AP"]
