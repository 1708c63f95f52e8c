"""Shared check of the loss tests: our loss and its naive float64 reference give the same gradient."""

import torch


def assert_same_gradient(ours: torch.Tensor, ref: torch.Tensor, ours_in: torch.Tensor, ref_in: torch.Tensor) -> None:
    """Backpropagate the same non-uniform upstream gradient through both losses (so 'none' reductions are
    checked per sample) and compare the gradients on the logits."""
    upstream = torch.linspace(0.5, 2.0, ours.numel(), dtype=torch.float64).reshape(ours.shape)
    (ours * upstream).sum().backward()
    (ref * upstream).sum().backward()
    torch.testing.assert_close(ours_in.grad, ref_in.grad, rtol=1e-10, atol=1e-12)
