"""Feature streams for decoupled stage 2 (Kang et al., ICLR 2020; BALMS stage 2).

Only the classifier trains in stage 2, so the trained module is the head and a "batch" is
(backbone features (B, D), labels (B,)). The features come either from the frozen backbone on every
batch (:class:`BackboneFeatureLoader`, :class:`ImageFetcher`) or from a cache computed once per
augmented view (:class:`FeatureCache`): epoch e reads view e mod V, so with V = epochs the head sees
as many distinct augmentations as when recomputing, at the cost of one backbone pass per view.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterable, Iterator

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler

from ..data.array_dataset import collate
from ..samplers.meta import MetaDraw, MetaSampler


def _set_backbone_mode(backbone: nn.Module, freeze_bn: bool) -> None:
    # frozen BN = eval mode: running statistics stay those of stage 1 (the official code updates them)
    backbone.train(not freeze_bn)


@contextmanager
def intra_op_threads(num_threads: int) -> Iterator[None]:
    """Run the block with ``num_threads`` intra-op threads, then restore the previous count.

    Head-level stage-2 work on cached features is a few dozen ops on (B, C) tensors (B x 10 for
    Fashion-MNIST-LT). Some of them (exp, log, log-softmax through MKL) still open a parallel region;
    on a loaded CPU each such region waits for a descheduled thread (~6-12 ms measured on the shared
    2-core machine, against ~10 us with one thread), which made a cached BALMS step ~200 ms."""
    previous = torch.get_num_threads()
    if num_threads == previous:
        yield
        return
    torch.set_num_threads(num_threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@torch.no_grad()
def extract_features(backbone: nn.Module, loader: Iterable, device: torch.device) -> tuple[Tensor, Tensor]:
    """(N, D) float32 features of the backbone in eval mode and (N,) labels, in loader order, on CPU."""
    backbone.eval()
    feats, labels = [], []
    for x, y in loader:
        feats.append(backbone(x.to(device, non_blocking=True)).float().cpu())
        labels.append(torch.as_tensor(y).cpu())
    return torch.cat(feats), torch.cat(labels)


class FeatureCache:
    """Frozen-backbone features of a dataset, ``features`` (V, N, D), one slice per augmented view.

    Build with :meth:`compute`. :meth:`set_epoch` picks view ``epoch % V``; :meth:`lookup` returns the
    features and labels of dataset indices in that view.
    """

    def __init__(self, features: Tensor, labels: Tensor) -> None:
        if features.ndim != 3 or features.shape[1] != labels.numel():
            raise ValueError(f"features must be (V, N, D) with N = {labels.numel()}, got {tuple(features.shape)}")
        self.features, self.labels, self.view = features, labels.long(), 0

    @classmethod
    def compute(cls, backbone: nn.Module, dataset: Dataset, *, views: int = 1, seed: int = 0, batch_size: int = 512,
                num_workers: int = 0, device: torch.device = torch.device("cpu")) -> "FeatureCache":
        """Run the backbone (eval mode, no gradient) over ``dataset`` ``views`` times. The dataset's own
        transform gives the augmentation; view v draws it from a torch RNG seeded with (seed, v)."""
        if views < 1:
            raise ValueError(f"views must be >= 1, got {views}")
        all_views, labels = [], None
        for v in range(views):
            with torch.random.fork_rng(devices=[]):  # seeded per view without disturbing the caller's RNG
                torch.manual_seed((seed * 1_000_003 + 7919 * (v + 1)) % (2**31))
                loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=num_workers)
                feats, labels = extract_features(backbone, loader, device)
            all_views.append(feats)
        return cls(torch.stack(all_views), labels)

    @property
    def num_views(self) -> int:
        return self.features.shape[0]

    @property
    def nbytes(self) -> int:
        return self.features.numel() * self.features.element_size()

    def set_epoch(self, epoch: int) -> None:
        self.view = int(epoch) % self.num_views

    def lookup(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        indices = torch.as_tensor(indices, dtype=torch.int64)
        return self.features[self.view, indices], self.labels[indices]

    def to(self, device: torch.device) -> "FeatureCache":
        self.features, self.labels = self.features.to(device), self.labels.to(device)
        return self


class CachedFeatureLoader:
    """Batches of cached features in the order of ``sampler`` (a longtail sampler or any iterable of
    indices with ``len``), like a DataLoader over the cache but indexing whole batches at once."""

    def __init__(self, cache: FeatureCache, sampler: Sampler[int], batch_size: int) -> None:
        self.cache, self.sampler, self.batch_size = cache, sampler, int(batch_size)

    def __len__(self) -> int:
        return (len(self.sampler) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        order = torch.as_tensor(list(iter(self.sampler)), dtype=torch.int64)
        for start in range(0, order.numel(), self.batch_size):
            yield self.cache.lookup(order[start:start + self.batch_size])


class BackboneFeatureLoader:
    """Wraps an image loader: yields (backbone(x) without gradient, y). With ``freeze_bn`` the backbone
    runs in eval mode; without, in train mode (BatchNorm statistics keep updating, as in the official
    code)."""

    def __init__(self, loader: DataLoader, backbone: nn.Module, device: torch.device, freeze_bn: bool = True) -> None:
        self.loader, self.backbone, self.device, self.freeze_bn = loader, backbone, device, freeze_bn

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for x, y in self.loader:
            _set_backbone_mode(self.backbone, self.freeze_bn)
            with torch.no_grad():
                feats = self.backbone(x.to(self.device, non_blocking=True))
            yield feats, y


class ImageFetcher:
    """``lookup(indices)`` -> (backbone features, labels) of those dataset items, loaded in this process
    (the Meta Sampler decides the indices only at the step that uses them, so nothing is prefetched)."""

    def __init__(self, dataset: Dataset, backbone: nn.Module, device: torch.device, freeze_bn: bool = True) -> None:
        self.dataset, self.backbone, self.device, self.freeze_bn = dataset, backbone, device, freeze_bn

    def lookup(self, indices: Tensor) -> tuple[Tensor, Tensor]:
        # One __getitems__ call, as a DataLoader makes: an in-memory dataset with a batched transform
        # augments the whole batch in a few tensor operations. Item by item, CIFAR's AutoAugment + Cutout
        # cost 0.7 s per BALMS step of 512 on an H200 machine, 25x the stage-1 step.
        wanted = indices.tolist()
        getitems = getattr(self.dataset, "__getitems__", None)
        x, y = collate(getitems(wanted) if getitems is not None else [self.dataset[i] for i in wanted])
        _set_backbone_mode(self.backbone, self.freeze_bn)
        with torch.no_grad():
            return self.backbone(x.to(self.device, non_blocking=True)), torch.as_tensor(y)


class MetaFeatureLoader:
    """Iterates a :class:`MetaSampler` lazily: each ``next()`` draws a batch from the sampler's current
    logits, fetches its features with ``fetch(indices)``, and keeps the draw in :attr:`current` for the
    bilevel step."""

    def __init__(self, sampler: MetaSampler, fetch: Callable[[Tensor], tuple[Tensor, Tensor]]) -> None:
        self.sampler, self.fetch = sampler, fetch
        self.current: MetaDraw | None = None

    def __len__(self) -> int:
        return len(self.sampler)

    def __iter__(self) -> Iterator[tuple[Tensor, Tensor]]:
        for draw in self.sampler:
            self.current = draw
            yield self.fetch(draw.indices)

    def current_draw(self) -> MetaDraw:
        if self.current is None:
            raise RuntimeError("no batch has been drawn yet")
        return self.current
