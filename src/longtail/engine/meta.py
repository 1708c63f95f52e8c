"""The bilevel step of BALMS (Ren et al., NeurIPS 2020, Sec. 3.2, Eq. 8-10) as plain functions.

Every training step, before the real update of the classifier:

1. look ahead: one differentiable step of the real SGD optimiser (its lr, momentum buffer, weight
   decay) on the sampled batch, inner loss = mean of (Balanced Softmax per sample x straight-through
   sample weight), so the stepped classifier depends on the sampler logits w;
2. meta loss: plain cross-entropy of the stepped classifier on a class-balanced meta batch;
3. Adam step on w with d(meta loss)/dw.

The look-ahead uses ``torch.func.functional_call`` (the official code uses the ``higher`` library).
Under DDP the meta-gradient is the exact one of the global batch: the look-ahead uses the gradient
averaged over ranks (as the real update does), the meta loss is averaged over ranks, and the
per-rank contributions to dw are summed, so every rank applies the same Adam step to the same w.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call

from ..samplers.meta import MetaDraw, MetaSamplerLogits
from . import distributed as dist_utils

PerSampleLoss = Callable[[Tensor, Tensor], Tensor]


SGD_SETTINGS = ("lr", "momentum", "weight_decay", "dampening", "nesterov")


def sgd_lookahead(params: Mapping[str, Tensor], grads: Mapping[str, Tensor], *, lr: float, momentum: float = 0.0,
                  weight_decay: float = 0.0, dampening: float = 0.0, nesterov: bool = False,
                  momentum_buffers: Mapping[str, Tensor | None] | None = None,
                  groups: Mapping[str, Mapping[str, float | bool]] | None = None) -> dict[str, Tensor]:
    """The parameters after one ``torch.optim.SGD`` step, differentiable in ``grads``.

    d = g + wd p;  b = mu b_old + (1 - dampening) d  (b = d on the first step);
    d = d + mu b if nesterov else b;  p' = p - lr d.

    ``groups``: per parameter name, the settings of its parameter group (lr, momentum, weight_decay,
    dampening, nesterov), overriding the scalar arguments: an optimiser with several groups.
    """
    out = {}
    for name, p in params.items():
        h = groups[name] if groups is not None else dict(lr=lr, momentum=momentum, weight_decay=weight_decay,
                                                         dampening=dampening, nesterov=nesterov)
        d = grads[name] + h["weight_decay"] * p if h["weight_decay"] else grads[name]
        if h["momentum"]:
            old = (momentum_buffers or {}).get(name)
            buf = d if old is None else h["momentum"] * old.detach() + (1 - h["dampening"]) * d
            d = d + h["momentum"] * buf if h["nesterov"] else buf
        out[name] = p - h["lr"] * d
    return out


def sgd_hyperparameters(optimizer: torch.optim.Optimizer, params: Mapping[str, Tensor]) -> dict:
    """The settings (lr, momentum, weight decay, dampening, nesterov) and momentum buffers of the real
    optimiser, for :func:`sgd_lookahead`: scalars for one parameter group, per-parameter ``groups``
    for several. Only ``torch.optim.SGD`` can be mirrored; other optimisers are a TypeError."""
    if not isinstance(optimizer, torch.optim.SGD):
        raise TypeError("the Meta Sampler's look-ahead replicates torch.optim.SGD (any number of parameter groups); "
                        f"got {type(optimizer).__name__}, whose step it cannot mirror")
    for group in optimizer.param_groups:
        if group.get("maximize") or group.get("differentiable"):
            raise TypeError("the look-ahead mirrors plain SGD minimisation; maximize / differentiable are not supported")
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    missing = [name for name, p in params.items() if id(p) not in group_of]
    if missing:
        raise ValueError(f"parameters {missing[:5]} are not in the optimiser: the look-ahead would not match its step")
    buffers = {name: optimizer.state.get(p, {}).get("momentum_buffer") for name, p in params.items()}
    settings = {name: {k: (float(group_of[id(p)][k]) if k == "lr" else group_of[id(p)][k]) for k in SGD_SETTINGS}
                for name, p in params.items()}
    first = next(iter(settings.values()), {k: 0.0 for k in SGD_SETTINGS})
    out = dict(first, momentum_buffers=buffers)
    if len(optimizer.param_groups) > 1:
        out["groups"] = settings
    return out


def sgd_lookahead_of(optimizer: torch.optim.Optimizer, params: Sequence[Tensor], grads: Sequence[Tensor]) -> list[Tensor]:
    """``params`` after the next step of the real ``optimizer`` (torch.optim.SGD, any parameter groups)
    with gradients ``grads``, differentiable in ``grads`` only (the parameters enter as constants)."""
    named = {str(k): p for k, p in enumerate(params)}
    ahead = sgd_lookahead({k: p.detach() for k, p in named.items()}, dict(zip(named, grads)),
                          **sgd_hyperparameters(optimizer, named))
    return list(ahead.values())


def meta_gradient(head: nn.Module, features: Tensor, targets: Tensor, sample_weights: Tensor, meta_features: Tensor,
                  meta_targets: Tensor, *, inner_loss: PerSampleLoss, wrt: Sequence[Tensor], lr: float,
                  momentum: float = 0.0, weight_decay: float = 0.0, dampening: float = 0.0, nesterov: bool = False,
                  momentum_buffers: Mapping[str, Tensor | None] | None = None,
                  groups: Mapping[str, Mapping[str, float | bool]] | None = None) -> tuple[list[Tensor], Tensor]:
    """d(meta loss)/d(wrt) through a one-step look-ahead of ``head`` (Eq. 9-10 of the paper).

    Args:
        head: the classifier being trained, (B, D) features -> (B, C) logits (not DDP-wrapped).
        features, targets: the sampled batch, (B, D) detached backbone features and (B,) labels.
        sample_weights: (B,) straight-through weights, value 1, differentiable in ``wrt``.
        meta_features, meta_targets: (M, D), (M,) class-balanced meta batch.
        inner_loss: per-sample training loss, (B, C), (B,) -> (B,) (Balanced Softmax in BALMS).
        wrt: the tensors to differentiate (the sampler logits).
        lr ... momentum_buffers, groups: those of the real SGD step (see :func:`sgd_hyperparameters`).

    Returns the gradients (one per ``wrt``) and the meta loss (averaged over ranks).
    """
    params = {n: p for n, p in head.named_parameters() if p.requires_grad}
    logits = functional_call(head, params, (features,))
    inner = (inner_loss(logits, targets) * sample_weights).mean()
    grads = torch.autograd.grad(inner, list(params.values()), create_graph=True)
    grads = [dist_utils.rank_mean_local_graph(g) for g in grads]  # the real update uses the rank mean
    stepped = sgd_lookahead(params, dict(zip(params, grads)), lr=lr, momentum=momentum, weight_decay=weight_decay,
                            dampening=dampening, nesterov=nesterov, momentum_buffers=momentum_buffers, groups=groups)
    meta_loss = F.cross_entropy(functional_call(head, stepped, (meta_features,)), meta_targets)
    return meta_gradient_over_ranks(meta_loss, list(stepped.values()), wrt)


def meta_gradient_over_ranks(meta_loss: Tensor, stepped: Sequence[Tensor], wrt: Sequence[Tensor]
                             ) -> tuple[list[Tensor], Tensor]:
    """d(mean over ranks of ``meta_loss``)/d(``wrt``) and that mean (detached), identical on every rank.

    ``stepped`` are the look-ahead parameters the meta loss was computed from, built on
    :func:`~longtail.engine.distributed.rank_mean_local_graph` gradients: the upstream gradient of the
    mean meta loss is reduced over ranks, each rank pulls it back through its own samples, and the
    pulled-back gradients are summed. One process: plain autograd."""
    world = dist_utils.world_size()
    if world == 1:
        return list(torch.autograd.grad(meta_loss, list(wrt))), meta_loss.detach()
    upstream = torch.autograd.grad(meta_loss, list(stepped), retain_graph=True)
    upstream = [dist_utils.all_reduce_sum(u) / world for u in upstream]
    out = torch.autograd.grad(list(stepped), list(wrt), grad_outputs=upstream)
    return [dist_utils.all_reduce_sum(g) for g in out], dist_utils.all_reduce_sum(meta_loss) / world


@dataclass
class MetaStepHook:
    """The bilevel step as a ``train_one_epoch`` step hook, run before every real update.

    Args:
        head: the classifier trained in stage 2 (unwrapped, features -> logits).
        sampler_logits: the :class:`MetaSamplerLogits` the batches were drawn from.
        meta_optimizer: Adam over ``sampler_logits.parameters()``.
        optimizer: the real SGD optimiser of ``head`` (its lr and momentum buffers are read each step).
        inner_loss: per-sample training loss (Balanced Softmax's ``per_sample``).
        current_draw: returns the :class:`MetaDraw` of the batch being trained on.
        meta_batches: iterator of (meta features (M, D), meta labels (M,)).
        temperature: Gumbel-softmax temperature of the straight-through weights (paper: 1).
    """

    head: nn.Module
    sampler_logits: MetaSamplerLogits
    meta_optimizer: torch.optim.Optimizer
    optimizer: torch.optim.Optimizer
    inner_loss: PerSampleLoss
    current_draw: Callable[[], MetaDraw]
    meta_batches: Callable[[], Iterator[tuple[Tensor, Tensor]]]
    temperature: float = 1.0
    last_meta_loss: float = float("nan")

    def __post_init__(self) -> None:
        self._meta_iter: Iterator[tuple[Tensor, Tensor]] | None = None

    def reset(self) -> None:
        """Start a new epoch's meta stream (call after the meta sampler's ``set_epoch``)."""
        self._meta_iter = self.meta_batches()

    def _next_meta_batch(self) -> tuple[Tensor, Tensor]:
        if self._meta_iter is None:
            self.reset()
        try:
            return next(self._meta_iter)
        except StopIteration:  # the stream is sized to the epoch; wrap around if a caller runs longer
            self.reset()
            return next(self._meta_iter)

    def __call__(self, features: Tensor, targets: Tensor, global_step: int) -> None:
        draw = self.current_draw()
        if not torch.equal(draw.classes.to(targets.device), targets):
            raise RuntimeError("the batch does not match the Meta Sampler's last draw: iterate the MetaSampler "
                               "in the training loop (no prefetching loader in between)")
        meta_x, meta_y = (t.to(features.device, non_blocking=True) for t in self._next_meta_batch())
        weights = self.sampler_logits.straight_through(draw.classes, draw.gumbel, self.temperature)
        params = {n: p for n, p in self.head.named_parameters() if p.requires_grad}
        grads, meta_loss = meta_gradient(self.head, features.detach(), targets, weights, meta_x, meta_y,
                                         inner_loss=self.inner_loss, wrt=list(self.sampler_logits.parameters()),
                                         **sgd_hyperparameters(self.optimizer, params))
        self.meta_optimizer.zero_grad(set_to_none=True)
        for p, g in zip(self.sampler_logits.parameters(), grads):
            p.grad = g
        self.meta_optimizer.step()
        self.last_meta_loss = float(meta_loss)
