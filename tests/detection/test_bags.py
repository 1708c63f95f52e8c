import math

import pytest
import torch

from longtail.detection import BalancedGroupSoftmax, create_head
from longtail.detection.heads.bags import bags_group_of, sample_group_rois


def _instance_counts(version: str) -> list[int]:
    from longtail.detection.lvis import load_lvis_category_stats  # the statistics shipped in the package

    return list(load_lvis_category_stats(version).instance_counts)


@pytest.mark.parametrize("version, sizes, num_logits", [("v0.5", [294, 453, 302, 181], 1236),
                                                        ("v1", [200, 412, 334, 257], 1209)])
def test_lvis_group_sizes_and_logits(version, sizes, num_logits):
    head = BalancedGroupSoftmax(_instance_counts(version))
    assert head.group_sizes == sizes
    assert head.num_logits == num_logits == head.num_classes + 1 + 5


def test_bins_are_half_open():
    groups = bags_group_of([0, 1, 9, 10, 99, 100, 999, 1000, 5000], (10, 100, 1000))
    assert groups.tolist() == [1, 1, 1, 2, 2, 3, 3, 4, 4]


def _head():
    counts = [3, 50, 5, 400, 2000, 20, 1, 150, 9, 1500]  # groups 1,2,1,3,4,2,1,3,1,4
    return BalancedGroupSoftmax(counts, others_ratio=2.0)


def _naive_loss(logits, labels, head, mask):
    """Per-RoI, per-group loop in float64 from the definition (BAGS Eq. 3)."""
    groups = head.group_of_class.tolist()
    members = {g: [c + 1 for c in range(head.num_classes) if groups[c] == g] for g in range(1, 5)}
    total = 0.0
    for g in range(5):
        start, end = head.bounds[g]
        terms = []
        for r in range(logits.shape[0]):
            if not mask[r, g]:
                continue
            lab = int(labels[r])
            if g == 0:
                t = 0 if lab == 0 else 1
            else:
                t = members[g].index(lab) + 1 if lab in members[g] else 0
            z = logits[r, start:end]
            terms.append(torch.logsumexp(z, 0) - z[t])
        if terms:
            total = total + torch.stack(terms).sum() / len(terms)
    return total


def test_loss_value_and_gradient_match_naive_reference():
    head = _head()
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 11, (40,), generator=g)
    labels[:15] = 0
    logits = torch.randn(40, head.num_logits, dtype=torch.float64, generator=g, requires_grad=True)
    ours = head.loss(logits, labels, generator=torch.Generator().manual_seed(7))
    mask = sample_group_rois(head.targets(labels), head.others_ratio, torch.Generator().manual_seed(7))
    ref = _naive_loss(logits, labels, head, mask)
    (g_ours,) = torch.autograd.grad(ours, logits)
    (g_ref,) = torch.autograd.grad(ref, logits)
    assert torch.allclose(ours, ref, atol=1e-12)
    assert torch.allclose(g_ours, g_ref, atol=1e-12)


def test_others_sampling_keeps_positives_and_beta_times_as_many_others():
    head = _head()
    labels = torch.tensor([0] * 30 + [1, 3, 7, 9] + [2, 6] + [4])  # group 1: 4 pos, group 2: 2, group 3: 1, group 4: 0
    targets = head.targets(labels)
    for seed in range(5):
        mask = sample_group_rois(targets, 2.0, torch.Generator().manual_seed(seed))
        assert mask[:, 0].all()
        for g, num_pos in zip(range(1, 5), [4, 2, 1, 0]):
            pos = targets[:, g] > 0
            assert int(pos.sum()) == num_pos
            assert mask[pos, g].all()
            assert int((mask[:, g] & ~pos).sum()) == min(int(num_pos * 2.0), labels.numel() - num_pos)
        assert not mask[:, 4].any()  # no positive: the group contributes nothing


def test_others_are_drawn_uniformly():
    labels = torch.tensor([1] + [0] * 9)
    targets = torch.stack([(labels > 0).long(), labels], dim=1)
    hits = torch.zeros(10)
    for seed in range(2000):
        hits += sample_group_rois(targets, 2.0, torch.Generator().manual_seed(seed))[:, 1].float()
    assert hits[0] == 2000
    assert torch.allclose(hits[1:] / 2000, torch.full((9,), 2 / 9), atol=0.04)


def test_scores_match_naive_reference():
    head = _head()
    logits = torch.randn(6, head.num_logits, dtype=torch.float64)
    scores = head.scores(logits)
    groups = head.group_of_class.tolist()
    for r in range(6):
        p0 = torch.softmax(logits[r, 0:2], 0)
        assert math.isclose(scores[r, 0], p0[0], abs_tol=1e-12)
        for c in range(1, head.num_classes + 1):
            g = groups[c - 1]
            start, end = head.bounds[g]
            members = [k + 1 for k in range(head.num_classes) if groups[k] == g]
            expected = p0[1] * torch.softmax(logits[r, start:end], 0)[members.index(c) + 1]
            assert math.isclose(scores[r, c], expected, abs_tol=1e-12)


def test_bad_inputs_give_clear_errors():
    with pytest.raises(ValueError, match="no class"):
        BalancedGroupSoftmax([1, 2, 3, 50])  # nothing in [100, 1000) and [1000, inf)
    with pytest.raises(ValueError, match="strictly increasing"):
        BalancedGroupSoftmax([1, 2], bin_edges=(10, 5))
    head = _head()
    with pytest.raises(ValueError, match="num_logits"):
        head.loss(torch.zeros(3, 11), torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="instance_counts"):
        create_head("bags", 10)
