"""Balanced Group Softmax, BAGS (Li et al., "Overcoming Classifier Imbalance for Long-tail Object
Detection with Balanced Group Softmax", CVPR 2020, Sec. 3.2-3.3).

Classes are grouped by training instance count (boxes, not images) into half-open bins
``[0, e_1), [e_1, e_2), ..., [e_last, inf)``; group 0 is a 2-way softmax background vs foreground.
Every foreground group has a softmax over its own classes plus one "others" logit. Logit layout
(K = C + 1 + number of groups, counting group 0; 1236 for LVIS v0.5)::

    [bg, fg | others_1, classes of group 1 | others_2, classes of group 2 | ...]

Training (Eq. 3): in group g a RoI of one of g's classes has label 1..n_g, every other RoI
(background or another group's class) is "others" (label 0). Each group keeps all its positives
plus ``int(num_pos * others_ratio)`` random others; a group without a positive adds 0. The loss is
the sum over groups of each group's cross-entropy averaged over the RoIs it used.

Inference (Eq. 4): softmax per group, drop "others", scatter back to class order and multiply by
P(fg) from group 0; the background column is P(bg). No renormalisation.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import DetectionClassification, _need, register_head


def bags_group_of(instance_counts: Sequence[float] | Tensor, bin_edges: Sequence[float]) -> Tensor:
    """Group (1..G) of each class, shape (C,): class c goes to group 1 + #{edges <= n_c}.

    A class with 0 training instances falls in the first bin (as in the official code)."""
    counts = torch.as_tensor(instance_counts, dtype=torch.float64).flatten()
    edges = torch.as_tensor(list(bin_edges), dtype=torch.float64)
    if counts.numel() == 0 or (counts < 0).any() or not torch.isfinite(counts).all():
        raise ValueError("instance_counts must be a non-empty 1-D sequence of finite counts >= 0")
    if edges.numel() == 0 or (edges[1:] <= edges[:-1]).any() or (edges <= 0).any():
        raise ValueError(f"bin_edges must be positive and strictly increasing, got {list(bin_edges)}")
    return 1 + torch.searchsorted(edges, counts, right=True)


def sample_group_rois(targets: Tensor, others_ratio: float, generator: torch.Generator | None = None) -> Tensor:
    """Which RoIs each group uses: (R, G+1) bool from group targets (R, G+1).

    Column 0 (bg vs fg) uses every RoI. Column g >= 1 keeps its positives (target > 0) and
    ``min(int(num_pos * others_ratio), num_others)`` others chosen uniformly at random; nothing when
    it has no positive."""
    num_rois, num_cols = targets.shape
    pos = targets[:, 1:] > 0  # (R, G)
    num_pos = pos.sum(0)
    keep = num_pos + torch.minimum((num_pos.double() * others_ratio).long(), num_rois - num_pos)
    # Rank RoIs per group: positives first (key -1), then others in random order; keep the first `keep`.
    device = generator.device if generator is not None else pos.device
    noise = torch.rand(pos.shape, generator=generator, device=device).to(pos.device)
    key = torch.where(pos, torch.full_like(noise, -1.0), noise)
    order = key.argsort(dim=0)
    positions = torch.arange(num_rois, device=pos.device).unsqueeze(1).expand_as(order).contiguous()
    rank = torch.empty_like(order).scatter_(0, order, positions)
    mask = rank < keep
    return torch.cat([torch.ones(num_rois, 1, dtype=torch.bool, device=pos.device), mask], dim=1)


def grouped_softmax_loss(logits: Tensor, targets: Tensor, mask: Tensor, bounds: Sequence[tuple[int, int]]) -> Tensor:
    """Sum over groups of the mean cross-entropy over each group's used RoIs (BAGS Eq. 3).

    logits (R, K); targets (R, G+1) label within each group's slice; mask (R, G+1) bool;
    ``bounds[g] = (start, end)`` of group g's slice of the K logits (contiguous, in order)."""
    sizes = [end - start for start, end in bounds]
    # One split (a single backward) and one gather instead of per-group slices and log-softmaxes
    # keeps the loss close to a plain cross-entropy's cost.
    lse = torch.stack([torch.logsumexp(z, dim=1) for z in logits.split(sizes, dim=1)], dim=1)  # (R, G+1)
    starts = torch.tensor([start for start, _ in bounds], device=logits.device)
    picked = logits.gather(1, starts + targets)  # (R, G+1): the target logit of every group
    used = mask.to(logits.dtype)
    return (((lse - picked) * used).sum(0) / used.sum(0).clamp_min(1)).sum()


def grouped_softmax_scores(logits: Tensor, bounds: Sequence[tuple[int, int]], class_columns: Tensor) -> Tensor:
    """BAGS inference (Eq. 4): (R, K) logits -> (R, C+1) scores, column 0 = P(bg)."""
    probs = torch.cat([F.softmax(logits[:, s:e], dim=1) for s, e in bounds], dim=1)  # (R, K)
    fg = probs[:, 1:2] * probs[:, class_columns]  # (R, C): P(fg) * P(class | its group)
    return torch.cat([probs[:, :1], fg], dim=1)


class BalancedGroupSoftmax(DetectionClassification):
    """BAGS classification head: loss and scores over ``C + 1 + groups`` logits.

    Args:
        instance_counts: (C,) training instances (boxes) of classes 1..C (label c <-> entry c - 1).
        bin_edges: group boundaries on the instance count; default LVIS (10, 100, 1000).
        others_ratio: beta, the number of sampled "others" per positive in a group (paper: 8).

    Attributes: ``group_of_class`` (C,) group 1..G of each class, ``group_sizes`` classes per
    foreground group, ``num_logits``, ``bounds`` the (start, end) logit slice of every group.
    """

    def __init__(self, instance_counts: Sequence[float] | Tensor, *, bin_edges: Sequence[float] = (10, 100, 1000),
                 others_ratio: float = 8.0) -> None:
        group_of = bags_group_of(instance_counts, bin_edges)
        super().__init__(num_classes=int(group_of.numel()))
        if others_ratio < 0:
            raise ValueError(f"others_ratio must be >= 0, got {others_ratio}")
        self.bin_edges, self.others_ratio = tuple(float(e) for e in bin_edges), float(others_ratio)
        num_groups = len(self.bin_edges) + 1
        sizes = torch.bincount(group_of, minlength=num_groups + 1)[1:]
        if (sizes == 0).any():
            empty = [g + 1 for g in torch.nonzero(sizes == 0).flatten().tolist()]
            raise ValueError(f"BAGS groups {empty} get no class with bin_edges {list(bin_edges)} (group sizes "
                             f"{sizes.tolist()}); choose bin_edges that split these instance counts into non-empty bins")
        self.group_sizes = sizes.tolist()
        C = self.num_classes
        bounds, start = [(0, 2)], 2
        for n in self.group_sizes:
            bounds.append((start, start + n + 1))
            start += n + 1
        self.bounds = bounds
        # targets[g, label]: label of class `label` (0 = bg) inside group g's softmax.
        targets = torch.zeros(num_groups + 1, C + 1, dtype=torch.int64)
        targets[0, 1:] = 1
        class_columns = torch.empty(C, dtype=torch.int64)
        for g in range(1, num_groups + 1):
            members = torch.nonzero(group_of == g).flatten()  # class indices 0..C-1, ascending
            targets[g, members + 1] = torch.arange(1, members.numel() + 1)
            class_columns[members] = bounds[g][0] + torch.arange(1, members.numel() + 1)
        self.register_buffer("group_of_class", group_of, persistent=False)
        self.register_buffer("group_targets", targets, persistent=False)
        self.register_buffer("class_columns", class_columns, persistent=False)

    @property
    def num_logits(self) -> int:
        return self.num_classes + 1 + len(self.bounds)

    def targets(self, labels: Tensor) -> Tensor:
        """(R,) labels 0..C -> (R, G+1) label inside every group's softmax."""
        return self.group_targets[:, labels].t()

    def loss(self, logits: Tensor, labels: Tensor, generator: torch.Generator | None = None) -> Tensor:
        self.check(logits, labels)
        targets = self.targets(labels)
        mask = sample_group_rois(targets, self.others_ratio, generator)
        return grouped_softmax_loss(logits, targets, mask, self.bounds)

    def scores(self, logits: Tensor) -> Tensor:
        return grouped_softmax_scores(logits, self.bounds, self.class_columns)

    def init_class_logits(self, layer: torch.nn.Linear) -> None:
        torch.nn.init.normal_(layer.weight, std=0.01)  # as the official BAGS head
        torch.nn.init.zeros_(layer.bias)

    def extra_repr(self) -> str:
        return (f"num_classes={self.num_classes}, group_sizes={self.group_sizes}, num_logits={self.num_logits}, "
                f"others_ratio={self.others_ratio}")


@register_head("bags")
def _bags(num_classes: int, instance_counts: Sequence[float] | None = None, image_counts=None, num_images=None, *,
          bin_edges: Sequence[float] = (10, 100, 1000), others_ratio: float = 8.0) -> DetectionClassification:
    counts = _need(instance_counts, "instance_counts", "bags", num_classes)
    return BalancedGroupSoftmax(counts, bin_edges=bin_edges, others_ratio=others_ratio)
