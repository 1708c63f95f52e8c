"""`longtail train / eval / data stats` end to end on the generated synthetic_lt dataset."""

import json

import pytest
import torch
import yaml

from helpers.runs import read_metrics, run_longtail, tiny_args
from longtail.cli.main import main
from longtail.config import TrainConfig

SHOT_KEYS = ("top1", "mean_class", "many", "medium", "few", "per_class")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """One tiny Balanced Softmax run shared by the tests of this file (in-process: fast)."""
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", *tiny_args(out, "bs", "loss=balanced_softmax"), "--quiet"]) == 0
    return out / "bs"


def test_run_directory_holds_everything(tiny_run):
    for name in ("config.yaml", "metrics.json", "checkpoint.pt", "best.pt", "per_class_accuracy.png"):
        assert (tiny_run / name).is_file() and (tiny_run / name).stat().st_size > 0, name
    assert list((tiny_run / "tb").glob("events.out.tfevents.*")), "TensorBoard events"
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars = EventAccumulator(str(tiny_run / "tb")).Reload().Tags()["scalars"]
    assert {"train/loss", "lr", "val/mean_class", "val/few", "test/mean_class", "test/few"} <= set(scalars)
    assert not list(tiny_run.glob("*.tmp")) and not list(tiny_run.glob(".*.tmp")), "no temporary files left"


def test_metrics_json_has_the_shot_metrics(tiny_run):
    m = read_metrics(tiny_run)
    assert m["finished"] and m["epochs_completed"] == 2 and len(m["history"]) == 2
    assert m["class_counts"] == [40, 21, 12, 6, 3, 2]
    for split in ("test", "test_last"):
        assert set(SHOT_KEYS) <= set(m[split])
        assert len(m[split]["per_class"]) == 6
        for key in SHOT_KEYS[:-1]:
            assert 0.0 <= m[split][key] <= 1.0, (split, key)
        assert m[split]["group_sizes"] == {"many": 2, "medium": 2, "few": 2}
        assert m[split]["num_samples"] == 120
    assert 1 <= m["selected_epoch"] <= 2
    best_val = max(r["val_mean_class"] for r in m["history"])
    assert m["history"][m["selected_epoch"] - 1]["val_mean_class"] == best_val, "selected on validation"


def test_resolved_config_round_trips(tiny_run):
    values = yaml.safe_load((tiny_run / "config.yaml").read_text())
    cfg = TrainConfig(**values)
    assert cfg.loss == "balanced_softmax" and cfg.dataset_options == {"image_size": 8} and cfg.epochs == 2


def test_checkpoints_load_with_weights_only(tiny_run):
    state = torch.load(tiny_run / "checkpoint.pt", map_location="cpu", weights_only=True)
    assert state["epoch"] == 2 and len(state["history"]) == 2 and "optimizer" in state and "scheduler" in state
    best = torch.load(tiny_run / "best.pt", map_location="cpu", weights_only=True)
    assert best["epoch"] == read_metrics(tiny_run)["selected_epoch"]
    assert best["model"].keys() == state["model"].keys()


def test_eval_reproduces_the_test_metrics(tiny_run, capsys):
    m = read_metrics(tiny_run)
    capsys.readouterr()
    assert main(["eval", str(tiny_run), "--json", "--device", "cpu"]) == 0
    again = json.loads(capsys.readouterr().out)
    for key in SHOT_KEYS:
        assert again[key] == m["test"][key], key
    assert main(["eval", str(tiny_run / "checkpoint.pt"), "--json", "--device", "cpu"]) == 0
    last = json.loads(capsys.readouterr().out)
    assert all(last[key] == m["test_last"][key] for key in SHOT_KEYS)
    assert main(["eval", str(tiny_run), "--split", "val", "--device", "cpu"]) == 0
    assert "on val" in capsys.readouterr().out


def test_eval_of_a_missing_run_is_explained(tmp_path, capsys):
    assert main(["eval", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main(["eval", str(tmp_path)]) == 2
    assert "holds no best.pt or checkpoint.pt" in capsys.readouterr().err


def test_existing_run_without_resume_is_refused(tiny_run, capsys):
    before = (tiny_run / "checkpoint.pt").read_bytes()
    args = tiny_args(tiny_run.parent, "bs", "loss=balanced_softmax")
    assert main(["train", *args, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert (tiny_run / "checkpoint.pt").read_bytes() == before, "the existing run is untouched"


def test_data_stats_prints_the_table_and_saves_the_histogram(tmp_path, capsys):
    plot = tmp_path / "hist.png"
    assert main(["data", "stats", "synthetic_lt", "n_max=40", "many_threshold=20", "few_threshold=5",
                 "--plot", str(plot)]) == 0
    out = " ".join(capsys.readouterr().out.split())  # rich wraps the title to the table width
    assert "84 training images" in out and "6 classes" in out
    assert "2 / 2 / 2" in out
    assert plot.is_file() and plot.stat().st_size > 0


def test_unknown_key_in_overrides_names_it(tmp_path, capsys):
    assert main(["train", *tiny_args(tmp_path, "x"), "weight_decai=0.1"]) == 2
    err = capsys.readouterr().err
    assert "unknown config key 'weight_decai'" in err and "Did you mean 'weight_decay'" in err
    assert not (tmp_path / "x").exists()


def test_mistyped_key_in_a_yaml_file_names_it_and_the_file(tmp_path):
    config = tmp_path / "typo.yaml"
    config.write_text("dataset: synthetic_lt\nepoch: 3\n")
    result = run_longtail("train", str(config), f"output_dir={tmp_path}")  # a real process: real exit code
    assert result.returncode == 2, result.stderr
    assert "unknown config key 'epoch'" in result.stderr and "'epochs'" in result.stderr
    assert "typo.yaml" in result.stderr


def test_wrong_value_type_and_unknown_option_are_errors(tmp_path, capsys):
    assert main(["train", *tiny_args(tmp_path, "x"), "epochs=two"]) == 2
    assert "epochs must be int" in capsys.readouterr().err
    assert main(["train", *tiny_args(tmp_path, "x"), "loss_options={gamma: 2}"]) == 2
    assert "does not take option(s) ['gamma']" in capsys.readouterr().err
    assert main(["train", *tiny_args(tmp_path, "x"), "loss=balanced_softmx"]) == 2
    assert "Did you mean 'balanced_softmax'" in capsys.readouterr().err


def test_overrides_may_follow_options(tmp_path, capsys):
    """argparse alone stops collecting positionals at the first option: `train CONFIG --quiet epochs=two`
    must still read epochs=two as an override (here a wrong one), and a stray word stays an error."""
    assert main(["train", *tiny_args(tmp_path, "x"), "--quiet", "epochs=two"]) == 2
    assert "epochs must be int" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["train", *tiny_args(tmp_path, "x"), "--quiet", "stray"])
    assert "unrecognized arguments: stray" in capsys.readouterr().err


def test_overrides_may_follow_a_list_of_seeds_or_imbalance_factors():
    """`bench SUITE --seeds 0 1 lr=0.1`: argparse alone would read lr=0.1 as a seed and fail."""
    from longtail.cli.main import parse_args

    args = parse_args(["bench", "suite.yaml", "--imbalance-factors", "100", "200", "threads=1", "lr=0.1",
                       "--seeds", "0", "data_root=x.tar"])
    assert args.imbalance_factors == [100, 200] and args.seeds == [0]
    assert args.suite == "suite.yaml" and args.overrides == ["threads=1", "lr=0.1", "data_root=x.tar"]
    args = parse_args(["demo", "--seeds", "1", "2", "threads=1"])
    assert args.seeds == [1, 2] and args.overrides == ["threads=1"]
    with pytest.raises(SystemExit):  # a word that is neither a number nor key=value stays an error
        parse_args(["bench", "suite.yaml", "--seeds", "0", "one"])


def test_a_key_typo_names_the_command_that_lists_the_keys(capsys):
    assert main(["detect", "train", "hed=bags"]) == 2
    assert "Did you mean 'head'? Run `longtail detect train --list-keys`" in capsys.readouterr().err
    assert main(["posthoc", "from_rnu=runs/ce"]) == 2  # posthoc has no --list-keys: the message lists them
    assert "Did you mean 'from_run'? Known keys: name, output_dir, from_run," in capsys.readouterr().err


def test_missing_config_file_is_explained(tmp_path, capsys):
    assert main(["train", str(tmp_path / "missing.yaml")]) == 2
    assert "missing.yaml does not exist" in capsys.readouterr().err


def test_error_messages_are_printed_as_written(tmp_path, capsys):
    """Brackets in a message (a path, a list of names) are text, not console markup: rich would drop
    "[bags, softmax]" and raise on "[/path]" inside the error handler."""
    for folder in ("[bags, softmax]", "[/oops]"):
        assert main(["train", str(tmp_path / folder / "missing.yaml")]) == 2
        assert f"{folder}/missing.yaml does not exist" in capsys.readouterr().err
