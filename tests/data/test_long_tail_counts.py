"""Per-class counts of the literature and the seeded long-tail / balanced-val split."""

import pytest
import torch

from longtail.data import long_tailed_counts, long_tailed_split


@pytest.mark.parametrize("num_classes, n_max, imbalance, total", [
    (10, 5000, 100, 12_406), (100, 500, 100, 10_847), (10, 5000, 200, 11_203), (100, 500, 200, 9_502),
])
def test_cifar_lt_totals_match_the_literature(num_classes, n_max, imbalance, total):
    counts = long_tailed_counts(num_classes, n_max, imbalance)
    assert sum(counts) == total
    assert counts[0] == n_max and counts[-1] == int(n_max / imbalance)
    assert all(a >= b for a, b in zip(counts, counts[1:])), "head = class 0, non-increasing"


def test_exp_profile_formula_class_by_class():
    counts = long_tailed_counts(10, 1000, 100)
    assert counts == [int(1000 * 0.01 ** (i / 9)) for i in range(10)]
    assert counts == [1000, 599, 359, 215, 129, 77, 46, 27, 16, 10]  # Fashion-MNIST-LT IF 100
    assert sum(counts) == 2478


def test_step_profile():
    assert long_tailed_counts(10, 5000, 100, profile="step") == [5000] * 5 + [50] * 5
    assert long_tailed_counts(6, 300, 10, profile="step", minority_fraction=1 / 3) == [300] * 4 + [30] * 2
    assert long_tailed_counts(4, 10, 1, profile="step") == [10] * 4


@pytest.mark.parametrize("kwargs, message", [
    (dict(num_classes=1, n_max=10, imbalance_factor=10), "num_classes must be >= 2"),
    (dict(num_classes=5, n_max=0, imbalance_factor=10), "n_max must be >= 1"),
    (dict(num_classes=5, n_max=10, imbalance_factor=0.5), "imbalance_factor .* must be a finite number >= 1"),
    (dict(num_classes=5, n_max=10, imbalance_factor=float("inf")), "must be a finite number >= 1, got inf"),
    (dict(num_classes=5, n_max=10, imbalance_factor=float("nan")), "must be a finite number >= 1, got nan"),
    (dict(num_classes=10, n_max=1000, imbalance_factor=2000), "imbalance_factor 2000 with n_max 1000 leaves "
     "class\\(es\\) \\[9\\] without a training image .* at most 1000 or raise n_max to at least 2000"),
    (dict(num_classes=5, n_max=10, imbalance_factor=10, profile="linear"), "profile must be 'exp' or 'step'"),
])
def test_bad_arguments_are_explained(kwargs, message):
    with pytest.raises(ValueError, match=message):
        long_tailed_counts(**kwargs)


def balanced_labels(num_classes=5, per_class=30):
    # interleaved, as a real dataset's labels are
    return torch.arange(num_classes).repeat(per_class)


def test_split_is_seeded_and_sized():
    labels = balanced_labels()
    counts = long_tailed_counts(5, 20, 10)
    a = long_tailed_split(labels, counts, val_per_class=4, seed=7)
    b = long_tailed_split(labels, counts, val_per_class=4, seed=7)
    c = long_tailed_split(labels, counts, val_per_class=4, seed=8)
    assert torch.equal(a.train, b.train) and torch.equal(a.val, b.val)
    assert not torch.equal(a.train, c.train)
    assert a.class_counts == counts
    assert torch.bincount(labels[a.train], minlength=5).tolist() == counts
    assert a.train.dtype == torch.int64 and a.val.dtype == torch.int64


def test_train_and_val_are_disjoint_and_val_is_balanced():
    labels = balanced_labels()
    split = long_tailed_split(labels, [26, 10, 5, 2, 1], val_per_class=4, seed=0)
    train, val = set(split.train.tolist()), set(split.val.tolist())
    assert not train & val
    assert len(train) == 44 and len(val) == 20  # no duplicates either
    assert torch.bincount(labels[split.val], minlength=5).tolist() == [4] * 5


def test_too_few_images_is_an_error_naming_the_class():
    labels = balanced_labels(per_class=30)
    with pytest.raises(ValueError, match="class 0 has 30 images, fewer than the 28 training \\+ 4 validation"):
        long_tailed_split(labels, [28, 10, 5, 2, 1], val_per_class=4)
    split = long_tailed_split(labels, [26, 10, 5, 2, 1], val_per_class=4)  # exactly enough is fine
    assert split.val.numel() == 20
