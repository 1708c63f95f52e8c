"""benchmarks/cifar10_lt_gpu.py (the BALMS paper's recipe for one GPU) runs end to end on CPU: CE and Balanced
Softmax side by side, then BALMS from the CE run, and prints paper vs ours (tiny settings, real images)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers.runs import subprocess_env

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "benchmarks" / "cifar10_lt_gpu.py"
SLICE = Path(os.environ.get("LONGTAIL_CIFAR10_SLICE", REPO.parent / "shared" / "data" / "cifar10" / "cifar10_jpeg_slice.tar"))


@pytest.mark.slow
@pytest.mark.skipif(not SLICE.is_file(), reason=f"the 2,000-image CIFAR-10 slice is not at {SLICE} (set LONGTAIL_CIFAR10_SLICE)")
def test_gpu_recipe_script_runs_on_cpu_with_tiny_settings(tmp_path):
    out = tmp_path / "runs"
    proc = run_script(out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    table = [line for line in proc.stdout.splitlines() if line.startswith("| ") and not line.startswith("| method |")]
    assert [row.split(" | ")[0] for row in table] == ["| CE (softmax)", "| Balanced Softmax", "| BALMS"]
    for method in ("ce", "balanced_softmax", "balms"):
        metrics = json.loads((out / method / "metrics.json").read_text())
        ours = float(next(r for r in table if r.startswith(f"| {metrics_label(method)} |")).split(" | ")[2])
        assert metrics["finished"] and abs(100 * metrics["test"]["mean_class"] - ours) < 0.006
    balms = yaml.safe_load((out / "balms" / "config.yaml").read_text())
    assert balms["sampler"] == "meta" and balms["loss"] == "balanced_softmax" and Path(balms["init_from"]) == out / "ce"
    assert balms["cache_features"] is True and balms["cache_views"] is None  # the default: one cached view per epoch
    ce = yaml.safe_load((out / "ce" / "config.yaml").read_text())
    assert ce["epochs"] == 1 and ce["batch_size"] == 64 and ce["lr"] == 0.1  # tiny length, the recipe otherwise
    assert "autoaugment" not in ce["dataset_options"]  # the dataset's default training transform: AutoAugment + Cutout

    # a later call with --methods balms trains BALMS again from the CE run the first call left in --out
    first_balms = (out / "balms" / "metrics.json").read_text()
    ce_before = (out / "ce" / "metrics.json").read_text()
    again = run_script(out, "--methods", "balms", "--balms-features", "recomputed")
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    table = [line for line in again.stdout.splitlines() if line.startswith("| ") and not line.startswith("| method |")]
    assert [row.split(" | ")[0] for row in table] == ["| CE (softmax)", "| Balanced Softmax", "| BALMS"]
    assert "an earlier call" in table[0] and "an earlier call" not in table[2]
    assert (out / "ce" / "metrics.json").read_text() == ce_before  # CE not retrained
    assert json.loads((out / "balms" / "metrics.json").read_text())["written_at"] != json.loads(first_balms)["written_at"]
    assert yaml.safe_load((out / "balms" / "config.yaml").read_text())["cache_features"] is False
    assert json.loads((out / "balms" / "metrics.json").read_text())["stage2"]["features"] == "recomputed"


@pytest.mark.skipif(not SLICE.is_file(), reason=f"the 2,000-image CIFAR-10 slice is not at {SLICE} (set LONGTAIL_CIFAR10_SLICE)")
def test_balms_alone_needs_a_finished_ce_run(tmp_path):
    proc = run_script(tmp_path / "runs", "--methods", "balms")
    assert proc.returncode != 0 and "BALMS starts from the CE run" in proc.stderr and "add ce to --methods" in proc.stderr
    assert not (tmp_path / "runs" / "balms").exists()


def run_script(out: Path, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), "run", "--data", str(SLICE), "--not-presampled", "--device", "cpu",
                           "--tiny", "--workers", "0", "--out", str(out), *extra,
                           "--override", "n_max=100", "imbalance_factor=10", "batch_size=64", "threads=1"],
                          capture_output=True, text=True, timeout=600, env=subprocess_env())


def metrics_label(method: str) -> str:
    return {"ce": "CE (softmax)", "balanced_softmax": "Balanced Softmax", "balms": "BALMS"}[method]
