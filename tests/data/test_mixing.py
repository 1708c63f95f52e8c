"""Batch mixing (mixup, CutMix, ReMix): soft targets that are distributions, ReMix's label rule (Chou et al.
2020) on hand-picked pairs, and `longtail train mix=...` end to end (deterministic, refused in stage 2)."""

import pytest
import torch

from helpers.runs import read_metrics, tiny_args
from longtail.cli.main import main
from longtail.data.mixing import ReMix, batch_mixer


def test_torchvision_mixes_give_distributions():
    torch.manual_seed(0)
    images, labels = torch.rand(8, 3, 8, 8), torch.randint(0, 5, (8,))
    for kind in ("mixup", "cutmix", "mixup_cutmix"):
        mixed, soft = batch_mixer(kind, [50, 20, 9, 4, 2], alpha=1.0)(images, labels)
        assert mixed.shape == images.shape and soft.shape == (8, 5)
        torch.testing.assert_close(soft.sum(1), torch.ones(8))
        assert (soft >= 0).all() and (soft[torch.arange(8), labels] > 0).all()


class FixedLambda(ReMix):
    def __init__(self, counts, lam, **kw):
        super().__init__(counts, **kw)
        self.beta = type("Fixed", (), {"sample": staticmethod(lambda: torch.tensor([lam]))})()


@pytest.mark.parametrize("lam", [0.3, 0.7])
def test_remix_gives_the_label_to_the_minority(lam):
    counts = [300, 100, 10]  # ratios: 0 vs 2 = 30 >= kappa, 0 vs 1 = 3 >= kappa, 1 vs 2 = 10 >= kappa
    labels = torch.tensor([0, 2, 1, 1])  # partners (roll by 1): 1, 0, 2, 1
    images = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 2, 2).contiguous()
    mixed, soft = FixedLambda(counts, lam, kappa=3.0, tau=0.5)(images, labels)
    torch.testing.assert_close(mixed, lam * images + (1 - lam) * images.roll(1, 0))  # images mix as mixup
    expected = torch.zeros(4, 3)
    if lam < 0.5:
        expected[0, 1] = 1.0  # head 0 mixed with the rarer 1 at lambda < tau: all of the label goes to 1
        expected[1, 2], expected[1, 0] = lam, 1 - lam  # tail 2 with head 0: 1 - lambda > tau, mixup's label
        expected[2, 2] = 1.0  # 1 with the rarer 2 at lambda < tau: label 2
        expected[3, 1] = 1.0  # same class: either way label 1
    else:
        expected[0, 0], expected[0, 1] = lam, 1 - lam  # lambda >= tau: mixup's label
        expected[1, 2] = 1.0  # tail 2 with head 0 and 1 - lambda < tau: the label stays the tail's
        expected[2, 1], expected[2, 2] = lam, 1 - lam
        expected[3, 1] = 1.0
    torch.testing.assert_close(soft, expected)


def test_bad_mix_settings_are_errors():
    with pytest.raises(ValueError, match="mix must be one of"):
        batch_mixer("mixupp", [3, 2])
    with pytest.raises(ValueError, match="mix_alpha must be > 0"):
        batch_mixer("mixup", [3, 2], alpha=0.0)


def test_train_with_each_mix_runs_and_is_deterministic(tmp_path, capsys):
    for kind in ("mixup", "cutmix", "remix"):
        assert main(["train", *tiny_args(tmp_path, kind, f"mix={kind}", "loss=balanced_softmax"), "--quiet"]) == 0
    assert main(["train", *tiny_args(tmp_path, "cutmix_again", "mix=cutmix", "loss=balanced_softmax"), "--quiet"]) == 0
    a, b = read_metrics(tmp_path / "cutmix"), read_metrics(tmp_path / "cutmix_again")
    assert [h["train_loss"] for h in a["history"]] == [h["train_loss"] for h in b["history"]]
    plain = tmp_path / "plain"
    assert main(["train", *tiny_args(tmp_path, "plain", "loss=balanced_softmax"), "--quiet"]) == 0
    assert read_metrics(plain)["history"][0]["train_loss"] != a["history"][0]["train_loss"]
    assert main(["train", *tiny_args(tmp_path, "s2", "mix=mixup", f"init_from={plain}"), "--quiet"]) == 2
    assert "stage 2 (init_from)" in capsys.readouterr().err
