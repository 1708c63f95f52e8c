"""A tiny detection dataset for tests that must not wait for the LVIS benchmark generator: coloured squares
(one colour per class) on a dark canvas, in memory (torchvision format) or written as LVIS-format files."""

from __future__ import annotations

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


def write_toy_lvis(folder, num_train: int = 10, num_val: int = 4, num_classes: int = 5) -> dict:
    """Write toy samples as an LVIS-format dataset: folder/{train,val,test}/*.png and lvis_{train,val,test}.json
    (categories with frequency, image_count, instance_count of the train split). Returns the paths."""
    import json
    from pathlib import Path

    from PIL import Image

    folder = Path(folder)
    probs = [0.5 ** k for k in range(num_classes)]  # long-tailed
    splits = {"train": toy_detection_samples(num_train, num_classes, seed=1, class_probs=probs),
              "val": toy_detection_samples(num_val, num_classes, seed=2),
              "test": toy_detection_samples(num_val, num_classes, seed=3)}
    image_counts, instance_counts = [0] * num_classes, [0] * num_classes
    for _, t in splits["train"]:
        for lab in set(t["labels"].tolist()):
            image_counts[lab - 1] += 1
        for lab in t["labels"].tolist():
            instance_counts[lab - 1] += 1
    freq = ["r" if n <= 10 else "c" if n <= 100 else "f" for n in image_counts]
    categories = [{"id": k + 1, "name": f"class{k + 1}", "frequency": freq[k], "image_count": image_counts[k],
                   "instance_count": instance_counts[k]} for k in range(num_classes)]
    paths, ann_id = {}, 1
    for split, samples in splits.items():
        (folder / split).mkdir(parents=True, exist_ok=True)
        images, anns = [], []
        for k, (image, t) in enumerate(samples):
            image_id = k + 1 + {"train": 0, "val": 1000, "test": 2000}[split]
            name = f"{split}/{image_id:06d}.png"
            Image.fromarray((image.permute(1, 2, 0) * 255).round().byte().numpy()).save(folder / name)
            images.append({"id": image_id, "file_name": name, "height": 64, "width": 64, "neg_category_ids": [],
                           "not_exhaustive_category_ids": []})
            for box, lab in zip(t["boxes"].tolist(), t["labels"].tolist()):
                x0, y0, x1, y1 = box
                poly = [x0, y0, x1, y0, x1, y1, x0, y1]
                anns.append({"id": ann_id, "image_id": image_id, "category_id": lab, "bbox": [x0, y0, x1 - x0, y1 - y0],
                             "area": (x1 - x0) * (y1 - y0), "segmentation": [poly]})
                ann_id += 1
        paths[split] = folder / f"lvis_{split}.json"
        paths[split].write_text(json.dumps({"images": images, "annotations": anns, "categories": categories}))
    return paths
