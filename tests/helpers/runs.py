"""Shared by the tests that run longtail end to end: a tiny synthetic run and helpers to compare run outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch

# 6 classes, counts 40 21 12 6 3 2 (84 images) of 8x8 pixels; thresholds chosen so that each shot
# group has classes: many (> 20) 2, medium (5..20) 2, few (< 5) 2.
TINY = ["dataset=synthetic_lt", "n_max=40", "dataset_options={image_size: 8}", "model=resnet8_small",
        "epochs=2", "batch_size=16", "device=cpu", "many_threshold=20", "few_threshold=5", "lr=0.05"]
LONGTAIL = str(Path(sys.executable).parent / "longtail")
TESTS = Path(__file__).resolve().parents[1]


def tiny_args(output_dir: Path, name: str, *extra: str) -> list[str]:
    return [*TINY, f"name={name}", f"output_dir={output_dir}", *extra]


def subprocess_env() -> dict[str, str]:
    # one thread per process: results do not depend on the machine's load, and parallel tests share 2 cores
    # tests/ and the repository root on the path: a subprocess imports the test helpers as pytest does
    path = os.pathsep.join([str(TESTS), str(TESTS.parent), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1", "COLUMNS": "200", "PYTHONPATH": path}


def run_longtail(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([LONGTAIL, *args], capture_output=True, text=True, timeout=timeout, env=subprocess_env())


def read_metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def without_timing(metrics: dict) -> str:
    """metrics.json minus what legitimately differs between two runs of the same config (wall times,
    the run name), as canonical JSON text so that NaN compares equal to NaN."""
    out = {k: v for k, v in metrics.items() if k not in ("written_at", "name", "timing")}
    out["history"] = [{k: v for k, v in rec.items() if k not in ("seconds", "val_seconds")} for rec in metrics["history"]]
    return json.dumps(out, sort_keys=True)


def load_weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["model"]


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), f"{k} differs"


def toy_detection_config(folder: Path, *lines: str) -> Path:
    """A toy LVIS dataset (tests/detection/conftest.py) and a one-epoch Faster R-CNN softmax config on it,
    with ``lines`` (YAML ``key: value``) added or overriding."""
    from helpers.toy_detection import write_toy_lvis

    data = write_toy_lvis(folder / "lvis")
    keys = {"train_json": data["train"], "val_json": data["val"], "arch": "fasterrcnn", "num_threads": 1,
            "detector_options": "{min_size: 64, max_size: 64, box_score_thresh: 0.0001}",
            "output_dir": folder / "runs", "epochs": 1, "batch_size": 2, "lr": 0.01, "head": "softmax"}
    keys.update(line.split(": ", 1) for line in lines)
    config = folder / "det.yaml"
    config.write_text("".join(f"{k}: {v}\n" for k, v in keys.items()))
    return config
