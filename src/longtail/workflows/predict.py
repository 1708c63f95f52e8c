"""`longtail predict RUN INPUT...`: apply a trained run to new images.

RUN: a run directory or weights file, or a post-hoc run (`longtail posthoc`), applied as its stage-1 model
with the chosen correction in the head. Neither needs the dataset: classes, counts and the test-time
preprocessing come from the run's metrics.json (:mod:`longtail.workflows.trained_model`).

INPUT: image files, folders (searched recursively for .jpg/.jpeg/.png/.bmp/.webp) or split lists
(``relative/path [label]`` per line, paths relative to ``--root``). Each image gets the run's test-time
preprocessing (converted to the run's channels and, for the in-memory datasets, resized to their image
size when it differs). Writes ``predictions.csv`` (path, top-k classes with names and probabilities),
``logits.npz`` (paths, logits: those whose softmax gives the probabilities, i.e. the model's logits times its
loss's ``probability_scale`` (LDAM's s for cosine logits, else 1), plus the prior's log pi) and, if any image
could not be read, ``unreadable.txt``; unreadable images are reported by name and skipped, never silently dropped.

Test-time prior: the model's logits estimate p(y|x) under the training objective's prior (uniform for
Balanced Softmax / logit adjustment / decoupled heads; the training prior for plain CE). ``--prior``
adds log pi to the logits before the softmax (logit adjustment, Menon et al. 2021): ``uniform`` (default,
nothing added), ``train`` (the training class counts) or a JSON file with C non-negative weights.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset

from ..config import ConfigError
from ..engine import distributed as dist_utils
from ..samplers import SequentialShardSampler
from .output import make_console
from .trained_model import load_trained_model

console = make_console(soft_wrap=True)  # no hard wraps inside paths
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")


def collect_inputs(inputs: Sequence[str], root: str | None = None) -> list[Path]:
    """Image paths from files, folders (recursive, sorted) and split lists, in the order given."""
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            paths += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.suffix.lower() == ".txt" and path.is_file():
            base = Path(root) if root else path.parent
            for line in path.read_text().splitlines():
                if line.strip():
                    parts = line.strip().rsplit(maxsplit=1)
                    rel = parts[0] if len(parts) == 2 and parts[1].lstrip("-").isdigit() else line.strip()
                    paths.append(base / rel)
        elif path.exists():
            paths.append(path)
        else:
            raise ConfigError(f"{item} does not exist (give image files, folders or split lists)")
    if not paths:
        raise ConfigError(f"no image found in {list(inputs)} (extensions: {', '.join(IMAGE_SUFFIXES)})")
    return paths


class ImageFiles(Dataset):
    """Items (image tensor or None, index); None marks an unreadable file (its error is kept)."""

    def __init__(self, paths: list[Path], preprocess) -> None:
        self.paths, self.preprocess = paths, preprocess
        self.errors: dict[int, str] = {}

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int):
        try:
            with Image.open(self.paths[index]) as image:
                return self.preprocess(image), index
        except (OSError, UnidentifiedImageError, ValueError) as err:
            return None, f"{index}\t{type(err).__name__}: {err}"


def _collate(items):
    images = [x for x, _ in items if x is not None]
    indices = [i for x, i in items if x is not None]
    failures = [i for x, i in items if x is None]
    return (torch.stack(images) if images else None), torch.tensor(indices, dtype=torch.long), failures


def prior_log(prior: str, counts: list[int]) -> torch.Tensor | None:
    if prior == "uniform":
        return None
    if prior == "train":
        weights = torch.tensor(counts, dtype=torch.float64)
    else:
        path = Path(prior)
        if not path.is_file():
            raise ConfigError(f"--prior must be uniform, train or a JSON file of class weights; {prior} is none of them")
        weights = torch.tensor(json.loads(path.read_text()), dtype=torch.float64)
    if weights.shape != (len(counts),) or (weights < 0).any() or weights.sum() <= 0:
        raise ConfigError(f"--prior needs {len(counts)} non-negative class weights with a positive sum")
    return torch.log(weights / weights.sum()).float()


def run_predict(target: str | Path, inputs: Sequence[str], *, out: str | Path | None = None, root: str | None = None,
                top_k: int = 5, prior: str = "uniform", batch_size: int = 256, device: str = "auto",
                data_root: str | Path | None = None) -> dict:
    """``target``: a run directory, weights file or post-hoc run (its stage-1 model with the correction in the
    head). The run's classes and test-time preprocessing come from its ``metrics.json``; ``data_root``: rebuild
    them from the run's dataset there instead (runs trained before longtail recorded them, whose data moved)."""
    info = dist_utils.setup(device)
    paths = collect_inputs(inputs, root)
    trained = load_trained_model(target, data_root, f"longtail predict {target} ... --data-root PATH")
    run_dir, cfg, data = trained.run_dir, trained.cfg, trained.inputs
    model = trained.model.to(info.device)
    dataset = ImageFiles(paths, data.preprocess)
    loader = DataLoader(dataset, batch_size=batch_size, collate_fn=_collate, num_workers=cfg.num_workers,
                        sampler=SequentialShardSampler(len(dataset), num_replicas=info.world_size, rank=info.rank))
    logits, indices, failures = _predict_readable(model, loader, info)
    logits = logits * trained.probability_scale  # from here on, logits whose softmax is the model's belief
    shift = prior_log(prior, data.class_counts)
    if shift is not None:
        logits = logits + shift
    k = min(top_k, logits.shape[1])
    probs = logits.softmax(dim=1)
    top_p, top_c = probs.topk(k, dim=1)
    out_dir = Path(out) if out else run_dir / "predictions"
    result = {"predictions": out_dir / "predictions.csv", "logits": out_dir / "logits.npz", "unreadable": failures}
    if info.is_main:
        out_dir.mkdir(parents=True, exist_ok=True)
        order = indices.tolist()
        with open(result["predictions"], "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["path"] + [f"{what}{r + 1}" for r in range(k) for what in ("class", "name", "prob")])
            for row, i in enumerate(order):
                cells = []
                for c, p in zip(top_c[row].tolist(), top_p[row].tolist()):
                    cells += [c, data.class_names[c], f"{p:.6f}"]
                writer.writerow([str(paths[i])] + cells)
        np.savez_compressed(result["logits"], paths=np.array([str(paths[i]) for i in order]),
                            logits=logits.numpy(), prior=prior)
        if failures:
            lines = [f"{paths[int(f.split(chr(9))[0])]}\t{f.split(chr(9), 1)[1]}" for f in failures]
            (out_dir / "unreadable.txt").write_text("\n".join(lines) + "\n")
            for line in lines[:10]:
                console.print(f"[yellow]unreadable, skipped:[/] {line}")
        console.print(f"{len(order)} image(s) predicted, {len(failures)} unreadable -> {result['predictions']}, "
                      f"{result['logits']}" + (f", {out_dir / 'unreadable.txt'}" if failures else ""))
    return result


@torch.no_grad()
def _predict_readable(model: torch.nn.Module, loader: DataLoader, info) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """Logits and input indices of the readable images, sorted by index (every rank's shard gathered
    under torchrun: shards differ in length once unreadable images are skipped), and the failures."""
    model.eval()
    outs, idxs, failures = [], [], []
    for images, indices, failed in loader:
        failures += failed
        if images is not None:
            outs.append(model(images.to(info.device)).float().cpu())
            idxs.append(indices)
    num_classes = model.num_classes
    logits = torch.cat(outs) if outs else torch.empty(0, num_classes)
    indices = torch.cat(idxs) if idxs else torch.empty(0, dtype=torch.long)
    if info.distributed:
        parts = dist_utils.all_gather_objects((logits, indices, failures))
        logits, indices = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
        failures = [f for p in parts for f in p[2]]
    order = indices.argsort()
    return logits[order], indices[order], failures
