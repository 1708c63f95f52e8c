"""Detector training step with the BAGS head vs the softmax head, side by side in one run.

Same detector (small backbone, 128 x 128 canvases, batch 4), same weights and batches; only the
classification head differs. Steps alternate softmax / BAGS so that load changes on a shared
machine hit both alike; the figure is the ratio of median step times. Two settings:
  * end to end (stage 1 style): the whole Faster R-CNN step;
  * decoupled (stage 2 style, the BAGS recipe): RoI features of the frozen detector + class-logit layer.
Class counts: LVIS v0.5 (1230 classes, BAGS 1236 logits) and the embedded benchmark's 120 classes.

    .venv/bin/python benchmarks/detection_step.py [--steps 20] [--threads 1]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from longtail.detection import create_detector
from longtail.detection.lvis import load_lvis_category_stats
from longtail.detection.train import freeze_all_but_class_logits, roi_training_features


def batch(num_classes: int, seed: int, size: int = 128, per_image: int = 5):
    g = torch.Generator().manual_seed(seed)
    images, targets = [], []
    for _ in range(4):
        xy = torch.rand(per_image, 2, generator=g) * (size - 40)
        wh = torch.rand(per_image, 2, generator=g) * 30 + 10
        images.append(torch.rand(3, size, size, generator=g))
        targets.append({"boxes": torch.cat([xy, xy + wh], 1),
                        "labels": torch.randint(1, num_classes + 1, (per_image,), generator=g)})
    return images, targets


def make_step(model, decoupled: bool):
    if decoupled:
        layer = freeze_all_but_class_logits(model)
        opt = torch.optim.SGD(layer.parameters(), lr=0.01, momentum=0.9)
        head = model.roi_heads.classification

        def step(images, targets):
            feats, labels = roi_training_features(model, images, targets)
            loss = head.loss(layer(feats), labels)
            opt.zero_grad()
            loss.backward()
            opt.step()
    else:
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)

        def step(images, targets):
            model.train()
            loss = sum(model(images, targets).values())
            opt.zero_grad()
            loss.backward()
            opt.step()
    return step


def compare(counts: list[int], decoupled: bool, steps: int) -> tuple[float, float, float]:
    num_classes = len(counts)
    steppers = {}
    for head in ("softmax", "bags"):
        torch.manual_seed(0)
        model = create_detector("fasterrcnn", num_classes=num_classes, head=head, instance_counts=counts,
                                min_size=128, max_size=128)
        steppers[head] = make_step(model, decoupled)
    times = {"softmax": [], "bags": []}
    batches = [batch(num_classes, s) for s in range(4)]
    for i in range(steps + 3):
        order = ("softmax", "bags") if i % 2 == 0 else ("bags", "softmax")
        for head in order:
            images, targets = batches[i % len(batches)]
            torch.manual_seed(i)  # same proposal sampling for both heads
            start = time.perf_counter()
            steppers[head](images, targets)
            if i >= 3:  # warm-up
                times[head].append(time.perf_counter() - start)
    soft, bags = statistics.median(times["softmax"]), statistics.median(times["bags"])
    return soft, bags, bags / soft


def head_loss_ms(counts: list[int], rois: int = 256, repeats: int = 200) -> dict[str, float]:
    """fwd + bwd time of the classification loss alone on (rois, K) logits: the only part of the step
    that differs between the heads, measured without the detector's noise."""
    from longtail.detection import create_head

    out = {}
    labels = torch.randint(0, len(counts) + 1, (rois,))
    labels[: 3 * rois // 4] = 0  # torchvision samples 25% positives
    for name in ("softmax", "bags"):
        head = create_head(name, len(counts), instance_counts=counts)
        logits = torch.randn(rois, head.num_logits, requires_grad=True)
        for _ in range(10):
            head.loss(logits, labels).backward()
        start = time.perf_counter()
        for _ in range(repeats):
            head.loss(logits, labels).backward()
        out[name] = 1000 * (time.perf_counter() - start) / repeats
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    settings = {"LVIS v0.5 (1230 classes)": list(load_lvis_category_stats("v0.5").instance_counts)}
    from longtail.detection.synthetic import lvis_profile_counts
    settings["embedded (120 classes)"] = lvis_profile_counts(120, 10.0).tolist()
    print(f"torch {torch.__version__}, {args.threads} thread(s), {args.steps} timed steps per head, median step time")
    print(f"{'classes':<26}{'step':<12}{'softmax ms':>12}{'BAGS ms':>10}{'BAGS/softmax':>14}")
    for name, counts in settings.items():
        for decoupled in (False, True):
            soft, bags, ratio = compare(counts, decoupled, args.steps)
            kind = "decoupled" if decoupled else "end to end"
            print(f"{name:<26}{kind:<12}{1000 * soft:>12.1f}{1000 * bags:>10.1f}{ratio:>14.3f}")
        loss = head_loss_ms(counts)
        print(f"{name:<26}{'loss only':<12}{loss['softmax']:>12.2f}{loss['bags']:>10.2f}"
              f"{loss['bags'] / loss['softmax']:>14.3f}   (256 RoIs, fwd + bwd)")


if __name__ == "__main__":
    main()
