"""An independent re-implementation of the LDAM-DRW code's cross-entropy (ERM) run on CIFAR-10-LT, to tell
whether longtail's CE gap to the published 70.4 comes from longtail's loop or from elsewhere (data, seed).

Nothing here comes from longtail: the images are read from the JPEG copy's tar (or its extracted folder)
with PIL, the long-tailed subset is drawn as the LDAM code's ``IMBALANCECIFAR10`` draws it
(``np.random.seed(0)``, each class's indices shuffled, the first ``int(n_max * (1/IF) ** (c / 9))`` kept),
augmentation is the LDAM code's per-sample torchvision pipeline on PIL images (RandomCrop(32, padding=4),
horizontal flip, ToTensor, Normalize with its statistics), the model its ResNet-32 (option-A shortcuts,
``kaiming_normal_`` on every Conv2d *and* Linear weight), the optimiser SGD (momentum 0.9, weight decay
2e-4, lr 0.1, batch 128) with its epoch-wise schedule (linear warm-up over 5 epochs, x0.01 after
epoch 160, x0.0001 after 180), and, as there, the test set is scored after every epoch and the best
score of the run is what the code reports. This prints the last epoch's figure beside that best one.

    python benchmarks/cifar10_ldam_reference.py --data cifar10_jpeg.tar --out ldam_ref [--seed 0]
    python benchmarks/cifar10_ldam_reference.py --data cifar10_jpeg.tar --out ldam_ref --resume

The run checkpoints after every epoch (``OUT/checkpoint.pt``, with the random state, so a resumed run
continues exactly as an uninterrupted one) and keeps every epoch's figures in ``OUT/history.json``;
``--stop-after N`` ends a sitting after epoch N. About 3 h on one 2-core-machine core for 200 epochs.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tarfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision import transforms

CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
# the LDAM code's normalisation (its std is not CIFAR-10's per-pixel std; kept as it is there)
MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)


class UsageError(Exception):
    """A problem with the arguments or the data, said in one line."""


# ----------------------------------------------------------------------------------------------------- data
def read_splits(data: Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per split ("train", "test"): uint8 (N, 32, 32, 3) images and int64 labels, in (class, file name) order,
    from one pass over the tar or folder."""
    found: dict[str, dict[tuple[int, str], bytes]] = {"train": {}, "test": {}}

    def take(parts: tuple[str, ...], read) -> None:
        if len(parts) >= 3 and parts[-3] in found and parts[-2] in CLASSES and parts[-1].lower().endswith((".jpg", ".png")):
            found[parts[-3]][(CLASSES.index(parts[-2]), parts[-1])] = read()

    if data.is_file():
        with tarfile.open(data) as tar:
            for member in tar:
                if member.isfile():
                    take(tuple(member.name.split("/")), lambda m=member: tar.extractfile(m).read())
    elif data.is_dir():
        for path in sorted(data.rglob("*")):
            if path.is_file():
                take(path.relative_to(data).parts, path.read_bytes)
    else:
        raise UsageError(f"--data {data}: no such file or folder (the CIFAR-10 JPEG copy's tar or folder)")
    splits = {}
    for split, files in found.items():
        if not files:
            raise UsageError(f"--data {data}: no {split}/<class>/<image> files (expected the CIFAR-10 JPEG copy's layout)")
        keys = sorted(files)
        images = np.stack([np.asarray(Image.open(io.BytesIO(files[k])).convert("RGB")) for k in keys])
        if images.shape[1:] != (32, 32, 3):
            raise UsageError(f"--data {data}: {split} images are {images.shape[1:3]}, not 32x32")
        splits[split] = images, np.array([k[0] for k in keys], dtype=np.int64)
    return splits


def ldam_long_tail(labels: np.ndarray, n_max: int, imbalance_factor: float) -> tuple[np.ndarray, list[int]]:
    """IMBALANCECIFAR10.gen_imbalanced_data: indices of the kept images, and the count per class."""
    counts = [int(n_max * (1 / imbalance_factor) ** (c / (len(CLASSES) - 1))) for c in range(len(CLASSES))]
    np.random.seed(0)  # the LDAM code's rand_number default
    keep = []
    for c, n in enumerate(counts):
        idx = np.where(labels == c)[0]
        if len(idx) < n:
            raise UsageError(f"class {CLASSES[c]} has {len(idx)} training images, fewer than the {n} to keep "
                                 f"(lower --n-max)")
        np.random.shuffle(idx)
        keep.append(idx[:n])
    return np.concatenate(keep), counts


class ImageArray(torch.utils.data.Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray, transform) -> None:
        self.images, self.labels, self.transform = images, labels, transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        return self.transform(Image.fromarray(self.images[i])), int(self.labels[i])


# ---------------------------------------------------------------------------------------------------- model
class Block(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.pad = (cout - cin) // 2 if stride != 1 or cin != cout else None

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        short = x if self.pad is None else F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))
        return F.relu(out + short)


class ResNet32(nn.Module):
    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        blocks, cin = [], 16
        for stage, cout in enumerate((16, 32, 64)):
            for b in range(5):
                blocks.append(Block(cin, cout, 2 if stage > 0 and b == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.linear = nn.Linear(64, num_classes)
        for m in self.modules():  # the LDAM code's _weights_init: default kaiming_normal_ (fan_in, gain sqrt 2)
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x):
        out = self.blocks(F.relu(self.bn1(self.conv1(x))))
        return self.linear(F.adaptive_avg_pool2d(out, 1).flatten(1))


def learning_rate(epoch: int, epochs: int, base: float = 0.1) -> float:
    """The LDAM code's adjust_learning_rate for 0-based ``epoch``; its milestones 160 / 180 of 200 scale
    with ``epochs`` (exactly its schedule at 200)."""
    e = epoch + 1
    if e <= 5:
        return base * e / 5
    if e > round(0.9 * epochs):
        return base * 1e-4
    if e > round(0.8 * epochs):
        return base * 1e-2
    return base


# ------------------------------------------------------------------------------------------------------ run
def evaluate(model: nn.Module, loader) -> tuple[float, list[float]]:
    model.eval()
    correct = torch.zeros(len(CLASSES))
    total = torch.zeros(len(CLASSES))
    with torch.no_grad():
        for x, y in loader:
            pred = model(x.contiguous(memory_format=torch.channels_last)).argmax(1)
            total += torch.bincount(y, minlength=len(CLASSES)).float()
            correct += torch.bincount(y[pred == y], minlength=len(CLASSES)).float()
    return float(100 * correct.sum() / total.sum()), (100 * correct / total.clamp(min=1)).tolist()


def replace_file(path: Path, write) -> None:
    """write(tmp) then rename over ``path``: an interruption leaves the previous file whole."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", type=Path, required=True, help="the CIFAR-10 JPEG copy: its tar or extracted folder")
    p.add_argument("--out", type=Path, required=True, help="folder for checkpoint.pt and history.json")
    p.add_argument("--imbalance-factor", type=float, default=100.0)
    p.add_argument("--n-max", type=int, default=5000, help="images of the head class (CIFAR-10: 5000)")
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--seed", type=int, default=0, help="torch seed: initialisation, batch order, augmentation")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--stop-after", type=int, default=None, help="end this sitting after epoch N (resume later)")
    args = p.parse_args(argv)
    if args.epochs < 1 or args.n_max < 1 or args.imbalance_factor < 1 or args.threads < 1:
        raise UsageError("--epochs, --n-max and --threads must be >= 1 and --imbalance-factor >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    checkpoint_path, history_path = args.out / "checkpoint.pt", args.out / "history.json"
    settings = {k: getattr(args, k) for k in ("imbalance_factor", "n_max", "epochs", "seed")}
    if checkpoint_path.exists() and not args.resume:
        raise UsageError(f"{args.out} already holds a run: add --resume to continue it, or choose another --out")
    if args.resume and not checkpoint_path.exists():
        raise UsageError(f"--resume: {args.out} holds no checkpoint.pt to continue")

    splits = read_splits(args.data)
    (train_images, train_labels), (test_images, test_labels) = splits["train"], splits["test"]
    keep, counts = ldam_long_tail(train_labels, args.n_max, args.imbalance_factor)
    train = ImageArray(train_images[keep], train_labels[keep], transforms.Compose([
        transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
        transforms.Normalize(MEAN, STD)]))
    test = ImageArray(test_images, test_labels, transforms.Compose([transforms.ToTensor(), transforms.Normalize(MEAN, STD)]))

    torch.manual_seed(args.seed)
    model = ResNet32().to(memory_format=torch.channels_last)  # a memory layout only: same arithmetic, 1.3x faster on CPU
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=2e-4)
    history: list[dict] = []
    start = 0
    if args.resume:
        state = torch.load(checkpoint_path, weights_only=False)
        if state["settings"] != settings:
            raise UsageError(f"--resume: {args.out} was run with {state['settings']}, not {settings}")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        history, start = state["history"], state["epoch"]
    else:
        args.out.mkdir(parents=True, exist_ok=True)
    print(f"CIFAR-10-LT IF {args.imbalance_factor:g}: {len(keep)} training images {counts}, {len(test)} test; "
          f"seed {args.seed}; epochs {start + 1}-{args.epochs}", flush=True)

    train_loader = torch.utils.data.DataLoader(train, batch_size=128, shuffle=True)
    test_loader = torch.utils.data.DataLoader(test, batch_size=100)
    criterion = nn.CrossEntropyLoss()
    last = args.epochs if args.stop_after is None else min(args.epochs, args.stop_after)
    for epoch in range(start, last):
        t0 = time.perf_counter()
        lr = learning_rate(epoch, args.epochs)
        for group in optimizer.param_groups:
            group["lr"] = lr
        model.train()
        loss_sum, seen = 0.0, 0
        for x, y in train_loader:
            loss = criterion(model(x.contiguous(memory_format=torch.channels_last)), y)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            loss_sum, seen = loss_sum + loss.item() * len(y), seen + len(y)
        top1, per_class = evaluate(model, test_loader)
        history.append({"epoch": epoch + 1, "lr": lr, "loss": loss_sum / seen, "test_top1": top1,
                        "test_per_class": per_class, "seconds": time.perf_counter() - t0})
        best = max(history, key=lambda r: r["test_top1"])
        print(f"epoch {epoch + 1:3d}/{args.epochs}  lr {lr:.5f}  loss {loss_sum / seen:.4f}  test {top1:.2f}  "
              f"best {best['test_top1']:.2f} (epoch {best['epoch']})  ({history[-1]['seconds']:.1f}s)", flush=True)
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch + 1,
                 "torch_rng": torch.get_rng_state(), "history": history, "settings": settings}
        replace_file(checkpoint_path, lambda tmp: torch.save(state, tmp))
        record = {"settings": settings, "train_counts": counts, "history": history}
        replace_file(history_path, lambda tmp: tmp.write_text(json.dumps(record, indent=1)))

    if len(history) < args.epochs:
        print(f"stopped after epoch {len(history)} of {args.epochs}: continue with --resume")
        return
    final, best = history[-1], max(history, key=lambda r: r["test_top1"])
    print(f"last epoch ({final['epoch']}): {final['test_top1']:.2f}   best over epochs 1-{final['epoch']} "
          f"(epoch {best['epoch']}): {best['test_top1']:.2f}   best - last: {best['test_top1'] - final['test_top1']:+.2f}")


if __name__ == "__main__":
    try:
        main()
    except UsageError as error:
        sys.exit(f"error: {error}")
    except KeyboardInterrupt:
        sys.exit("interrupted: the last finished epoch is saved; continue with --resume")
