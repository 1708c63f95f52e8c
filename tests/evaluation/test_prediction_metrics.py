"""Top-5, ECE (overall and per shot group), confusion matrix and precision / recall against naive
float64 references, and the reports a run writes."""

from __future__ import annotations

import csv
import math

import numpy as np
import pytest
import torch

from longtail.evaluation import (
    calibration_bins,
    calibration_by_group,
    confusion_matrix,
    expected_calibration_error,
    precision_recall,
    score_logits,
    topk_accuracy,
    write_prediction_reports,
)


def naive_ece(logits, targets, bins=15):
    """Guo et al. 2017, Eq. 3, sample by sample in float64."""
    probs = torch.softmax(logits.double(), dim=1).tolist()
    members = [[] for _ in range(bins)]
    for p, y in zip(probs, targets.tolist()):
        conf = max(p)
        pred = p.index(conf)
        b = min(max(math.ceil(conf * bins), 1), bins) - 1  # bin b = (b / B, (b + 1) / B]
        members[b].append((conf, pred == y))
    n = len(probs)
    return sum(len(m) / n * abs(sum(c for c, _ in m) / len(m) - sum(ok for _, ok in m) / len(m)) for m in members if m)


@pytest.fixture
def scores():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(500, 12, generator=g) * 3
    targets = torch.randint(0, 12, (500,), generator=g)
    logits[torch.arange(250), targets[:250]] += 4  # half the samples mostly right: a mix of confidences
    return logits, targets


def test_ece_against_a_naive_loop(scores):
    logits, targets = scores
    assert expected_calibration_error(logits, targets) == pytest.approx(naive_ece(logits, targets), abs=1e-12)
    assert expected_calibration_error(logits, targets, num_bins=5) == pytest.approx(naive_ece(logits, targets, 5), abs=1e-12)
    # a perfectly calibrated toy: 2 classes, confidence 0.75 and right 3 times in 4
    z = torch.log(torch.tensor([[3.0, 1.0]] * 4, dtype=torch.float64))
    assert expected_calibration_error(z, torch.tensor([0, 0, 0, 1])) == pytest.approx(0.0, abs=1e-12)
    assert expected_calibration_error(z, torch.tensor([1, 1, 1, 1])) == pytest.approx(0.75, abs=1e-12)


def test_reliability_bins_against_a_naive_loop_and_the_ece(scores):
    logits, targets = scores
    bins = calibration_bins(logits, targets)
    probs = torch.softmax(logits.double(), dim=1).tolist()
    members = [[] for _ in range(15)]
    for p, y in zip(probs, targets.tolist()):
        conf = max(p)
        members[min(max(math.ceil(conf * 15), 1), 15) - 1].append((conf, p.index(conf) == y))
    for b, m in enumerate(members):
        assert int(bins["count"][b]) == len(m)
        if m:
            assert float(bins["confidence"][b]) == pytest.approx(sum(c for c, _ in m) / len(m), abs=1e-12)
            assert float(bins["accuracy"][b]) == pytest.approx(sum(ok for _, ok in m) / len(m), abs=1e-12)
        else:
            assert math.isnan(float(bins["accuracy"][b]))
    n = targets.numel()
    from_bins = sum(int(c) / n * abs(float(a) - float(f)) for c, a, f in
                    zip(bins["count"], bins["accuracy"], bins["confidence"]) if c)
    assert from_bins == pytest.approx(expected_calibration_error(logits, targets), abs=1e-12)


def test_ece_per_group_bins_the_samples_of_the_groups_classes(scores):
    logits, targets = scores
    counts = [500, 400, 300, 150, 120, 101, 100, 50, 20, 19, 5, 1]  # many 0-5, medium 6-8, few 9-11
    out = calibration_by_group(logits, targets, counts)
    for group, classes in (("many", range(0, 6)), ("medium", range(6, 9)), ("few", range(9, 12))):
        member = torch.tensor([t in classes for t in targets.tolist()])
        assert out[f"ece_{group}"] == pytest.approx(naive_ece(logits[member], targets[member]), abs=1e-12)
    assert math.isnan(calibration_by_group(logits, targets, [500] * 12)["ece_few"])


def test_topk_against_a_naive_loop(scores):
    logits, targets = scores
    naive = np.mean([y in sorted(range(12), key=lambda c: -row[c])[:5] for row, y in zip(logits.tolist(), targets.tolist())])
    assert topk_accuracy(logits, targets, 5) == pytest.approx(naive, abs=1e-12)
    assert topk_accuracy(logits, targets, 12) == 1.0
    assert math.isnan(topk_accuracy(logits[:, :3], targets.clamp(max=2), 5))


def test_confusion_precision_recall(scores):
    logits, targets = scores
    pred = logits.argmax(1)
    conf = confusion_matrix(pred, targets, 12)
    for t, p in ((0, 0), (3, 7), (11, 2)):
        assert conf[t, p] == int(((targets == t) & (pred == p)).sum())
    precision, recall = precision_recall(conf)
    for c in range(12):
        assert recall[c] == pytest.approx(float((pred[targets == c] == c).double().mean()), abs=1e-12)
        if (pred == c).any():
            assert precision[c] == pytest.approx(float((targets[pred == c] == c).double().mean()), abs=1e-12)
    metrics = score_logits(logits, targets, [10] * 12)
    assert metrics["per_class"] == pytest.approx(recall.tolist(), abs=1e-12)


def test_reports_are_written(tmp_path, scores):
    logits, targets = scores
    names = [f"c{i}" for i in range(12)]
    paths = write_prediction_reports(tmp_path, logits, targets, names, prefix="val")
    assert {p.name for p in paths} == {"val_logits.npz", "val_confusion_matrix.csv", "val_per_class.csv",
                                       "val_confusion_matrix.png", "val_calibration.csv", "val_reliability.png"}
    assert all(p.stat().st_size > 0 for p in paths)
    calibration = list(csv.DictReader(open(tmp_path / "val_calibration.csv")))
    assert len(calibration) == 15 and sum(int(r["count"]) for r in calibration) == 500
    saved = np.load(tmp_path / "val_logits.npz")
    assert np.array_equal(saved["logits"], logits.numpy()) and np.array_equal(saved["targets"], targets.numpy())
    rows = list(csv.reader(open(tmp_path / "val_confusion_matrix.csv")))
    assert rows[0][1:] == names and sum(int(x) for r in rows[1:] for x in r[1:]) == 500
    per_class = list(csv.DictReader(open(tmp_path / "val_per_class.csv")))
    assert sum(int(r["support"]) for r in per_class) == 500
