"""Memory of the Meta Sampler on an ImageNet-LT-sized problem (N = 115,846, C = 1,000, B = 512).

Counts every tensor the sampler owns or creates in one training step: its state (logits, log counts,
the class index, Adam moments), the draw (uniform noise, Gumbel noise, classes, indices), the
straight-through weights, the tensors autograd saves for their backward, and the gradient. The
official design draws over instances, so each of its per-batch tensors is B x N float32.

    python benchmarks/meta_sampler_memory.py [--num-images 115846 --num-classes 1000 --batch-size 512]
"""

from __future__ import annotations

import argparse

import torch

from longtail.samplers import MetaSampler, MetaSamplerLogits


def imagenet_lt_like_counts(num_images: int, num_classes: int, n_max: int = 1280, n_min: int = 5) -> torch.Tensor:
    """Counts from n_max down to n_min, n_c = n_min (n_max/n_min)^((1 - c/(C-1))^k), k set so they sum to N."""
    t = 1 - torch.arange(num_classes, dtype=torch.float64) / (num_classes - 1)

    def counts(k: float) -> torch.Tensor:
        return (n_min * (n_max / n_min) ** (t ** k)).round().long()

    lo, hi = 0.01, 100.0
    for _ in range(100):  # the total decreases with k
        mid = (lo * hi) ** 0.5
        lo, hi = (mid, hi) if counts(mid).sum() > num_images else (lo, mid)
    out = counts(hi)
    out[1: 1 + num_images - int(out.sum())] += 1  # the rounding remainder goes to head classes
    assert int(out.sum()) == num_images and out.max() <= n_max + 1
    return out


def nbytes(t: torch.Tensor) -> int:
    return t.numel() * t.element_size()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num-images", type=int, default=115_846)
    parser.add_argument("--num-classes", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=512)
    args = parser.parse_args()
    n, c, b = args.num_images, args.num_classes, args.batch_size

    counts = imagenet_lt_like_counts(n, c)
    labels = torch.repeat_interleave(torch.arange(c), counts)
    logits = MetaSamplerLogits(counts, init_pow=0.1)
    adam = torch.optim.Adam(logits.parameters(), lr=1e-3)
    sampler = MetaSampler(labels, logits, batch_size=b, num_batches=1)

    saved: list[int] = []

    def pack(t: torch.Tensor) -> torch.Tensor:
        saved.append(nbytes(t))
        return t

    draw = next(iter(sampler))
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        weights = logits.straight_through(draw.classes, draw.gumbel)
    fake_losses = torch.rand(b)
    (weights * fake_losses).mean().backward()
    adam.step()

    parts = {
        "state: logits + log counts": nbytes(logits.logits) + nbytes(logits.log_counts),
        "state: class index (order, starts, counts)": sum(nbytes(t) for t in (sampler.index.order, sampler.index.starts,
                                                                               sampler.index.counts)),
        "state: Adam moments": sum(nbytes(v) for s in adam.state.values() for v in s.values() if torch.is_tensor(v)),
        "draw: uniform + Gumbel noise (B x C, float32)": 2 * b * c * 4,
        "draw: classes + indices + offsets": 4 * b * 8,
        "straight-through: soft sample (B x C) + picked": b * c * 4 + nbytes(weights),
        "autograd saved tensors": sum(saved),
        "gradient of the logits": nbytes(logits.logits.grad),
    }
    total = sum(parts.values())
    official = b * n * 4
    print(f"Meta Sampler tensors at N={n:,}, C={c:,}, B={b} (2-core CPU, no GPU)")
    for name, size in parts.items():
        print(f"  {name:<50} {size / 2**20:9.3f} MiB")
    print(f"  {'total':<50} {total / 2**20:9.3f} MiB  ({total / 1e6:.1f} MB)")
    print(f"official design: one B x N float32 tensor = {official / 1e6:.1f} MB "
          f"(its Gumbel-softmax keeps several); ratio {official / total:.0f}x for one tensor")
    assert total < 50e6, "the sampler's tensors must stay under 50 MB"


if __name__ == "__main__":
    main()
