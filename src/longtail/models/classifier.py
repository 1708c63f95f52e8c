"""A classifier is a backbone (image -> feature vector) and a linear head, kept as separate modules
so decoupled training can freeze one and re-initialise the other."""

from __future__ import annotations

from torch import Tensor, nn


class Classifier(nn.Module):
    """``forward(x) = head(backbone(x))``. backbone: (B, C, H, W) -> (B, D); head: (B, D) -> (B, K)."""

    def __init__(self, backbone: nn.Module, feature_dim: int, num_classes: int, head: nn.Module | None = None) -> None:
        super().__init__()
        self.backbone = backbone
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.head = head if head is not None else nn.Linear(feature_dim, num_classes)

    def features(self, x: Tensor) -> Tensor:
        return self.backbone(x)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.backbone(x))

    def reset_head(self, head: nn.Module | None = None) -> None:
        """Replace the head by a freshly initialised one (decoupled stage 2, cRT)."""
        device = next(self.backbone.parameters()).device
        self.head = (head if head is not None else nn.Linear(self.feature_dim, self.num_classes)).to(device)
