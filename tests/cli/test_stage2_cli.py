"""Decoupled stage 2 through the CLI on synthetic_lt: the backbone (and its BatchNorm statistics) stays
frozen, cached features reach the same result as recomputing them (a cached BALMS epoch runs no
backbone at all), a BALMS run interrupted and resumed
ends with the same sampler parameters and metrics, and bad stage-2 configs are clear errors."""

import json

import pytest
import torch

from helpers.runs import load_weights, read_metrics, tiny_args, without_timing
from longtail.cli.main import main
from longtail.engine import trainer
from longtail.workflows import train


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    out = tmp_path_factory.mktemp("stage1")
    assert main(["train", *tiny_args(out, "ce"), "--quiet"]) == 0
    return out / "ce"


def stage2(tmp_path, stage1, name, *extra):
    return tiny_args(tmp_path, name, f"init_from={stage1}", "loss=balanced_softmax", *extra)


def split(weights, prefix):
    return {k: v for k, v in weights.items() if k.startswith(prefix)}


def test_stage2_freezes_the_backbone_and_cached_features_match_recomputing(tmp_path, stage1, capsys):
    assert main(["train", *stage2(tmp_path, stage1, "recompute"), "--quiet"]) == 0
    assert main(["train", *stage2(tmp_path, stage1, "cached", "cache_features=true")]) == 0
    # the cache's backbone passes (minutes on a CPU) are announced before they start, not passed in silence
    assert "caching frozen-backbone features of 84 training images x 2 augmented view(s)" in \
        " ".join(capsys.readouterr().out.split())
    before = load_weights(stage1 / "best.pt")
    for name in ("recompute", "cached"):
        after = load_weights(tmp_path / name / "checkpoint.pt")
        for k, v in split(before, "backbone.").items():  # weights and BatchNorm running statistics
            assert torch.equal(v, after[k]), f"{name}: {k} changed in stage 2"
        assert not torch.equal(before["head.weight"], after["head.weight"])
    a, b = read_metrics(tmp_path / "recompute"), read_metrics(tmp_path / "cached")
    assert a["stage2"]["features"] == "recomputed" and b["stage2"]["features"].startswith("cached, 2 view(s)")
    # synthetic_lt has no augmentation, so the cached features are the recomputed ones (up to float order)
    wa, wb = load_weights(tmp_path / "recompute" / "checkpoint.pt"), load_weights(tmp_path / "cached" / "checkpoint.pt")
    assert torch.allclose(wa["head.weight"], wb["head.weight"], atol=1e-4)
    assert a["test"]["per_class"] == b["test"]["per_class"]


@pytest.mark.parametrize("meta_set", ["val", "train"])
def test_cached_balms_epochs_run_no_backbone_and_one_thread(tmp_path, stage1, monkeypatch, meta_set):
    """On cached features the Meta Sampler's batch and the meta batch both come from caches computed
    before training: during the epochs only the head runs, with one intra-op thread."""
    seen = {"in_epoch": False, "backbone_calls_in_epochs": 0, "threads": set(), "epochs": 0}
    real_prepare, real_epoch = train.prepare_stage2, trainer.train_one_epoch

    def prepare(model, *a, **kw):
        def count(*_):
            seen["backbone_calls_in_epochs"] += seen["in_epoch"]
        model.backbone.register_forward_hook(count)
        return real_prepare(model, *a, **kw)

    def epoch(*a, **kw):
        seen["in_epoch"], seen["epochs"] = True, seen["epochs"] + 1
        seen["threads"].add(torch.get_num_threads())
        try:
            return real_epoch(*a, **kw)
        finally:
            seen["in_epoch"] = False

    monkeypatch.setattr(train, "prepare_stage2", prepare)
    monkeypatch.setattr(trainer, "train_one_epoch", epoch)
    threads = torch.get_num_threads()
    args = ["sampler=meta", f"meta_set={meta_set}", "cache_features=true", "batch_size=8"]
    assert main(["train", *stage2(tmp_path, stage1, "cached_meta", *args), "--quiet"]) == 0
    assert seen["epochs"] == 2 and seen["backbone_calls_in_epochs"] == 0 and seen["threads"] == {1}
    assert torch.get_num_threads() == threads, "the thread count is restored after the epoch"


def test_freeze_bn_false_updates_only_the_batchnorm_statistics(tmp_path, stage1):
    assert main(["train", *stage2(tmp_path, stage1, "bn", "freeze_bn=false", "epochs=1"), "--quiet"]) == 0
    before, after = load_weights(stage1 / "best.pt"), load_weights(tmp_path / "bn" / "checkpoint.pt")
    stats = [k for k in split(before, "backbone.") if k.endswith(("running_mean", "running_var"))]
    assert stats and any(not torch.equal(before[k], after[k]) for k in stats), "the official behaviour"
    weights = [k for k in split(before, "backbone.") if k.endswith("weight")]
    assert all(torch.equal(before[k], after[k]) for k in weights), "the backbone's parameters stay frozen"


@pytest.mark.slow
def test_balms_run_interrupted_and_resumed_ends_with_the_same_sampler_and_metrics(tmp_path, stage1, monkeypatch):
    args = ["sampler=meta", "epochs=3", "meta_lr=0.2", "batch_size=8"]
    assert main(["train", *stage2(tmp_path, stage1, "clean", *args), "--quiet"]) == 0

    calls = {"n": 0}
    real_evaluate = trainer.evaluate

    def evaluate_then_die(*a, **kw):  # killed during epoch 2's validation: the checkpoint holds epoch 1
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_evaluate(*a, **kw)

    monkeypatch.setattr(trainer, "evaluate", evaluate_then_die)
    assert main(["train", *stage2(tmp_path, stage1, "killed", *args), "--quiet"]) == 130
    assert torch.load(tmp_path / "killed" / "checkpoint.pt", weights_only=True)["epoch"] == 1
    monkeypatch.setattr(trainer, "evaluate", real_evaluate)
    assert main(["train", *stage2(tmp_path, stage1, "killed", *args), "--quiet", "--resume"]) == 0

    clean, resumed = (torch.load(tmp_path / n / "checkpoint.pt", weights_only=True) for n in ("clean", "killed"))
    assert torch.equal(clean["stage2"]["meta_logits"]["logits"], resumed["stage2"]["meta_logits"]["logits"])
    assert json.dumps(clean["stage2"]["meta_optimizer"]["state"][0]["exp_avg"].tolist()) == \
        json.dumps(resumed["stage2"]["meta_optimizer"]["state"][0]["exp_avg"].tolist())
    assert without_timing(read_metrics(tmp_path / "clean")) == without_timing(read_metrics(tmp_path / "killed"))
    m = read_metrics(tmp_path / "clean")
    init = torch.tensor(m["sampling_probability_init"])
    assert not torch.allclose(torch.tensor(m["sampling_probability"]), init), "the sampler learned something"
    assert (tmp_path / "clean" / "sampling_probability.png").stat().st_size > 1000


@pytest.mark.parametrize("extra, message", [
    (["sampler=meta", "init_from=null"], "set init_from"),
    (["init_from=/nonexistent/run"], "does not exist: point init_from at a finished stage-1 run directory (train stage 1 first"),
    (["seed=1"], "set seed=0 so both stages see the same split"),
    (["cache_features=true", "freeze_bn=false"], "cache_features needs freeze_bn: true"),
    (["sampler=meta", "meta_set=test"], "meta_set must be 'val'"),
    (["sampler=meta", "sampler_options={init_pow: 1}"], "configured by the meta_"),
])
def test_bad_stage2_configs_are_clear_errors(tmp_path, stage1, capsys, extra, message):
    assert main(["train", *stage2(tmp_path, stage1, "bad", *extra), "--quiet"]) == 2
    assert message in " ".join(capsys.readouterr().err.split())


def test_stage2_from_a_loose_weights_file_still_checks_the_split(tmp_path, stage1, capsys):
    """best.pt carries the split settings, so a copy of it away from its run directory is checked too;
    weights that say nothing about their split are refused unless allow_split_mismatch=true."""
    import shutil

    loose = tmp_path / "elsewhere" / "stage1_weights.pt"
    loose.parent.mkdir()
    shutil.copy(stage1 / "best.pt", loose)
    assert main(["train", *tiny_args(tmp_path, "ok", f"init_from={loose}", "epochs=1"), "--quiet"]) == 0
    assert main(["train", *tiny_args(tmp_path, "leak", f"init_from={loose}", "seed=1"), "--quiet"]) == 2
    assert "set seed=0 so both stages see the same split" in " ".join(capsys.readouterr().err.split())
    bare = tmp_path / "elsewhere" / "bare.pt"
    torch.save({"model": torch.load(loose, weights_only=True)["model"]}, bare)
    assert main(["train", *tiny_args(tmp_path, "unknown", f"init_from={bare}"), "--quiet"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "does not say which data split" in err and "allow_split_mismatch=true" in err
    assert main(["train", *tiny_args(tmp_path, "vouched", f"init_from={bare}", "allow_split_mismatch=true",
                                     "epochs=1"), "--quiet"]) == 0
