"""Losses by name, for the CLI: each loss class registers itself with ``@register_loss(name)`` where it
is defined. Library users construct the classes directly."""

from __future__ import annotations

from typing import Any, Sequence

from torch import nn

from ..registry import Registry

LOSSES: Registry[nn.Module] = Registry("loss")
register_loss = LOSSES.register


def create_loss(name: str, class_counts: Sequence[float], **kwargs: Any) -> nn.Module:
    """``create_loss('balanced_softmax', counts)``; ``kwargs`` go to the loss class."""
    return LOSSES.create(name, class_counts, **kwargs)
