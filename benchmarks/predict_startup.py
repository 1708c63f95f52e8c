"""`longtail predict` on one image, side by side in one run: from the run's record vs rebuilding its dataset.

A run records its classes and test-time pipeline in ``metrics.json`` (``"inputs"``), so `predict` (and
`export`) need no dataset; runs without that record rebuild the whole dataset first (CIFAR-10 from the JPEG
copy: decoding 60,000 images). This copies a finished run twice (weights, config, metrics), one copy with the
record and one without, predicts the same image with each through the command line, a fresh process each
time (as a user runs it; decoded images are cached within a process), interleaved round by round, and prints
the median wall time of each path and their ratio; the two must give the same logits.

    python benchmarks/predict_startup.py RUN [--data-root PATH] [--rounds 3] [--threads 1]

``RUN``: a finished classification run; ``--data-root``: its dataset, where the run's own data_root is not
(the rebuilt path reads it, and the record is made from it when the run has none).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from longtail.data.inputs import InputSpec
from longtail.workflows.run_files import load_run_config, rebuild_run_data


def copy_run(run: Path, to: Path, inputs: dict | None) -> Path:
    to.mkdir(parents=True)
    for name in ("config.yaml", "best.pt"):
        shutil.copy(run / name, to / name)
    metrics = json.loads((run / "metrics.json").read_text())
    metrics.pop("inputs", None)
    if inputs is not None:
        metrics["inputs"] = inputs
    (to / "metrics.json").write_text(json.dumps(metrics))
    return to


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    recorded = json.loads((args.run / "metrics.json").read_text()).get("inputs")
    if recorded is None:  # what training records now, made from the run's data
        cfg = load_run_config(args.run)
        spec = InputSpec.of(rebuild_run_data(args.run, cfg, args.data_root, "--data-root PATH"))
        if spec is None:
            raise SystemExit(f"{cfg.dataset}'s test pipeline is not one a run can record: nothing to compare")
        recorded = spec.as_dict()
    image_size = int(recorded["image_size"])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        image = tmp / "image.png"
        pixels = np.random.default_rng(0).integers(0, 256, (image_size, image_size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(image)
        runs = {"from the record": copy_run(args.run, tmp / "recorded", recorded),
                "rebuilding the dataset": copy_run(args.run, tmp / "rebuilt", None)}
        times: dict[str, list[float]] = {k: [] for k in runs}
        logits: dict[str, np.ndarray] = {}
        for r in range(args.rounds):
            for what, run in runs.items():
                out = tmp / f"out_{r}_{run.name}"
                command = [sys.executable, "-m", "longtail.cli.main", "predict", str(run), str(image), "--out", str(out),
                           "--device", "cpu"]
                if what == "rebuilding the dataset" and args.data_root:
                    command += ["--data-root", args.data_root]
                start = time.perf_counter()
                subprocess.run(command, check=True, capture_output=True, env={**os.environ, "OMP_NUM_THREADS": str(args.threads)})
                times[what].append(time.perf_counter() - start)
                logits[what] = np.load(out / "logits.npz")["logits"]
        same = np.allclose(logits["from the record"], logits["rebuilding the dataset"], atol=1e-6)
        print(f"\npredict, one image: {args.run} ({args.rounds} rounds, {args.threads} thread(s))")
        for what, t in times.items():
            print(f"  {what:<24} {statistics.median(t):7.2f} s (median)")
        ratio = statistics.median(times["rebuilding the dataset"]) / statistics.median(times["from the record"])
        print(f"  ratio rebuilt / recorded: {ratio:.1f}x; same logits: {same}")
        if not same:
            raise SystemExit("the two paths gave different logits")


if __name__ == "__main__":
    main()
