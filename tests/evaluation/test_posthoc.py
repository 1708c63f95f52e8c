"""Post-hoc logit adjustment (Menon et al. 2021, Eq. 9) and tau selection on validation."""

import math

import pytest
import torch

from longtail.evaluation import posthoc_adjusted_logits, select_tau, tau_grid, tau_norm_logits
from longtail.models import tau_normalise

COUNTS = [900, 90, 9]


def test_adjusted_logits_formula():
    logits = torch.tensor([[1.0, 0.5, 0.2], [0.0, 0.0, 0.0]], dtype=torch.float64)
    out = posthoc_adjusted_logits(logits, COUNTS, tau=1.0)
    for i in range(2):
        for j in range(3):
            assert math.isclose(float(out[i, j]), float(logits[i, j]) - math.log(COUNTS[j] / sum(COUNTS)), rel_tol=1e-12)
    torch.testing.assert_close(posthoc_adjusted_logits(logits, COUNTS, tau=0.0), logits)
    with pytest.raises(ValueError, match=r"logits must have shape \(N, 3\)"):
        posthoc_adjusted_logits(torch.zeros(2, 4), COUNTS)


def test_tau_norm_logits():
    feats, w = torch.randn(5, 4), torch.randn(3, 4)
    torch.testing.assert_close(tau_norm_logits(feats, w, 0.7), feats @ tau_normalise(w, 0.7).t())


def test_grid():
    assert tau_grid(0, 2, 0.1) == [round(0.1 * i, 10) for i in range(21)]
    assert tau_grid(0, 1, 0.5) == [0.0, 0.5, 1.0]
    with pytest.raises(ValueError):
        tau_grid(0, 1, 0)


def test_select_tau_recovers_the_prior_shift_on_validation():
    """Logits biased by +log p (a classifier that learnt the training prior): removing it is best,
    so the search over the grid should pick tau = 1."""
    g = torch.Generator().manual_seed(0)
    targets = torch.arange(3).repeat_interleave(200)  # balanced validation split
    clean = torch.randn(600, 3, generator=g) + 2.0 * torch.nn.functional.one_hot(targets, 3)
    prior = torch.log(torch.tensor(COUNTS, dtype=torch.float32) / sum(COUNTS))
    biased = clean + prior
    best, scores = select_tau(lambda t: posthoc_adjusted_logits(biased, COUNTS, t), targets, COUNTS, tau_grid(0, 2, 0.5))
    assert best == 1.0
    assert scores[1.0] > scores[0.0] and set(scores) == {0.0, 0.5, 1.0, 1.5, 2.0}


def test_select_tau_ties_go_to_the_smallest_tau():
    targets = torch.tensor([0, 1, 2])
    perfect = torch.eye(3) * 100
    best, scores = select_tau(lambda t: posthoc_adjusted_logits(perfect, COUNTS, t), targets, COUNTS, [0.0, 1.0, 2.0])
    assert best == 0.0 and all(v == 1.0 for v in scores.values())


def test_a_tau_on_the_grid_edge_is_flagged():
    """The chosen tau on the grid's upper end (or on a lower end above 0) may not be the optimum: say so."""
    from longtail.evaluation import tau_grid_edge_note

    grid = tau_grid(0, 2, 0.1)
    assert "tau_max" in tau_grid_edge_note(2.0, grid)
    assert tau_grid_edge_note(1.0, grid) is None and tau_grid_edge_note(0.0, grid) is None  # 0 = no correction
    assert "tau_min" in tau_grid_edge_note(0.5, tau_grid(0.5, 1.5, 0.5))
    assert tau_grid_edge_note(2.0, [2.0]) is None  # a fixed tau searched nothing


@pytest.mark.parametrize("scale", [1.0, 16.0])
def test_a_correction_baked_into_the_head_gives_the_corrected_logits(scale):
    """correct_linear_head (what predict / export apply for a post-hoc run) against the formulas, naive float64:
    tau-norm x . w_j / ||w_j||^tau with no bias; logit adjustment s (x . w_j + b_j) - tau log p_j."""
    from torch import nn

    from longtail.evaluation import correct_linear_head

    torch.manual_seed(0)
    feats = torch.randn(7, 4, dtype=torch.float64)
    head = nn.Linear(4, 3).double()
    w, b = head.weight.detach().clone(), head.bias.detach().clone()
    tau, total = 0.7, sum(COUNTS)

    correct_linear_head(head, "logit_adjust", tau, COUNTS, scale)
    with torch.no_grad():
        out = scale * head(feats)
    for i in range(7):
        for j in range(3):
            z = sum(float(feats[i, d]) * float(w[j, d]) for d in range(4)) + float(b[j])
            assert math.isclose(float(out[i, j]), scale * z - tau * math.log(COUNTS[j] / total), rel_tol=1e-9, abs_tol=1e-12)

    head = nn.Linear(4, 3).double()
    w = head.weight.detach().clone()
    correct_linear_head(head, "tau_norm", tau, COUNTS, scale)
    with torch.no_grad():
        out = head(feats)
    for i in range(7):
        for j in range(3):
            norm = math.sqrt(sum(float(w[j, d]) ** 2 for d in range(4)))
            expected = sum(float(feats[i, d]) * float(w[j, d]) for d in range(4)) / norm ** tau
            assert math.isclose(float(out[i, j]), expected, rel_tol=1e-9, abs_tol=1e-12)


def test_a_correction_needs_a_linear_head_with_a_bias_where_it_goes():
    from torch import nn

    from longtail.evaluation import correct_linear_head

    with pytest.raises(ValueError, match="has none"):
        correct_linear_head(nn.Linear(4, 3, bias=False), "logit_adjust", 1.0, COUNTS)
    with pytest.raises(ValueError, match="linear head"):
        correct_linear_head(nn.Identity(), "tau_norm", 1.0, COUNTS)
    with pytest.raises(ValueError, match="method must be"):
        correct_linear_head(nn.Linear(4, 3), "lws", 1.0, COUNTS)
