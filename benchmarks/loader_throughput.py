"""Decode + augment throughput (images/s) of the ImageNet-style training pipeline, with 0 and N
DataLoader workers side by side, next to the training-step throughput of a model, so users can see
whether loading or the model is the bottleneck.

Generates JPEGs of ImageNet/Places size (default 500x375, quality 90) in a temporary folder, reads
them through :class:`longtail.data.split_file.SplitFileDataset` with ``imagenet_transforms`` (what
``longtail train`` does for imagenet_lt / places_lt), and prints one table.

    python benchmarks/loader_throughput.py --images 384 --workers 2 --model resnet10
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from longtail.data.split_file import SplitFileDataset
from longtail.data.transforms import imagenet_transforms
from longtail.models import create_model


def make_jpegs(folder: Path, n: int, width: int, height: int) -> list[str]:
    """Smooth random images (JPEG-compress like photos, unlike white noise)."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        small = rng.integers(0, 256, (height // 16 + 1, width // 16 + 1, 3), dtype=np.uint8)
        image = Image.fromarray(small).resize((width, height), Image.BILINEAR)
        path = f"train/c{i % 10}/{i}.jpg"
        (folder / path).parent.mkdir(parents=True, exist_ok=True)
        image.save(folder / path, quality=90)
        paths.append(path)
    return paths


def loader_rate(dataset, workers: int, batch_size: int, epochs: int = 2) -> float:
    """Images/s over ``epochs`` passes, after a first batch that pays for worker start-up."""
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers,
                        persistent_workers=workers > 0)
    next(iter(loader))
    start, seen = time.perf_counter(), 0
    for _ in range(epochs):
        for images, _ in loader:
            seen += images.shape[0]
    return seen / (time.perf_counter() - start)


def decode_rate(dataset, n: int) -> float:
    start = time.perf_counter()
    for i in range(n):
        dataset.loader(str(dataset.root / dataset.paths[i]))
    return n / (time.perf_counter() - start)


def model_rate(name: str, batch_size: int, size: int, steps: int, device: torch.device) -> float:
    """Training images/s of forward + backward + SGD step on random inputs (no loading)."""
    model = create_model(name, num_classes=1000).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch_size, 3, size, size, device=device)
    y = torch.randint(0, 1000, (batch_size,), device=device)

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()

    step()  # warm-up (allocations, cuDNN algorithm choice)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch_size / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--images", type=int, default=384)
    p.add_argument("--width", type=int, default=500)
    p.add_argument("--height", type=int, default=375)
    p.add_argument("--size", type=int, default=224, help="crop size of the pipeline")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--workers", type=int, default=2, help="N of the 'N workers' column")
    p.add_argument("--model", default="resnet10", help="model for the training-step column ('' to skip)")
    p.add_argument("--model-steps", type=int, default=3)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        paths = make_jpegs(root, args.images, args.width, args.height)
        train = SplitFileDataset(root, paths, [int(q.split("/")[1][1:]) for q in paths],
                                 transform=imagenet_transforms(train=True, size=args.size))
        threads = torch.get_num_threads()
        rates = {"decode only (PIL, 0 workers)": decode_rate(train, min(args.images, 128)),
                 "decode + augment, 0 workers": loader_rate(train, 0, args.batch_size)}
        # In the main process the per-image tensor ops (ToDtype, Normalize) use torch's intra-op
        # threads, which on a busy machine costs more than it gains; workers run with 1 thread each.
        torch.set_num_threads(1)
        rates["decode + augment, 0 workers, 1 torch thread"] = loader_rate(train, 0, args.batch_size)
        torch.set_num_threads(threads)
        rates[f"decode + augment, {args.workers} workers"] = loader_rate(train, args.workers, args.batch_size)
    if args.model:
        rates[f"{args.model} train step ({args.device}, batch {args.batch_size})"] = model_rate(
            args.model, args.batch_size, args.size, args.model_steps, torch.device(args.device))

    print(f"{args.images} JPEGs {args.width}x{args.height} -> RandomResizedCrop {args.size} + flip + colour jitter; "
          f"torch threads {torch.get_num_threads()}")
    for name, rate in rates.items():
        print(f"  {name:<52} {rate:8.1f} images/s")
    zero, many = rates["decode + augment, 0 workers"], rates[f"decode + augment, {args.workers} workers"]
    print(f"  speed-up of {args.workers} workers over 0: {many / zero:.2f}x "
          f"(over 0 workers with 1 torch thread: {many / rates['decode + augment, 0 workers, 1 torch thread']:.2f}x)")
    if args.model:
        model = list(rates.values())[-1]
        verdict = "loading is the bottleneck" if many < model else "the model is the bottleneck"
        print(f"  loader ({args.workers} workers) / model: {many / model:.2f} -> {verdict}")


if __name__ == "__main__":
    main()
