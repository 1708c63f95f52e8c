import json

import numpy as np
import pytest

from helpers.toy_detection import write_toy_lvis
from longtail.cli.main import main


@pytest.fixture(scope="module")
def toy_lvis(tmp_path_factory):
    return write_toy_lvis(tmp_path_factory.mktemp("toy_lvis"))


def _write_configs(tmp_path, data, arch="fasterrcnn"):
    common = (f"train_json: {data['train']}\nval_json: {data['val']}\ntest_json: {data['test']}\n"
              f"arch: {arch}\nnum_threads: 1\n"
              "detector_options: {min_size: 64, max_size: 64, box_score_thresh: 0.0001}\n"
              f"output_dir: {tmp_path / 'runs'}\nepochs: 1\nbatch_size: 2\nlr: 0.01\n")
    (tmp_path / "stage1.yaml").write_text(common + "head: softmax\nwarmup_iters: 2\n")
    for head in ("softmax", "bags", "balanced_softmax", "balms"):
        (tmp_path / f"{head}.yaml").write_text(common + f"head: {head}\n")
    (tmp_path / "suite.yaml").write_text(
        "stage1: stage1.yaml\nstage2:\n  softmax: softmax.yaml\n"
        "  bags: {config: bags.yaml, overrides: ['head_options={bin_edges: [2, 5]}']}\n"
        "  balanced_softmax: {config: balanced_softmax.yaml, sweep: {lr: [0.001, 0.05]}}\n"
        "  balms: balms.yaml\nseeds: [0]\n")


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["fasterrcnn", "maskrcnn"])
def test_suite_trains_every_head_and_prints_the_table(tmp_path, toy_lvis, arch, capsys):
    _write_configs(tmp_path, toy_lvis, arch)
    out_json = tmp_path / "table.json"
    assert main(["detect", "compare", str(tmp_path / "suite.yaml"), "--quiet", "--json-out", str(out_json)]) == 0
    table = json.loads(out_json.read_text())
    # the sweep chose its lr on val; the table is on test
    runs = tmp_path / "runs"
    chosen = table["selection"]["balanced_softmax"]
    val_ap = {lr: json.loads((runs / f"balanced_softmax_lr{lr}_s0" / "metrics.json").read_text())["val"]["bbox"]["AP"]
              for lr in (0.001, 0.05)}
    assert chosen["candidates"] == {f"lr {lr}": ap for lr, ap in val_ap.items()}
    assert chosen["chosen"] == {"lr": max(val_ap, key=val_ap.get)}
    label = f"balanced_softmax (lr {chosen['chosen']['lr']})"
    assert table["split"] == "test"
    assert set(table["rows"]) == {"softmax (stage 1, 1 ep)", "softmax", "bags", label, "balms"}
    test_ap = json.loads((runs / f"balanced_softmax_lr{chosen['chosen']['lr']}_s0" / "metrics.json").read_text())
    assert table["rows"][label]["bbox"]["AP"] == pytest.approx(test_ap["test"]["bbox"]["AP"], nan_ok=True)
    kinds = ["bbox", "segm"] if arch == "maskrcnn" else ["bbox"]
    for row in table["rows"].values():
        for kind in kinds:
            assert set(row[kind]) == {"AP", "APr", "APc", "APf"}
            assert 0 <= row[kind]["AP"] <= 1
    printed = capsys.readouterr().out
    assert "APr" in printed and "balms" in printed and "chosen on val" in printed
    balms = json.loads((runs / "balms_s0" / "metrics.json").read_text())
    assert balms["decoupled"] and len(balms["reweighter"]) == 5 and balms["reweighter"] != [0.5] * 5
    assert balms["history"][0]["meta_loss"] > 0
    # A finished suite is reused, not retrained; the table can also come from run directories.
    assert main(["detect", "compare", str(tmp_path / "suite.yaml"), "--quiet"]) == 0
    assert "reusing" in capsys.readouterr().out
    # key=value targets override every run, after the suite's own output_dir (so they move it)
    moved = tmp_path / "suite_moved.yaml"
    moved.write_text((tmp_path / "suite.yaml").read_text() + f"output_dir: {tmp_path / 'not_here'}\n")
    assert main(["detect", "compare", str(moved), "--quiet", f"output_dir={runs}"]) == 0
    assert "reusing" in capsys.readouterr().out and not (tmp_path / "not_here").exists()
    assert main(["detect", "compare", str(moved), "epochs=one"]) == 2
    assert "epochs must be int" in capsys.readouterr().err
    assert main(["detect", "compare", str(runs / "softmax_s0"), str(runs / "bags_s0")]) == 0
    assert "bags (decoupled)" in capsys.readouterr().out
    # a finished run is never reused for a config that trains differently
    assert main(["detect", "compare", str(tmp_path / "suite.yaml"), "--quiet", "--set", "weight_decay=0.01"]) == 2
    assert "finished run of another config (weight_decay: 0.0001 -> 0.01)" in capsys.readouterr().err


def test_train_eval_and_errors(tmp_path, toy_lvis, capsys):
    _write_configs(tmp_path, toy_lvis)
    stage1 = str(tmp_path / "stage1.yaml")
    assert main(["detect", "train", stage1, "--quiet"]) == 0
    run = tmp_path / "runs" / "stage1"
    saved = json.loads((run / "metrics.json").read_text())
    assert saved["val"]["num_images"] == 4 and {"AP", "APr", "APc", "APf"} <= set(saved["val"]["bbox"])
    assert main(["detect", "eval", str(run), "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert again["bbox"] == pytest.approx(saved["val"]["bbox"], nan_ok=True)  # eval reproduces training's numbers
    assert main(["detect", "eval", str(run), "--json", "--split", "test"]) == 0
    assert json.loads(capsys.readouterr().out)["bbox"] == pytest.approx(saved["test"]["bbox"], nan_ok=True)
    # a run trained without a test split can be evaluated on one later, and keep the result
    assert main(["detect", "train", stage1, "name=no_test", "test_json=null", "--quiet"]) == 0
    no_test = tmp_path / "runs" / "no_test"
    assert "test" not in json.loads((no_test / "metrics.json").read_text())
    assert main(["detect", "eval", str(no_test), "--split", "test"]) == 2
    assert "has no test_json; pass --test-json" in capsys.readouterr().err
    assert main(["detect", "eval", str(no_test), "--split", "test", "--test-json", str(toy_lvis["test"]), "--save"]) == 0
    stored = json.loads((no_test / "metrics.json").read_text())
    assert stored["test"]["bbox"] == pytest.approx(saved["test"]["bbox"], nan_ok=True)  # same seed, same model
    # an existing run is never overwritten silently
    assert main(["detect", "train", stage1, "--quiet"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert main(["detect", "train", stage1, "lerning_rate=0.1"]) == 2
    assert "unknown config key 'lerning_rate'" in capsys.readouterr().err
    assert main(["detect", "train", str(tmp_path / "balms.yaml"), "name=x"]) == 2
    assert "init_from" in capsys.readouterr().err
    assert main(["detect", "train", str(tmp_path / "bags.yaml"), "name=y", "head_options={beta: 8}"]) == 2
    assert "does not take option(s) ['beta']" in capsys.readouterr().err


def test_shipped_suites_are_valid():
    """Every configs/detection/suite_*.yaml names configs that load with its overrides and sweep values,
    and the fixed-lr suite's configs carry lrs from suite_embedded.yaml's sweep grids."""
    from pathlib import Path

    from longtail.config import DetectConfig, load_config
    from longtail.workflows.detect_suite import plan_suite

    configs = Path(__file__).resolve().parents[2] / "configs" / "detection"
    suites = sorted(configs.glob("suite_*.yaml"))
    assert {p.name for p in suites} >= {"suite_ci.yaml", "suite_embedded.yaml", "suite_embedded_chosen_lr.yaml"}
    plans = {p.name: plan_suite(p) for p in suites}
    swept, fixed = plans["suite_embedded.yaml"], plans["suite_embedded_chosen_lr.yaml"]
    assert set(swept.entries) == set(fixed.entries) and swept.suite.seeds == fixed.suite.seeds
    for method, (cfg_path, _, sweep) in swept.entries.items():
        lr = load_config(DetectConfig, configs / fixed.entries[method][0]).lr
        assert lr in sweep["lr"], f"{method}: lr {lr} is not in the sweep grid {sweep['lr']}"


def test_bf16_training_end_to_end_and_decoupled(tmp_path, capsys):
    """amp: bf16 trains a detector end to end and a BALMS stage 2 from it (features under autocast, the
    class-logit layer and the meta step in float32); evaluation stays float32; a bad amp value is refused."""
    from helpers.runs import toy_detection_config

    config = toy_detection_config(tmp_path, "amp: bf16")
    assert main(["detect", "train", str(config), "name=s1", "--quiet"]) == 0
    stage1 = json.loads((tmp_path / "runs" / "s1" / "metrics.json").read_text())
    assert all(np.isfinite(v) for h in stage1["history"] for k, v in h.items() if k.startswith("loss"))
    assert main(["detect", "train", str(config), "name=s2", "head=balms", f"init_from={tmp_path / 'runs' / 's1'}",
                 "--quiet"]) == 0
    stage2 = json.loads((tmp_path / "runs" / "s2" / "metrics.json").read_text())
    assert np.isfinite(stage2["history"][0]["loss"]) and stage2["history"][0]["meta_loss"] > 0
    assert {"AP", "APr"} <= set(stage2["val"]["bbox"])
    assert main(["detect", "train", str(config), "name=s3", "amp=fp8"]) == 2
    assert "amp must be bf16, fp16 or null" in capsys.readouterr().err
