"""Training-step time of Balanced Softmax against plain cross-entropy, side by side in one run.

One step = forward + loss + backward + SGD update of the CIFAR ResNet-32 on a CIFAR-sized batch
(3x32x32). Both losses train their own copy of the same initial model on the same batch; the two are
interleaved (CE, BS, then BS, CE, ...) so that drifts of the machine's speed hit both equally, and each
round's BS/CE ratio is taken before the median. Data loading is not part of the step.

Both wall-clock and process CPU time are measured. On a machine shared with other jobs the wall clock
swings with their load; the CPU time this process spent (use ``--threads 1``, so that no time goes to
threads spinning while they wait for each other) is then the steadier measure of the step's cost.

    python benchmarks/step_time.py                  # batch 128, CIFAR-100-LT counts (IF 100)
    python benchmarks/step_time.py --batch-size 512 --classes 10 --rounds 30
    python benchmarks/step_time.py --threads 1      # shared machine: read the CPU-time lines
"""

from __future__ import annotations

import argparse
import copy
import platform
import statistics
import time

import torch

from longtail.data import long_tailed_counts
from longtail.losses import BalancedSoftmaxLoss, CrossEntropyLoss
from longtail.models import create_model


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--classes", type=int, choices=(10, 100), default=100, help="CIFAR-10-LT or CIFAR-100-LT counts")
    p.add_argument("--imbalance-factor", type=float, default=100.0)
    p.add_argument("--rounds", type=int, default=15, help="timed rounds; each times both losses")
    p.add_argument("--steps", type=int, default=4, help="training steps per loss per round")
    p.add_argument("--warmup", type=int, default=3, help="untimed steps per loss before timing")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def make_step(model, loss_fn, inputs, targets):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)

    def step() -> None:
        loss = loss_fn(model(inputs), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return step


def time_steps(step, steps: int, device: torch.device) -> tuple[float, float]:
    """(wall, process CPU) seconds per step, averaged over ``steps`` consecutive steps."""
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(steps):
        step()
    sync(device)
    return (time.perf_counter() - wall) / steps, (time.process_time() - cpu) / steps


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    counts = long_tailed_counts(args.classes, 50000 // args.classes, args.imbalance_factor)
    base = create_model("resnet32", num_classes=args.classes, in_channels=3).to(device)
    inputs = torch.randn(args.batch_size, 3, 32, 32, device=device)
    # targets drawn from the long-tailed training distribution, as a random sampler would give
    targets = torch.multinomial(torch.tensor(counts, dtype=torch.float), args.batch_size, replacement=True).to(device)
    steps = {
        "CE": make_step(copy.deepcopy(base), CrossEntropyLoss(counts).to(device), inputs, targets),
        "BS": make_step(copy.deepcopy(base), BalancedSoftmaxLoss(counts).to(device), inputs, targets),
    }
    for step in steps.values():
        for _ in range(args.warmup):
            step()
    times: dict[str, list[tuple[float, float]]] = {"CE": [], "BS": []}
    for r in range(args.rounds):
        order = ("CE", "BS") if r % 2 == 0 else ("BS", "CE")
        for name in order:
            times[name].append(time_steps(steps[name], args.steps, device))

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else \
        f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} threads"
    print(f"ResNet-32, batch {args.batch_size} x 3x32x32, {args.classes} classes (IF {args.imbalance_factor:g}), "
          f"{where}, torch {torch.__version__}")
    print(f"{args.rounds} interleaved rounds x {args.steps} steps per loss, after {args.warmup} warm-up steps; medians")
    for clock, k in (("wall clock", 0), ("process CPU time", 1)):
        print(f"-- {clock}")
        print(f"{'loss':<20}{'ms/step':>10}{'images/s':>11}")
        for name, label in (("CE", "cross-entropy"), ("BS", "Balanced Softmax")):
            median = statistics.median(t[k] for t in times[name])
            print(f"{label:<20}{1000 * median:>10.1f}{args.batch_size / median:>11.1f}")
        ratios = [bs[k] / ce[k] for bs, ce in zip(times["BS"], times["CE"])]
        ratio = statistics.median(ratios)
        print(f"ratio BS / CE ({clock}): {ratio:.3f} (median of per-round ratios; range {min(ratios):.3f} .. "
              f"{max(ratios):.3f}); target <= 1.02: {'met' if ratio <= 1.02 else 'NOT met'}")


if __name__ == "__main__":
    main()
