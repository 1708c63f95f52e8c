"""The CIFAR-10-LT training loop against a bare PyTorch loop, side by side in one run.

Prints, each as a ratio of figures measured in the same process (rounds interleaved, medians):
  1. the ResNet-32 training step in channels_last against NCHW (images/s);
  2. the loader alone (in-memory uint8 CIFAR-10-LT, the paper's augmentation) against the step it feeds:
     per-sample torchvision v2 transforms vs the batched pipeline (longtail's default for CIFAR);
  3. ``longtail.engine.train_one_epoch`` against a bare loop (the same model, batches, loss, optimiser
     and scheduler; the bare loop is the five lines every PyTorch tutorial writes);
  4. validation as a share of training time in the CIFAR-10-LT configs (180 val images, eval_every 5).

    python benchmarks/cifar_loop.py --data PATH/cifar10_jpeg.tar     # the real images (or torchvision's folder)
    python benchmarks/cifar_loop.py                                    # generated images of the same size
    python benchmarks/cifar_loop.py --threads 1 --rounds 3 --steps 8   # quick look on a busy machine
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time

import torch
from torch.utils.data import DataLoader, RandomSampler

from longtail.data import ArrayImageDataset, long_tailed_counts, long_tailed_split
from longtail.data.array_dataset import collate
from longtail.data.transforms import cifar_batch_transforms, cifar_transforms
from longtail.engine import train_one_epoch, warmup_cosine
from longtail.models import create_model


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default=None, help="CIFAR-10 image tar / folder or torchvision folder (default: generated)")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=20, help="training steps per variant per round")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's choice)")
    p.add_argument("--autoaugment", action="store_true", help="the BALMS pipeline (AutoAugment + Cutout) "
                   "instead of the LDAM one (crop + flip)")
    return p.parse_args()


def cifar10_lt(path: str | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """uint8 (N, 32, 32, 3) training images and labels of CIFAR-10-LT IF 100, and the val split."""
    if path is not None:
        from pathlib import Path

        from longtail.data.sources import load_cifar
        images, labels, _ = load_cifar(Path(path), 10, train=True)
    else:
        g = torch.Generator().manual_seed(0)
        images = torch.randint(0, 256, (50000, 32, 32, 3), dtype=torch.uint8, generator=g)
        labels = torch.arange(10).repeat_interleave(5000)
    split = long_tailed_split(labels, long_tailed_counts(10, 5000, 100), val_per_class=20, seed=0, partial_val=True)
    return images[split.train], labels[split.train], images[split.val], labels[split.val]


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tr_x, tr_y, va_x, va_y = cifar10_lt(args.data)
    b, n_steps = args.batch_size, args.steps
    aa = args.autoaugment
    per_sample = ArrayImageDataset(tr_x, tr_y, cifar_transforms(True, autoaugment=aa, cutout=aa))
    batched = ArrayImageDataset(tr_x, tr_y, cifar_batch_transforms(True, autoaugment=aa, cutout=aa))
    val = ArrayImageDataset(va_x, va_y, cifar_batch_transforms(False))

    def loader(ds, steps: int = n_steps) -> DataLoader:
        return DataLoader(ds, batch_size=b, sampler=RandomSampler(ds, num_samples=steps * b), collate_fn=collate)

    def drain(ds) -> None:
        for _ in loader(ds):
            pass

    cl = torch.channels_last
    models = {fmt: create_model("resnet32", 10, 3).to(memory_format=fmt) for fmt in (torch.contiguous_format, cl)}
    fixed_x, fixed_y = next(iter(loader(batched, 1)))

    def step_fn(model, fmt):
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
        x = fixed_x.contiguous(memory_format=fmt)

        def run() -> None:
            for _ in range(n_steps):
                loss = torch.nn.functional.cross_entropy(model(x), fixed_y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        return run

    def bare_epoch(model, opt, sched) -> None:
        model.train()
        for x, y in loader(batched):
            x = x.contiguous(memory_format=cl)
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()

    def engine_epoch(model, opt, sched) -> None:
        train_one_epoch(model, loader(batched), torch.nn.functional.cross_entropy, opt, sched,
                        device=torch.device("cpu"), epoch=0, memory_format=cl)

    def setup():
        model = create_model("resnet32", 10, 3).to(memory_format=cl)
        opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4)
        return model, opt, warmup_cosine(opt, 10**6, 0, 1.0)

    bare, engine = setup(), setup()
    from longtail.engine import evaluate

    variants = {
        "step NCHW": step_fn(models[torch.contiguous_format], torch.contiguous_format),
        "step channels_last": step_fn(models[cl], cl),
        "loader per-sample v2": lambda: drain(per_sample),
        "loader batched": lambda: drain(batched),
        "bare loop": lambda: bare_epoch(*bare),
        "longtail train_one_epoch": lambda: engine_epoch(*engine),
        "val pass (180 images)": lambda: evaluate(engine[0], DataLoader(val, batch_size=512, collate_fn=collate),
                                                  torch.device("cpu"), [1] * 10, memory_format=cl),
    }
    for fn in variants.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {k: [] for k in variants}
    for r in range(args.rounds):
        names = list(variants) if r % 2 == 0 else list(reversed(variants))
        for name in names:
            times[name].append(timed(variants[name]))

    med = {k: statistics.median(v) for k, v in times.items()}
    rate = {k: n_steps * b / med[k] for k in med if not k.startswith("val")}
    print(f"CIFAR-10-LT IF 100 ({len(tr_y)} images, {'real: ' + args.data if args.data else 'generated pixels'}), "
          f"ResNet-32, batch {b}, {'AutoAugment + Cutout' if aa else 'crop + flip'}; {platform.machine()} CPU, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}; {args.rounds} interleaved rounds x "
          f"{n_steps} steps, medians")
    for name, v in rate.items():
        print(f"  {name:<28}{v:>9.0f} images/s")

    def ratio(a: str, c: str) -> tuple[float, str]:
        rs = [x / y for x, y in zip(times[a], times[c])]
        return statistics.median(rs), f"(rounds {min(rs):.3f} .. {max(rs):.3f})"

    r, rng = ratio("step NCHW", "step channels_last")
    print(f"step, channels_last speed-up over NCHW: {r:.2f}x {rng}")
    step_rate = rate["step channels_last"]
    print(f"loader / step, batched: {rate['loader batched'] / step_rate:.1f}x; per-sample v2: "
          f"{rate['loader per-sample v2'] / step_rate:.1f}x (target >= 4)")
    r, rng = ratio("longtail train_one_epoch", "bare loop")
    print(f"longtail epoch / bare loop epoch: {r:.3f} {rng} (target <= 1.05)")
    epoch_seconds = len(tr_y) / rate["longtail train_one_epoch"]
    share = med["val pass (180 images)"] / epoch_seconds
    print(f"validation / training, CIFAR-10-LT configs: one val pass {med['val pass (180 images)']:.3f} s vs a "
          f"{epoch_seconds:.1f} s epoch = {100 * share:.1f}% every epoch, {100 * share / 5:.1f}% at eval_every 5 "
          f"(target <= 10%)")


if __name__ == "__main__":
    main()
