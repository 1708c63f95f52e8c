"""A tiny in-memory detection dataset in torchvision format, for tests that must not wait for the
LVIS benchmark generator: coloured squares (one colour per class) on a dark canvas."""

from __future__ import annotations

import pytest
import torch


def toy_detection_samples(num_images: int = 6, num_classes: int = 5, size: int = 64, seed: int = 0,
                          class_probs: list[float] | None = None) -> list[tuple[torch.Tensor, dict]]:
    g = torch.Generator().manual_seed(seed)
    palette = torch.rand(num_classes, 3, generator=g) * 0.8 + 0.2
    probs = torch.tensor(class_probs if class_probs is not None else [1.0] * num_classes)
    samples = []
    for i in range(num_images):
        image = torch.rand(3, size, size, generator=g) * 0.1
        n = int(torch.randint(1, 4, (1,), generator=g))
        labels = torch.multinomial(probs, n, replacement=True, generator=g) + 1
        boxes, masks = [], []
        for lab in labels.tolist():
            side = int(torch.randint(12, 24, (1,), generator=g))
            x0, y0 = (int(v) for v in torch.randint(0, size - side, (2,), generator=g))
            image[:, y0:y0 + side, x0:x0 + side] = palette[lab - 1].view(3, 1, 1)
            boxes.append([x0, y0, x0 + side, y0 + side])
            m = torch.zeros(size, size, dtype=torch.uint8)
            m[y0:y0 + side, x0:x0 + side] = 1
            masks.append(m)
        samples.append((image, {"boxes": torch.tensor(boxes, dtype=torch.float32), "labels": labels,
                                "masks": torch.stack(masks), "image_id": i + 1}))
    return samples


@pytest.fixture
def toy_samples():
    return toy_detection_samples()


@pytest.fixture(autouse=True)
def _one_thread():
    """Small detector steps run ~50x slower with 2 OpenMP threads on a loaded 2-core machine (threads
    spin waiting for each other); one thread keeps these tests fast and their timing stable."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
