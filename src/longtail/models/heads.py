"""Classifier heads for the baselines: features (B, D) -> logits (B, C).

- :class:`CosineHead`: logits are cosines in [-1, 1] (the normalised linear layer of LDAM, Cao et
  al. 2019, whose loss multiplies them by s = 30).
- :func:`tau_normalise` / :class:`TauNormHead`: w_j / ||w_j||^tau (Kang et al., "Decoupling
  Representation and Classifier for Long-Tailed Recognition", ICLR 2020, Sec. 4.2); tau = 0 keeps
  the weights, tau = 1 gives unit-norm class vectors. The bias is dropped, as in the authors' code.
- :class:`LWSHead`: learnable weight scaling, f_j (w_j . x + b_j) with the stage-1 layer frozen and
  only f (C,) trained (Kang et al. 2020, Sec. 4.2). Config: ``head: lws`` with ``init_from`` and
  ``reinit_head: false``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..registry import Registry


def tau_normalise(weight: Tensor, tau: float) -> Tensor:
    """(C, D) -> (C, D): row j divided by ||w_j||^tau. A zero row stays zero."""
    if weight.ndim != 2:
        raise ValueError(f"weight must be (num_classes, feature_dim), got shape {tuple(weight.shape)}")
    if not tau >= 0:
        raise ValueError(f"tau must be >= 0 (Kang et al. search 0..2), got {tau}")
    norms = weight.norm(dim=1, keepdim=True).clamp_min(torch.finfo(weight.dtype).tiny)
    return weight / norms.pow(tau)


HEADS: Registry[nn.Module] = Registry("head")
HEADS.register("linear")(nn.Linear)


@HEADS.register("cosine")
class CosineHead(nn.Module):
    """cos(x, w_j) for every class j: (B, D) -> (B, C), values in [-1, 1]."""

    def __init__(self, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, feature_dim))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # the LDAM code's initialisation: uniform(-1, 1), rows renormalised
        with torch.no_grad():
            self.weight.uniform_(-1, 1).renorm_(2, 0, 1e-5).mul_(1e5)

    def forward(self, x: Tensor) -> Tensor:
        return F.normalize(x, dim=1) @ F.normalize(self.weight, dim=1).t()


class TauNormHead(nn.Module):
    """A frozen copy of a trained linear layer's weight, tau-normalised: x @ tau_normalise(W, tau)^T."""

    def __init__(self, linear: nn.Linear, tau: float) -> None:
        super().__init__()
        self.register_buffer("weight", linear.weight.detach().clone())
        self.tau = float(tau)
        tau_normalise(self.weight, self.tau)  # validates tau and the shape now, not at the first forward

    def forward(self, x: Tensor) -> Tensor:
        return x @ tau_normalise(self.weight, self.tau).t()

    def extra_repr(self) -> str:
        return f"tau={self.tau}"


@HEADS.register("lws")  # stage 2 only: loads the stage-1 linear head, trains the scales
class LWSHead(nn.Linear):
    """f_j * (w_j . x + b_j): a linear layer whose weight and bias are frozen, and one learnable scale
    per class (init 1). It loads a plain ``nn.Linear`` state dict (the stage-1 head), scales then
    starting at 1, so decoupled stage 2 can keep the stage-1 head (``reinit_head: false``)."""

    def __init__(self, feature_dim: int, num_classes: int) -> None:
        super().__init__(feature_dim, num_classes)
        self.weight.requires_grad_(False)
        self.bias.requires_grad_(False)
        self.scales = nn.Parameter(torch.ones(num_classes))

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x) * self.scales

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        # a stage-1 nn.Linear has no scales: start them at 1 (identity) instead of failing
        if prefix + "weight" in state_dict and prefix + "scales" not in state_dict:
            state_dict[prefix + "scales"] = torch.ones_like(self.scales)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "LWSHead":
        head = cls(linear.in_features, linear.out_features).to(linear.weight.device)
        head.load_state_dict(linear.state_dict())
        return head




def create_head(name: str, feature_dim: int, num_classes: int) -> nn.Module:
    """A freshly initialised head by name ('linear', 'cosine' or 'lws')."""
    return HEADS.create(name, feature_dim, num_classes)
