"""Training-step throughput of the speed options, side by side in one run: eager float32 (the reference),
``channels_last``, ``amp=bf16`` (autocast), ``compile=true`` (torch.compile, in place), and compile with
channels_last, as images/s and as ratios against eager float32.

One step = forward + Balanced Softmax loss + backward + SGD update of the CIFAR ResNet-32 on a CIFAR batch
(3x32x32), the step `longtail train` takes (``engine.loop.train_one_epoch`` on an in-memory loader). Each
variant trains its own copy of the same initial model; the variants are interleaved round by round so that
drifts of the machine's speed hit all of them, and each round's ratio against eager is taken before the
median. Compilation happens before timing (``compile_in_place`` plus untimed warm-up steps) and its time is
printed separately.

    python benchmarks/step_modes.py                           # CPU: batch 128, 1 thread
    python benchmarks/step_modes.py --device cuda --batch-size 256 --threads 8
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time

import torch

from longtail.data import long_tailed_counts
from longtail.engine.loop import compile_in_place, train_one_epoch
from longtail.losses import BalancedSoftmaxLoss
from longtail.models import create_model

VARIANTS = {  # name: (channels_last, amp dtype, compile)
    "eager fp32": (False, None, False),
    "channels_last": (True, None, False),
    "bf16 autocast": (False, torch.bfloat16, False),
    "compile": (False, None, True),
    "compile + channels_last": (True, None, True),
}


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--steps", type=int, default=4, help="training steps per variant per round")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per variant first")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--skip", nargs="*", default=[], choices=list(VARIANTS), help="variants to leave out")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    counts = long_tailed_counts(10, 5000, 100.0)
    torch.manual_seed(0)
    base = create_model("resnet32", 10, 3)
    images = torch.randn(args.steps * args.batch_size, 3, 32, 32)
    labels = torch.randint(0, 10, (images.shape[0],))
    batches = [(images[i:i + args.batch_size], labels[i:i + args.batch_size])
               for i in range(0, images.shape[0], args.batch_size)]
    loss_fn = BalancedSoftmaxLoss(counts).to(device)
    runs, compile_seconds = {}, {}
    for name, (channels_last, amp, compiled) in VARIANTS.items():
        if name in args.skip:
            continue
        fmt = torch.channels_last if channels_last else torch.contiguous_format
        model = copy.deepcopy(base).to(device, memory_format=fmt)
        if compiled:
            start = time.perf_counter()
            if not compile_in_place(model, batches[0][0][:2].to(device, memory_format=fmt)):
                continue
            compile_seconds[name] = time.perf_counter() - start
        optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
        run = dict(model=model, optimizer=optimizer, fmt=fmt, amp=amp)
        start = time.perf_counter()
        step(run, batches[:1] * args.warmup, loss_fn, device)  # compiles the training graph too
        if compiled:
            compile_seconds[name] += time.perf_counter() - start
        runs[name] = run
    ratios = {name: [] for name in runs}
    rates = {name: [] for name in runs}
    for _ in range(args.rounds):
        seconds = {name: step(run, batches, loss_fn, device) for name, run in runs.items()}
        for name in runs:
            rates[name].append(images.shape[0] / seconds[name])
            ratios[name].append(seconds["eager fp32"] / seconds[name])
    print(f"training step, CIFAR ResNet-32, batch {args.batch_size}, {args.device} "
          f"({platform.processor() or platform.machine()}), {args.threads} thread(s), torch {torch.__version__}; "
          f"median of {args.rounds} rounds x {args.steps} steps")
    for name in runs:
        extra = f"   (compiling took {compile_seconds[name]:.0f} s)" if name in compile_seconds else ""
        print(f"  {name:<24} {statistics.median(rates[name]):8.1f} images/s   "
              f"x{statistics.median(ratios[name]):5.2f} vs eager fp32{extra}")


def step(run: dict, batches: list, loss_fn, device: torch.device) -> float:
    start = time.perf_counter()
    train_one_epoch(run["model"], batches, loss_fn, run["optimizer"], device=device, epoch=0,
                    memory_format=run["fmt"], amp=run["amp"])
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


if __name__ == "__main__":
    main()
