"""DataLoaders for training and evaluation, the same for every task and process count."""

from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from ..samplers import SequentialShardSampler
from .array_dataset import collate


def train_loader(dataset: Dataset, sampler: Sampler, *, batch_size: int, num_workers: int = 0,
                 device: torch.device = torch.device("cpu"), persistent_workers: bool = False) -> DataLoader:
    """Batches of ``dataset`` in ``sampler``'s order (batched datasets transform a whole batch at once).
    Workers are not persistent by default: they restart every epoch and seed from the RNG that the trainer
    re-seeds per epoch, so a resumed run augments identically."""
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      pin_memory=device.type == "cuda", drop_last=False, collate_fn=collate,
                      persistent_workers=persistent_workers and num_workers > 0)


def eval_loader(dataset: Dataset, *, batch_size: int, num_workers: int = 0, device: torch.device = torch.device("cpu"),
                world_size: int = 1, rank: int = 0) -> DataLoader:
    """Every item of ``dataset`` once, in order; under DDP rank r reads items r, r + W, ... (the
    ``predict`` gather puts them back in order)."""
    sampler = SequentialShardSampler(len(dataset), num_replicas=world_size, rank=rank)
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=num_workers,
                      pin_memory=device.type == "cuda", collate_fn=collate)
