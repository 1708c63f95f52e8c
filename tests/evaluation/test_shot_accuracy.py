"""shot_accuracy on a small example worked out by hand."""

import math

import pytest
import torch

from longtail.evaluation import shot_accuracy, shot_groups

# many > 100: class 0; medium 20..100: classes 1, 2, 3 (boundaries 100 and 20 included); few < 20: 4, 5
TRAIN_COUNTS = [150, 100, 50, 20, 19, 5]
# per class: 0 -> 3/4 right, 1 -> 1/2, 2 -> 2/2, 3 -> no test sample, 4 -> 0/1, 5 -> 1/3
TARGETS = [0, 0, 0, 0, 1, 1, 2, 2, 4, 5, 5, 5]
PREDICTIONS = [0, 0, 0, 1, 1, 0, 2, 2, 5, 5, 4, 0]


def test_hand_computed_example():
    m = shot_accuracy(PREDICTIONS, TARGETS, TRAIN_COUNTS)
    assert m["top1"] == pytest.approx(7 / 12)
    assert m["mean_class"] == pytest.approx((3 / 4 + 1 / 2 + 1 + 0 + 1 / 3) / 5)
    assert m["many"] == pytest.approx(3 / 4)
    assert m["medium"] == pytest.approx((1 / 2 + 1) / 2)  # class 3 has no test sample: skipped
    assert m["few"] == pytest.approx((0 + 1 / 3) / 2)
    assert m["per_class"][:3] == pytest.approx([3 / 4, 1 / 2, 1.0])
    assert math.isnan(m["per_class"][3])
    assert m["per_class"][4:] == pytest.approx([0.0, 1 / 3])
    assert m["group_sizes"] == {"many": 1, "medium": 3, "few": 2}
    assert len(m["per_class"]) == len(TRAIN_COUNTS)


def test_scores_and_tensors_give_the_same_answer():
    scores = torch.nn.functional.one_hot(torch.tensor(PREDICTIONS), 6).float() * 5 + 0.1
    a = shot_accuracy(scores, torch.tensor(TARGETS), torch.tensor(TRAIN_COUNTS))
    b = shot_accuracy(PREDICTIONS, TARGETS, TRAIN_COUNTS)
    assert a["top1"] == b["top1"] and a["many"] == b["many"] and a["few"] == b["few"]


def test_empty_group_is_nan():
    m = shot_accuracy(PREDICTIONS, TARGETS, TRAIN_COUNTS, many=200, few=20)
    assert math.isnan(m["many"]) and m["group_sizes"]["many"] == 0
    assert m["medium"] == pytest.approx((3 / 4 + 1 / 2 + 1) / 3)
    m = shot_accuracy([0, 1], [0, 1], [500, 400])
    assert math.isnan(m["medium"]) and math.isnan(m["few"]) and m["many"] == 1.0


def test_shot_groups_boundaries():
    assert shot_groups(TRAIN_COUNTS) == {"many": [0], "medium": [1, 2, 3], "few": [4, 5]}
    assert shot_groups(TRAIN_COUNTS, many=50, few=6) == {"many": [0, 1], "medium": [2, 3, 4], "few": [5]}


def test_bad_input_is_explained():
    with pytest.raises(ValueError, match="must be \\(N,\\)"):
        shot_accuracy([0, 1, 2], [0, 1], TRAIN_COUNTS)
    with pytest.raises(ValueError, match="targets must lie in \\[0, 6\\)"):
        shot_accuracy([0, 1], [0, 6], TRAIN_COUNTS)
