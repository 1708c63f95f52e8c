"""Stage-2 cost, side by side in one run:

A. one training step of plain Balanced Softmax stage 2 vs one BALMS step (Meta Sampler draw + bilevel
   update on a cached meta batch + the same real update), with the backbone recomputed on the batch
   and on cached features; cached steps both with the process's intra-op threads and with one thread
   (what `longtail train` uses on cached features, see ``intra_op_threads``);
B. one stage-2 epoch on Fashion-MNIST-LT recomputing the frozen backbone (data loading + augmentation
   + forward) vs reading cached features.

Steps are timed interleaved (A, B, A, B, ...) and the medians compared, so machine load hits both.

    python benchmarks/stage2_step.py [--steps 30] [--model resnet8_small] [--batch-size 128] [--epochs 2]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import DataLoader

from longtail.data import build_dataset
from longtail.engine import (
    BackboneFeatureLoader,
    CachedFeatureLoader,
    FeatureCache,
    MetaStepHook,
    intra_op_threads,
    train_one_epoch,
)
from longtail.losses import BalancedSoftmaxLoss
from longtail.models import create_model
from longtail.samplers import MetaDraw, MetaSamplerLogits, RandomSampler

COUNTS = [1000, 599, 359, 215, 129, 77, 46, 27, 16, 10]  # Fashion-MNIST-LT IF 100


def step_benchmark(args) -> dict[str, float]:
    torch.manual_seed(0)
    model = create_model(args.model, len(COUNTS), args.in_channels)
    backbone, head = model.backbone.eval().requires_grad_(False), model.head
    loss = BalancedSoftmaxLoss(COUNTS)
    opt = torch.optim.SGD(head.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    logits = MetaSamplerLogits(COUNTS)
    adam = torch.optim.Adam(logits.parameters(), lr=0.01)
    b, size = args.batch_size, args.image_size
    images = torch.randn(b, args.in_channels, size, size)
    with torch.no_grad():
        meta_feats = backbone(torch.randn(b, args.in_channels, size, size))  # cached balanced val features
    meta_y = torch.arange(b) % len(COUNTS)
    generator = torch.Generator().manual_seed(0)
    state: dict = {}
    hook = MetaStepHook(head=head, sampler_logits=logits, meta_optimizer=adam, optimizer=opt,
                        inner_loss=loss.per_sample, current_draw=lambda: state["draw"],
                        meta_batches=lambda: iter([(meta_feats, meta_y)] * 10**9))
    cached = backbone(images).detach()

    def real_update(feats, y):
        opt.zero_grad(set_to_none=True)
        loss(head(feats), y).backward()
        opt.step()

    def plain(recompute: bool):
        y = torch.randint(len(COUNTS), (b,), generator=generator)
        with torch.no_grad():
            feats = backbone(images) if recompute else cached
        real_update(feats, y)

    def balms(recompute: bool):
        classes, gumbel = logits.draw(b, generator)
        state["draw"] = MetaDraw(torch.zeros(b, dtype=torch.long), classes, gumbel)
        with torch.no_grad():
            feats = backbone(images) if recompute else cached
        hook(feats, classes, 0)
        real_update(feats, classes)

    threads = torch.get_num_threads()
    runs = {"bs_recompute": (lambda: plain(True), threads), "balms_recompute": (lambda: balms(True), threads),
            "bs_cached": (lambda: plain(False), threads), "balms_cached": (lambda: balms(False), threads),
            "bs_cached1": (lambda: plain(False), 1), "balms_cached1": (lambda: balms(False), 1)}
    times: dict[str, list[float]] = {k: [] for k in runs}
    for i in range(args.steps + 3):
        for name, (fn, n) in runs.items():
            with intra_op_threads(n):  # thread switch outside the timed region
                start = time.perf_counter()
                fn()
                elapsed = time.perf_counter() - start
            if i >= 3:  # warm-up
                times[name].append(elapsed)
    return {k: statistics.median(v) for k, v in times.items()}


def epoch_benchmark(args) -> dict[str, float]:
    torch.manual_seed(0)
    data = build_dataset("fashion_mnist_lt", imbalance_factor=100)
    model = create_model("resnet8_small", data.num_classes, data.in_channels)
    backbone, head = model.backbone.eval().requires_grad_(False), model.head
    loss = BalancedSoftmaxLoss(data.class_counts)
    opt = torch.optim.SGD(head.parameters(), lr=0.1, momentum=0.9)
    sampler = RandomSampler(len(data.train), seed=0)
    recompute = BackboneFeatureLoader(DataLoader(data.train, batch_size=args.epoch_batch_size, sampler=sampler),
                                      backbone, torch.device("cpu"))
    start = time.perf_counter()
    cache = FeatureCache.compute(backbone, data.train, views=1, batch_size=512)
    cache_seconds = time.perf_counter() - start
    cached = CachedFeatureLoader(cache, sampler, args.epoch_batch_size)
    times: dict[str, list[float]] = {"recompute": [], "cached": []}
    for epoch in range(args.epochs):
        sampler.set_epoch(epoch)
        for name, loader, threads in (("recompute", recompute, torch.get_num_threads()), ("cached", cached, 1)):
            with intra_op_threads(threads):  # as `longtail train`: one thread for head-only epochs
                stats = train_one_epoch(head, loader, loss, opt, device=torch.device("cpu"), epoch=epoch)
            times[name].append(stats["seconds"])
    return {"recompute": statistics.median(times["recompute"]), "cached": statistics.median(times["cached"]),
            "cache_one_view": cache_seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--model", default="resnet8_small")
    parser.add_argument("--in-channels", type=int, default=1)
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2, help="epochs timed per variant in part B")
    parser.add_argument("--epoch-batch-size", type=int, default=128)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, 2-core CPU, no GPU")
    s = step_benchmark(args)
    print(f"A. stage-2 step, {args.model}, batch {args.batch_size} of {args.in_channels}x{args.image_size}^2 "
          f"(median of {args.steps}):")
    for mode, label in (("recompute", "recompute"), ("cached", f"cached, {torch.get_num_threads()} thr"),
                        ("cached1", "cached, 1 thr")):
        bs, balms = s[f"bs_{mode}"], s[f"balms_{mode}"]
        print(f"   {label:<15}: Balanced Softmax {1000 * bs:8.2f} ms   BALMS {1000 * balms:8.2f} ms   "
              f"ratio {balms / bs:5.2f}x")
    e = epoch_benchmark(args)
    print(f"B. stage-2 epoch on Fashion-MNIST-LT (2,478 images, batch {args.epoch_batch_size}, median of {args.epochs}):")
    print(f"   recomputing the backbone {e['recompute']:7.3f} s   cached features {e['cached']:7.4f} s   "
          f"speed-up {e['recompute'] / e['cached']:6.1f}x   (caching one view: {e['cache_one_view']:.2f} s)")


if __name__ == "__main__":
    main()
