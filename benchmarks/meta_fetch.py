"""The Meta Sampler's batch fetch (BALMS stage 2 recomputing features), side by side in one run:

the Meta Sampler picks its batch's indices at the step that uses them, so no DataLoader prefetches it:
``ImageFetcher`` loads it in the training process, then runs the frozen backbone on it. This times the
loading part of ``ImageFetcher.lookup`` (its backbone replaced by ``nn.Identity``) on a batch of CIFAR
images with the BALMS recipe's training augmentation (crop + flip + AutoAugment + Cutout):

- batched: the dataset's ``__getitems__`` (one transform call on the whole batch, what ``ImageFetcher``
  does now);
- item by item: one ``__getitem__`` per index (what it did before, and still does for a dataset with
  no ``__getitems__``);
- and, for scale, the frozen ResNet-32 forward on such a batch (on ``--device``).

Variants are timed interleaved, round by round, and the medians compared, so machine load hits all.

    python benchmarks/meta_fetch.py [--data cifar10_jpeg_slice.tar] [--batch-size 512] [--rounds 7] [--threads 1]

Without ``--data`` the images are random uint8 (augmentation cost does not depend on content much).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from longtail.data import ArrayImageDataset
from longtail.data.transforms import cifar_batch_transforms
from longtail.engine import ImageFetcher
from longtail.models import create_model


class ItemByItem(torch.utils.data.Dataset):
    """The same dataset without ``__getitems__``: fetched one index at a time."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int):
        return self.dataset[index]


def images_of(path: str | None, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    if path is None:
        g = torch.Generator().manual_seed(0)
        return torch.randint(0, 256, (n, 32, 32, 3), dtype=torch.uint8, generator=g), torch.arange(n) % 10
    from longtail.data.cifar_images import load_cifar_images
    train = load_cifar_images(path, 10)["train"]
    return torch.as_tensor(train.images), torch.as_tensor(train.labels)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", help="a CIFAR-10 image copy (tar or folder); default: random images")
    p.add_argument("--batch-size", type=int, default=512)
    p.add_argument("--rounds", type=int, default=7)
    p.add_argument("--threads", type=int, default=1, help="intra-op threads of this process (the training process's)")
    p.add_argument("--device", default="cpu", help="where the backbone forward runs")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    images, labels = images_of(args.data, 2000)
    dataset = ArrayImageDataset(images, labels, transform=cifar_batch_transforms(train=True))
    device = torch.device(args.device)
    backbone = create_model("resnet32", 10).backbone.eval().requires_grad_(False).to(device)
    cpu = torch.device("cpu")
    fetchers = {"load, batched": ImageFetcher(dataset, torch.nn.Identity(), cpu),
                "load, item by item": ImageFetcher(ItemByItem(dataset), torch.nn.Identity(), cpu)}
    augmented = dataset.transform(dataset.images[:args.batch_size]).to(device)

    def forward() -> None:
        with torch.no_grad():
            backbone(augmented)
        if device.type == "cuda":
            torch.cuda.synchronize()

    variants = {name: (lambda f=f: f.lookup(torch.randint(len(dataset), (args.batch_size,)))) for name, f in fetchers.items()}
    variants[f"ResNet-32 forward ({device.type})"] = forward
    times: dict[str, list[float]] = {k: [] for k in variants}
    for round_ in range(args.rounds + 1):
        for name, fn in variants.items():
            start = time.perf_counter()
            fn()
            if round_:  # round 0 warms up
                times[name].append(time.perf_counter() - start)
    med = {k: statistics.median(v) for k, v in times.items()}
    print(f"torch {torch.__version__}, {args.threads} intra-op thread(s); batch {args.batch_size} of 3x32x32, "
          f"{'images of ' + args.data if args.data else 'random images'}; medians of {args.rounds} rounds")
    print("| part of a fetch | s per batch | images/s | vs batched load |\n|---|---:|---:|---:|")
    for name, seconds in med.items():
        print(f"| {name} | {seconds:.3f} | {args.batch_size / seconds:,.0f} | {seconds / med['load, batched']:.2f}x |")


if __name__ == "__main__":
    main()
