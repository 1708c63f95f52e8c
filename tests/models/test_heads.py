"""Heads of the baselines: cosine (LDAM), tau-normalisation and LWS (Kang et al. 2020)."""

import pytest
import torch
from torch import nn

from longtail.models import LWSHead, TauNormHead, create_head, tau_normalise


def test_tau_normalise_against_a_row_loop():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(5, 7, generator=g, dtype=torch.float64) * torch.arange(1, 6, dtype=torch.float64)[:, None]
    for tau in (0.0, 0.5, 1.0, 2.0):
        expected = torch.stack([w[j] / torch.linalg.vector_norm(w[j]) ** tau for j in range(5)])
        torch.testing.assert_close(tau_normalise(w, tau), expected, rtol=1e-14, atol=0)
    unit = tau_normalise(w, 1.0).norm(dim=1)
    torch.testing.assert_close(unit, torch.ones(5, dtype=torch.float64))
    with pytest.raises(ValueError, match="tau must be >= 0"):
        tau_normalise(w, -1.0)


def test_tau_norm_head_drops_bias_and_is_frozen():
    linear = nn.Linear(4, 3)
    head = TauNormHead(linear, tau=1.0)
    x = torch.randn(6, 4)
    torch.testing.assert_close(head(x), x @ tau_normalise(linear.weight.detach(), 1.0).t())
    assert not list(head.parameters())  # a buffer, nothing to train


def test_cosine_head_outputs_cosines_and_resets():
    head = create_head("cosine", 8, 3)
    x = torch.randn(5, 8)
    out = head(x)
    expected = torch.stack([torch.stack([torch.cosine_similarity(x[i], head.weight[j], dim=0) for j in range(3)])
                            for i in range(5)])
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    before = head.weight.detach().clone()
    head.reset_parameters()
    assert not torch.equal(before, head.weight)


def test_lws_loads_a_linear_head_and_trains_only_the_scales():
    linear = nn.Linear(6, 4)
    head = LWSHead(6, 4)
    head.load_state_dict(linear.state_dict())  # stage-1 head: no 'scales' key, scales start at 1
    x = torch.randn(3, 6)
    torch.testing.assert_close(head(x), linear(x))
    assert [n for n, p in head.named_parameters() if p.requires_grad] == ["scales"]
    with torch.no_grad():
        head.scales.copy_(torch.tensor([1.0, 2.0, 0.5, 3.0]))
    torch.testing.assert_close(head(x), linear(x) * torch.tensor([1.0, 2.0, 0.5, 3.0]))
    # its own state dict round-trips with the scales
    other = LWSHead(6, 4)
    other.load_state_dict(head.state_dict())
    torch.testing.assert_close(other.scales, head.scales)
    torch.testing.assert_close(LWSHead.from_linear(linear)(x), linear(x))


def test_unknown_head_is_a_clear_error():
    with pytest.raises(KeyError, match="unknown head 'cosin'. Did you mean 'cosine'"):
        create_head("cosin", 4, 2)
