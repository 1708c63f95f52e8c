"""Sigmoid classification heads for LVIS detection (Ren et al., "Balanced Meta-Softmax for Long-Tailed
Visual Recognition", NeurIPS 2020, Sec. 3.1 Eq. 5 applied to the sigmoid head of their LVIS code),
and the Meta Reweighter of BALMS on LVIS (Sec. 3.2, the LVIS variant of the Meta Sampler): its bilevel
step and its class-balanced meta stream. BALMS for LVIS is all in this module.

The head has C logits (no background column; column j is class j + 1). With f_j the image
frequency of class j (image_count / #training images), the Balanced Softmax sigmoid form shifts
the logits of **foreground** proposals only,

    z_j <- z_j + log(f_j / (1 - f_j)),

then takes binary cross-entropy against the one-hot label (all zeros for background), summed over
classes and divided by the number of proposals R. Test time uses the plain sigmoid(z).
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ...engine import distributed as dist_utils
from ...engine.meta import meta_gradient_over_ranks, sgd_lookahead_of
from ..lvis import collate_detection
from .base import DetectionClassification, _need, register_head


def image_frequency_log_odds(image_counts: Sequence[float] | Tensor, num_images: int) -> Tensor:
    """log(f / (1 - f)), f = image_count / num_images, shape (C,), float64.

    A class seen in no training image would get -inf (NaN in the loss): rejected. A class in every
    image (f = 1, +inf) is clamped to f = 1 - 1/(2 num_images)."""
    counts = torch.as_tensor(image_counts, dtype=torch.float64).flatten()
    if num_images is None or num_images < 1:
        raise ValueError(f"num_images must be a positive number of training images, got {num_images}")
    if counts.numel() == 0 or not torch.isfinite(counts).all():
        raise ValueError("image_counts must be a non-empty 1-D sequence of finite counts")
    if (counts <= 0).any():
        zero = torch.nonzero(counts <= 0).flatten().tolist()
        raise ValueError(f"classes {[z + 1 for z in zero[:10]]} (labels) appear in no training image, so "
                         "log f = -inf: take image_counts from the training split, or drop those classes")
    if (counts > num_images).any():
        raise ValueError(f"an image_count ({counts.max():.0f}) exceeds num_images ({num_images})")
    f = (counts / num_images).clamp(max=1.0 - 0.5 / num_images)
    return torch.log(f) - torch.log1p(-f)


def sigmoid_class_loss(logits: Tensor, labels: Tensor, log_odds: Tensor | None = None,
                       class_weights: Tensor | None = None) -> Tensor:
    """Sum over proposals and classes of BCE, divided by the number of proposals R.

    logits (R, C); labels (R,) in 0..C (0 = background); log_odds (C,) added to the logits of
    foreground proposals (Balanced Softmax); class_weights (C,) positive: a foreground proposal of
    class c has its loss multiplied by w_c, normalised so that these weights average 1 over the
    batch's foreground proposals (the Meta Reweighter)."""
    num_rois, num_classes = logits.shape
    target = F.one_hot(labels, num_classes + 1)[:, 1:].to(logits.dtype)  # background row: all zeros
    fg = labels > 0
    if log_odds is not None:
        logits = logits + fg.unsqueeze(1).to(logits.dtype) * log_odds.to(logits.dtype)
    per_roi = F.binary_cross_entropy_with_logits(logits, target, reduction="none").sum(1)  # (R,)
    if class_weights is not None:
        w = class_weights.to(logits.dtype)[(labels - 1).clamp_min(0)] * fg  # (R,), 0 on background
        w = w / w.sum().clamp_min(torch.finfo(w.dtype).tiny) * fg.sum()  # mean 1 over foreground
        per_roi = torch.where(fg, per_roi * w, per_roi)
    return per_roi.sum() / max(num_rois, 1)


class SigmoidCrossEntropy(DetectionClassification):
    """Plain per-class sigmoid head (the LVIS stage-1 baseline of the BALMS code)."""

    def __init__(self, num_classes: int, *, prior_prob: float = 0.001) -> None:
        super().__init__(num_classes)
        if not 0 < prior_prob < 1:
            raise ValueError(f"prior_prob must be in (0, 1), got {prior_prob}")
        self.prior_prob = float(prior_prob)

    @property
    def num_logits(self) -> int:
        return self.num_classes

    def log_odds(self) -> Tensor | None:
        return None

    def loss(self, logits: Tensor, labels: Tensor, class_weights: Tensor | None = None) -> Tensor:
        self.check(logits, labels)
        return sigmoid_class_loss(logits, labels, self.log_odds(), class_weights)

    def scores(self, logits: Tensor) -> Tensor:
        # Column 0 is a dummy background score (0): post-processing ignores it.
        return torch.cat([logits.new_zeros(logits.shape[0], 1), torch.sigmoid(logits)], dim=1)

    def init_class_logits(self, layer: nn.Linear) -> None:
        # Start every class at probability prior_prob so the C sigmoid terms of a RoI do not swamp
        # the loss in the first iterations (focal-loss initialisation, as in the BALMS LVIS code).
        nn.init.normal_(layer.weight, std=0.01)
        nn.init.constant_(layer.bias, -math.log((1 - self.prior_prob) / self.prior_prob))


class SigmoidBalancedSoftmax(SigmoidCrossEntropy):
    """Balanced Softmax, sigmoid form, for detection (BALMS on LVIS).

    Args:
        image_counts: (C,) number of training images containing class c (label c <-> entry c - 1).
        num_images: number of training images.
        prior_prob: initial probability of every class (bias init of the class-logit layer).
    """

    def __init__(self, image_counts: Sequence[float] | Tensor, *, num_images: int, prior_prob: float = 0.001) -> None:
        log_odds = image_frequency_log_odds(image_counts, num_images)
        super().__init__(int(log_odds.numel()), prior_prob=prior_prob)
        self.register_buffer("frequency_log_odds", log_odds, persistent=False)

    def log_odds(self) -> Tensor:
        return self.frequency_log_odds


class MetaReweighter(nn.Module):
    """One learnable weight per class, ``sigmoid(w_c)``, initialised at 0.5 (w = 0).

    ``forward()`` returns the (C,) weights to pass as ``class_weights`` to the sigmoid heads' loss,
    which normalises them to mean 1 over the batch's foreground proposals. Trained by
    :func:`meta_reweight_step` (Adam, lr 0.01 in the BALMS LVIS code)
    on a class-balanced meta batch; never by the detector's optimiser."""

    def __init__(self, num_classes: int) -> None:
        super().__init__()
        self.logits = nn.Parameter(torch.zeros(int(num_classes)))

    def forward(self) -> Tensor:
        return torch.sigmoid(self.logits)

    def extra_repr(self) -> str:
        return f"num_classes={self.logits.numel()}"


@register_head("sigmoid")
def _sigmoid(num_classes: int, instance_counts=None, image_counts=None, num_images=None, *,
             prior_prob: float = 0.001) -> DetectionClassification:
    return SigmoidCrossEntropy(num_classes, prior_prob=prior_prob)


def _sigmoid_balanced(num_classes: int, instance_counts=None, image_counts: Sequence[float] | None = None,
                      num_images: int | None = None, *, prior_prob: float = 0.001) -> DetectionClassification:
    counts = _need(image_counts, "image_counts", "balanced_softmax", num_classes)
    if num_images is None:
        raise ValueError("the balanced_softmax head needs num_images (training images) for f_j = image_count / #images")
    return SigmoidBalancedSoftmax(counts, num_images=num_images, prior_prob=prior_prob)


# BALMS on LVIS = this head + the Meta Reweighter in decoupled stage 2 (below).
register_head("balanced_softmax")(_sigmoid_balanced)
register_head("balms")(_sigmoid_balanced)


def meta_reweight_step(layer: nn.Linear, head, feats: Tensor, labels: Tensor, meta_feats: Tensor, meta_labels: Tensor,
                       reweighter: MetaReweighter, meta_optimizer: torch.optim.Optimizer,
                       optimizer: torch.optim.Optimizer) -> float:
    """One bilevel update of the Meta Reweighter (BALMS Sec. 3.2, LVIS variant).

    (1) a differentiable SGD look-ahead of the class-logit layer on the training RoIs with the
    reweighted head loss; (2) plain sigmoid BCE of the stepped layer on the class-balanced meta
    RoIs, backpropagated to the reweighter; (3) a step of ``meta_optimizer`` (Adam, lr 0.01 in the
    official code). The layer itself is not changed. Returns the meta loss (averaged over ranks).

    Under DDP the meta-gradient is exactly that of the objective DDP trains (the mean of the ranks'
    losses, each normalised over its own RoIs): the look-ahead uses the layer gradient averaged over
    ranks (as the real update does), the meta loss is the mean over ranks, and the per-rank
    contributions to the reweighter's gradient are summed, so every rank takes the same Adam step."""
    params = [layer.weight, layer.bias]
    inner = head.loss(F.linear(feats, *params), labels, class_weights=reweighter())
    grads = torch.autograd.grad(inner, params, create_graph=True)
    grads = [dist_utils.rank_mean_local_graph(g) for g in grads]  # the real update uses the rank mean
    stepped = sgd_lookahead_of(optimizer, params, grads)  # the real optimiser's next step, differentiable
    meta_loss = sigmoid_class_loss(F.linear(meta_feats, *stepped), meta_labels)
    weights = list(reweighter.parameters())
    meta_grads, meta_loss = meta_gradient_over_ranks(meta_loss, stepped, weights)
    for w, g in zip(weights, meta_grads):
        w.grad = g
    meta_optimizer.step()
    return float(meta_loss)


def class_balanced_image_weights(image_labels: Sequence[Sequence[int]], num_classes: int) -> Tensor:
    """Per-image sampling weight of the BALMS meta loader: r(I) = max over classes c in I of 1 / f(c),
    f(c) = fraction of training images containing c (images without boxes get the smallest weight)."""
    image_counts = torch.zeros(num_classes + 1, dtype=torch.float64)
    for labels in image_labels:
        for c in set(int(x) for x in labels):
            image_counts[c] += 1
    inv_freq = len(image_labels) / image_counts.clamp_min(1)
    weights = torch.tensor([max((float(inv_freq[int(c)]) for c in labels), default=0.0) for labels in image_labels])
    return torch.where(weights > 0, weights, weights[weights > 0].min() if (weights > 0).any() else 1.0)


class MetaStream:
    """Endless class-balanced batches for the Meta Reweighter: images drawn with replacement with weight
    r(I) = max_{c in I} 1 / f(c) (BALMS's meta loader) from a seeded generator (one seed per rank, so
    ranks draw different meta batches). Its ``generator`` state goes into the checkpoint."""

    def __init__(self, train_set, batch_size: int, *, seed: int) -> None:
        self.train_set, self.batch_size = train_set, batch_size
        self.weights = class_balanced_image_weights(train_set.image_labels, train_set.num_classes)
        self.generator = torch.Generator().manual_seed(seed)

    def __iter__(self) -> "MetaStream":
        return self

    def __next__(self):
        picks = torch.multinomial(self.weights, self.batch_size, replacement=True, generator=self.generator)
        return collate_detection([self.train_set[int(i)] for i in picks])
