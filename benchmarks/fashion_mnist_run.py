"""A whole `longtail train` run on the Fashion-MNIST-LT default, before and after the loop's defaults changed.

Each variant is the CLI itself (`longtail train configs/fashion_mnist_lt/ce.yaml ...` in a fresh process, so
imports, data loading and the final test pass count), variants interleaved round by round; medians:

  before        per-sample v2 transforms, validation after every epoch, NCHW   (the earlier defaults)
  batched       batched transforms, validation after every epoch, NCHW
  eval_every 5  batched transforms, validation every 5 epochs, NCHW
  default       batched transforms, validation every 5 epochs, channels_last  (configs/fashion_mnist_lt today)

Prints per variant: process wall time, start-up (to the first step), training epoch, one validation pass,
validation as a share of training time, the final test pass, and each variant's wall time against `before`.

    python benchmarks/fashion_mnist_run.py                      # 30 epochs (the configs' budget), 3 rounds
    python benchmarks/fashion_mnist_run.py --epochs 10 --rounds 2 --threads 1
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
CONFIG = ROOT / "configs" / "fashion_mnist_lt" / "ce.yaml"
VARIANTS = {
    "before": ["dataset_options={batched: false}", "eval_every=1", "channels_last=false"],
    "batched": ["eval_every=1", "channels_last=false"],
    "eval_every 5": ["channels_last=false"],
    "default": [],
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--threads", type=int, default=2, help="threads= of every run (the demo uses 2)")
    return p.parse_args()


def one_run(overrides: list[str], epochs: int, threads: int, out: Path) -> dict:
    cmd = [sys.executable, "-m", "longtail.cli.main", "train", str(CONFIG), f"epochs={epochs}", f"threads={threads}",
           f"output_dir={out}", "name=run", "--overwrite", *overrides]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, cwd=ROOT)
    wall = time.perf_counter() - start
    metrics = json.loads((out / "run" / "metrics.json").read_text())
    history = metrics["history"]
    train = sum(h["seconds"] for h in history)
    passes = [h["val_seconds"] for h in history if "val_seconds" in h]
    return {"wall": wall, "startup": metrics["timing"]["startup_seconds"], "test": metrics["timing"]["test_seconds"],
            "epoch": train / len(history), "val_pass": statistics.mean(passes), "val_share": sum(passes) / train,
            "val_passes": len(passes)}


def main() -> None:
    args = parse_args()
    results: dict[str, list[dict]] = {name: [] for name in VARIANTS}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            names = list(VARIANTS) if r % 2 == 0 else list(reversed(VARIANTS))
            for name in names:
                results[name].append(one_run(VARIANTS[name], args.epochs, args.threads, Path(tmp) / name))
    print(f"Fashion-MNIST-LT IF 100 default (configs/fashion_mnist_lt/ce.yaml, resnet8_small, batch 128), "
          f"{args.epochs} epochs, threads={args.threads}; {platform.machine()} CPU, {torch.get_num_threads()} cores "
          f"seen, torch {torch.__version__}; {args.rounds} interleaved rounds, medians")
    print(f"{'variant':<14}{'wall s':>8}{'start-up s':>11}{'epoch s':>9}{'val pass s':>11}{'val passes':>11}"
          f"{'val/train':>10}{'test s':>8}{'fixed s':>8}{'wall/before':>12}")
    base = [run["wall"] for run in results["before"]]
    for name, runs in results.items():
        med = {k: statistics.median(run[k] for run in runs) for k in runs[0]}
        ratio = statistics.median(run["wall"] / b for run, b in zip(runs, base))
        print(f"{name:<14}{med['wall']:>8.1f}{med['startup']:>11.2f}{med['epoch']:>9.3f}{med['val_pass']:>11.3f}"
              f"{med['val_passes']:>11.0f}{100 * med['val_share']:>9.1f}%{med['test']:>8.2f}"
              f"{med['startup'] + med['test']:>8.2f}{ratio:>12.3f}")
    print("fixed = start-up to the first step + the final test pass (target < 10 s); val/train target <= 10%")


if __name__ == "__main__":
    main()
