"""The BALMS paper's CIFAR-10-LT recipe on one GPU: CE, Balanced Softmax and BALMS at IF 100, paper vs ours.

Recipe (Ren et al. 2020, official code; configs/cifar10_lt/*_if100.yaml): ResNet-32, batch 512, 13,000
iterations (520 epochs of 12,406 images), lr warm-up 0.05 -> 0.1 over 800 iterations then cosine,
RandomCrop + flip + AutoAugment + Cutout; BALMS = stage 2 on the frozen CE backbone for 2,000 iterations
(80 epochs) with Balanced Softmax and the Meta Sampler. CE and Balanced Softmax train side by side (two
processes share the GPU: a ResNet-32 step does not fill it); BALMS starts from the CE run as soon as it ends.
BALMS trains on cached features (``--balms-features cached``, the default): one fresh augmented view of every
training image per epoch, computed before stage 2 in one pass per epoch, instead of the backbone running on
every batch (``recomputed``, the official code's way, whose stage 2 ran 18 s per epoch on an H200 before the
batched ImageFetcher, not re-timed since); both gave 77.6 on the H200 CE run (10 cached views against recomputed,
on a CPU, docs/results.md).

Whatever travels to a GPU machine must be small, so ``pack`` first writes a compact copy of just the
images the runs need (the IF 100 training subset, its validation images and the test set; the original JPEG
bytes, no re-encoding: 6.8 MiB gzipped), read back with ``presampled: true``:

    python benchmarks/cifar10_lt_gpu.py pack --data PATH/cifar10_jpeg.tar --out cifar10_lt_if100.tar.gz
    python benchmarks/cifar10_lt_gpu.py run --data cifar10_lt_if100.tar.gz --device cuda --workers 6
    python benchmarks/cifar10_lt_gpu.py run --data cifar10_lt_if100.tar.gz --device cpu --tiny   # smoke test

``--methods`` splits the work where one call to a device must be short (CE with BALMS after it, then
Balanced Softmax, with the same --out). On one H200, stage 1 took 7.6 min per run with CE and Balanced
Softmax side by side (docs/results.md).

Prints the table (test top-1 = mean per-class accuracy, the test set is balanced) and each run's wall time;
the runs land in --out (default runs/cifar10_lt_gpu).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PAPER = {"ce": ("CE (softmax)", 70.4, "LDAM paper"), "balanced_softmax": ("Balanced Softmax", 77.5, "reimpl."),
         "balms": ("BALMS", 84.9, "BALMS paper")}
CONFIGS = {"ce": "configs/cifar10_lt/ce_if100.yaml", "balanced_softmax": "configs/cifar10_lt/balanced_softmax_if100.yaml",
           "balms": "configs/cifar10_lt/balms_if100.yaml"}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="command", required=True)
    pack = sub.add_parser("pack", help="write the compact copy of the IF 100 subset")
    pack.add_argument("--data", required=True, help="the whole CIFAR-10 image copy (tar or folder)")
    pack.add_argument("--out", required=True)
    pack.add_argument("--imbalance-factor", type=float, default=100.0)
    pack.add_argument("--seed", type=int, default=0)
    run = sub.add_parser("run", help="train CE and Balanced Softmax side by side, then BALMS; print paper vs ours")
    run.add_argument("--data", required=True, help="the packed copy (or the whole copy with --not-presampled)")
    run.add_argument("--not-presampled", action="store_true", help="--data is the whole copy: draw the subset")
    run.add_argument("--device", default="cuda")
    run.add_argument("--workers", type=int, default=6, help="loader workers per run (augmentation runs there)")
    run.add_argument("--out", default="runs/cifar10_lt_gpu")
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--tiny", action="store_true", help="1 epoch per stage, for a CPU smoke test")
    run.add_argument("--override", nargs="*", default=[], metavar="KEY=VALUE",
                     help="extra settings for every run (a smoke test on a small slice: n_max=100 imbalance_factor=10)")
    run.add_argument("--balms-features", choices=("cached", "recomputed"), default="cached",
                     help="cached (default): BALMS's stage 2 on the features of one fresh augmented view per epoch, "
                          "computed once before it (80 backbone passes); recomputed: the backbone runs on every "
                          "batch, as the official code does (same result on the H200 CE run, docs/results.md)")
    run.add_argument("--methods", nargs="+", choices=list(CONFIGS), default=list(CONFIGS),
                     help="a part of the work, for a device that allows short calls only: e.g. --methods ce balms, "
                          "then --methods balanced_softmax (BALMS needs the CE run, in this call or in --out/ce)")
    return p.parse_args()


def pack(args: argparse.Namespace) -> None:
    from longtail.data import long_tailed_counts, long_tailed_split
    from longtail.data.cifar_images import load_cifar_images, write_long_tailed_copy

    labels = load_cifar_images(args.data, 10)["train"].labels
    split = long_tailed_split(labels, long_tailed_counts(10, 5000, args.imbalance_factor), val_per_class=20,
                              seed=args.seed, partial_val=True)
    out = write_long_tailed_copy(args.data, args.out, 10, split.train, split.val)
    print(f"wrote {out}: {len(split.train)} training, {len(split.val)} validation and the test images, "
          f"{out.stat().st_size / 2**20:.1f} MiB (IF {args.imbalance_factor:g}, seed {args.seed})")


def train_command(method: str, args: argparse.Namespace) -> list[str]:
    cmd = [sys.executable, "-m", "longtail.cli.main", "train", str(REPO / CONFIGS[method]), f"data_root={args.data}",
           f"output_dir={args.out}", f"name={method}", f"seed={args.seed}", f"device={args.device}",
           f"num_workers={args.workers}", f"persistent_workers={'true' if args.workers else 'false'}", "--overwrite"]
    if not args.not_presampled:
        cmd.append("dataset_options={presampled: true}")
    if method == "balms":
        cmd.append(f"init_from={Path(args.out) / 'ce'}")
        cmd.append(f"cache_features={'true' if args.balms_features == 'cached' else 'false'}")
    if args.tiny:
        cmd += ["epochs=1", "warmup_epochs=0", "eval_every=1"]
    return cmd + list(args.override)


def run(args: argparse.Namespace) -> None:
    """CE and Balanced Softmax start together; BALMS starts as soon as CE (its stage 1) is done (or at once when
    --out already holds the CE run and ce is not among --methods)."""
    started: dict[str, float] = {}
    seconds: dict[str, float] = {}
    procs: dict[str, subprocess.Popen] = {}

    def launch(method: str) -> None:
        started[method] = time.perf_counter()
        procs[method] = subprocess.Popen(train_command(method, args))

    ce_metrics = Path(args.out) / "ce" / "metrics.json"
    if "balms" in args.methods and "ce" not in args.methods and not (
            ce_metrics.is_file() and json.loads(ce_metrics.read_text()).get("finished")):
        sys.exit(f"BALMS starts from the CE run, and {ce_metrics.parent} holds no finished one: add ce to --methods "
                 f"(or put the CE run directory there)")
    total = time.perf_counter()
    for method in ("ce", "balanced_softmax"):
        if method in args.methods:
            launch(method)
    if "balms" in args.methods and "ce" not in args.methods:
        launch("balms")
    while len(seconds) < len(procs) or ("balms" in args.methods and "balms" not in procs):
        for method, proc in list(procs.items()):
            if method in seconds or proc.poll() is None:
                continue
            if proc.returncode != 0:
                for other in procs.values():
                    other.kill()
                sys.exit(f"{method} failed (exit {proc.returncode}); its output is above")
            seconds[method] = time.perf_counter() - started[method]
            if method == "ce" and "balms" in args.methods:
                launch("balms")
        time.sleep(1)
    device = args.device
    if device.startswith("cuda"):
        import torch
        device = torch.cuda.get_device_name()
    print(f"\nCIFAR-10-LT IF 100, ResNet-32, BALMS recipe{' (TINY smoke test)' if args.tiny else ''}, seed {args.seed}, "
          f"{device}; total wall {(time.perf_counter() - total) / 60:.1f} min")
    print("| method | paper | ours | many | medium | few | wall (min) |\n|---|---:|---:|---:|---:|---:|---:|")
    for method, (label, paper, source) in PAPER.items():
        metrics = Path(args.out) / method / "metrics.json"
        if method not in seconds and not metrics.is_file():
            continue
        test = json.loads(metrics.read_text())["test"]
        cells = " | ".join("-" if test[k] != test[k] else f"{100 * test[k]:.2f}" for k in ("many", "medium", "few"))
        wall = f"{seconds[method] / 60:.1f}" if method in seconds else "- (an earlier call)"
        print(f"| {label} | {paper} ({source}) | {100 * test['mean_class']:.2f} | {cells} | {wall} |")


if __name__ == "__main__":
    arguments = parse_args()
    pack(arguments) if arguments.command == "pack" else run(arguments)
