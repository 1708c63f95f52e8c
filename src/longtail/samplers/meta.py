"""The Meta Sampler of BALMS (Ren et al., "Balanced Meta-Softmax", NeurIPS 2020, Sec. 3.2), in two parts:

* :class:`MetaSamplerLogits`, a module holding one learnable logit ``w_c`` per class. An instance of
  class c is drawn with weight sigmoid(w_c), so class c gets the mass
  ``pi_c = n_c sigmoid(w_c) / sum_j n_j sigmoid(w_j)``.
* :class:`MetaSampler`, which reads those logits to draw each batch at the moment the training loop
  asks for it: a hard Gumbel-max draw over classes (B x C), then a uniform instance of the class.

The official code draws over all N instances (a B x N tensor per batch) from a prefetching batch
sampler, so its draws use stale logits. Drawing the class first gives the same distribution of
batches with B x C memory, and drawing lazily keeps the sampler in step with the learner. The
bilevel update of the logits lives in :mod:`longtail.engine.meta`; this module never sees the model.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import as_labels
from .class_balanced import ClassIndex


def init_logits(class_counts: Tensor, init_pow: float) -> Tensor:
    """Official initialisation: r_c = p_c^(-init_pow), r <- r / (min r + max r), w = logit(r).
    init_pow 0 gives instance-balanced sampling, 1 class-balanced. Empty classes get w = 0 (unused)."""
    counts = class_counts.double()
    present = counts > 0
    p = counts[present] / counts.sum()
    r = p.pow(-float(init_pow))
    r = r / (r.min() + r.max())
    w = torch.zeros_like(counts)
    w[present] = torch.logit(r)
    return w


class MetaSamplerLogits(nn.Module):
    """Learnable per-class sampling logits ``logits`` (C,) and the class counts (C,) they weight.

    Args:
        class_counts: (C,) training samples per class; classes with 0 samples are never drawn.
        init_pow: initial balance, 0 = instance-balanced ... 1 = class-balanced (official configs:
            CIFAR 0, ImageNet-LT 0.1, Places-LT 0.3).
    """

    def __init__(self, class_counts: Sequence[int] | Tensor, *, init_pow: float = 0.0) -> None:
        super().__init__()
        counts = torch.as_tensor(class_counts, dtype=torch.float64).flatten()
        if counts.numel() == 0 or (counts < 0).any() or not torch.isfinite(counts).all() or counts.sum() <= 0:
            raise ValueError("class_counts must be a non-empty 1-D sequence of finite counts >= 0, not all zero")
        if not math.isfinite(init_pow):
            raise ValueError(f"init_pow must be finite, got {init_pow}")
        self.init_pow = float(init_pow)
        self.register_buffer("log_counts", counts.log().float())  # -inf for empty classes: never drawn
        self.logits = nn.Parameter(init_logits(counts, init_pow).float())

    @property
    def num_classes(self) -> int:
        return int(self.logits.numel())

    def class_log_weights(self) -> Tensor:
        """(C,) unnormalised log class mass, log n_c + log sigmoid(w_c) (differentiable in w)."""
        return self.log_counts + F.logsigmoid(self.logits)

    def sampling_probability(self) -> Tensor:
        """(C,) probability that one draw picks class c (detached, float64)."""
        return torch.softmax(self.class_log_weights().detach().double(), 0)

    @torch.no_grad()
    def draw(self, batch_size: int, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        """Hard Gumbel-max draw: classes (B,) int64 and the Gumbel noise (B, C) that picked them."""
        u = torch.rand(batch_size, self.num_classes, generator=generator).to(self.logits.device)
        gumbel = -torch.log((-torch.log(u.clamp_min(1e-20))).clamp_min(1e-20))  # Gumbel(0, 1)
        classes = (self.class_log_weights() + gumbel).argmax(1)
        return classes, gumbel

    def straight_through(self, classes: Tensor, gumbel: Tensor, temperature: float = 1.0) -> Tensor:
        """(B,) per-sample surrogate weights: value 1, gradient of the soft Gumbel sample.

        The hard one-hot h (B, C) of a draw becomes ``h - s.detach() + s`` with
        s = softmax((log n + log sigmoid(w) + g) / temperature); a sample's loss is multiplied by its
        drawn entry, so the loss value is unchanged and d/dw flows through s (Jang et al. 2017).
        """
        soft = torch.softmax((self.class_log_weights() + gumbel) / temperature, dim=1)
        picked = soft.gather(1, classes.view(-1, 1)).squeeze(1)
        return picked - picked.detach() + 1.0


@dataclass
class MetaDraw:
    """One rank's share of a batch: dataset ``indices`` (b,), their ``classes`` (b,) and the Gumbel
    noise (b, C) that drew them (to rebuild the straight-through weights)."""

    indices: Tensor
    classes: Tensor
    gumbel: Tensor


class MetaSampler:
    """Draws batches from the current :class:`MetaSamplerLogits`, one batch per ``next()``.

    Each step draws the global batch (``batch_size * num_replicas``) from one generator seeded with
    ``seed + epoch``, identical on every rank, and each rank keeps its strided share. Draws are made
    when the training loop asks, never ahead, so each batch uses the logits of that step. Do not hand
    it to a multi-worker DataLoader (which would prefetch); iterate it in the training loop.

    Args:
        labels: (N,) training labels.
        logits: the :class:`MetaSamplerLogits` to read (the sampler does not update them).
        batch_size: samples per rank per step.
        num_batches: steps per epoch (default: N // (batch_size * num_replicas), at least 1).
        num_replicas, rank, seed: DDP world size, this rank, base seed.
    """

    def __init__(self, labels: Sequence[int] | Tensor, logits: MetaSamplerLogits, *, batch_size: int,
                 num_batches: int | None = None, num_replicas: int = 1, rank: int = 0, seed: int = 0) -> None:
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"need num_replicas >= 1 and 0 <= rank < num_replicas, got {num_replicas=}, {rank=}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        labels = as_labels(labels)
        self.index = ClassIndex(labels, logits.num_classes)
        counts = logits.log_counts.exp().round().long().cpu()
        if not torch.equal(counts, self.index.counts):
            raise ValueError("the MetaSamplerLogits were built from other class counts than these labels give: "
                             "build them from the training labels' counts")
        self.logits, self.batch_size = logits, int(batch_size)
        self.num_replicas, self.rank, self.seed, self.epoch = num_replicas, rank, int(seed), 0
        default = max(len(labels) // (self.batch_size * num_replicas), 1)
        self.num_batches = int(num_batches) if num_batches is not None else default

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.num_batches

    def __iter__(self) -> Iterator[MetaDraw]:
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        share = slice(self.rank, None, self.num_replicas)
        for _ in range(self.num_batches):
            classes, gumbel = self.logits.draw(self.batch_size * self.num_replicas, generator)
            indices = self.index.sample(classes.cpu(), generator)
            yield MetaDraw(indices[share], classes[share], gumbel[share])
