"""`longtail bench`: a tiny suite on synthetic_lt runs, is interrupted, and continues where it
stopped (finished runs skipped, the interrupted run resumed from its checkpoint); tables and plots
agree with the runs' own metrics."""

import csv
import json
import math
import statistics
from pathlib import Path

import pytest
import yaml

import longtail.engine.trainer as train_module
from longtail.cli.main import main
from longtail.config import ConfigError
from longtail.workflows.bench import load_suite, run_bench

REPO = Path(__file__).resolve().parents[2]
TINY = ["dataset=synthetic_lt", "n_max=30", "dataset_options={image_size: 8, test_per_class: 10}", "epochs=2",
        "batch_size=16", "device=cpu", "many_threshold=20", "few_threshold=5", "lr=0.05", "warmup_epochs=0"]


def write_suite(tmp_path: Path, **changes) -> Path:
    suite = {"name": "tiny", "title": "tiny suite", "output_dir": str(tmp_path / "out"),
             "imbalance_factors": [10], "seeds": [0, 1], "overrides": TINY,
             "methods": [{"name": "ce", "label": "CE", "config": str(REPO / "configs/fashion_mnist_lt/ce.yaml")},
                         {"name": "tau_norm", "label": "tau-norm", "from": "ce",
                          "posthoc": str(REPO / "configs/fashion_mnist_lt/tau_norm.yaml")}]}
    suite.update(changes)
    path = tmp_path / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def mtimes(out: Path) -> dict[str, float]:
    return {str(p.parent.relative_to(out)): p.stat().st_mtime_ns for p in out.glob("runs/*/*/*/metrics.json")}


@pytest.mark.slow  # ~15 s on an idle 2-core CPU: 5 tiny training runs and 4 post-hoc runs
def test_interrupt_and_continue(tmp_path, monkeypatch):
    suite = write_suite(tmp_path)
    out = tmp_path / "out"

    # 1. interrupt the second training run (seed 1's CE) in its second epoch, as Ctrl-C would
    real_epoch = train_module.train_one_epoch
    calls = {"n": 0}

    def interrupting_epoch(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:  # seed 0 CE: epochs 1-2; seed 1 CE: epoch 1 done, then Ctrl-C in epoch 2
            raise KeyboardInterrupt
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(train_module, "train_one_epoch", interrupting_epoch)
    with pytest.raises(KeyboardInterrupt):
        run_bench(suite)
    partial = json.loads((out / "results.json").read_text())
    assert partial["runs_finished"] == 2 and not partial["complete"]  # seed 0: CE + tau-norm
    assert (out / "runs/if10/seed1/ce/checkpoint.pt").is_file()
    assert not json.loads((out / "runs/if10/seed1/ce/metrics.json").read_text())["finished"]
    check_status_of_the_interrupted_suite(suite, out)
    before = mtimes(out)

    # 2. the same command again: seed 0 is skipped, seed 1's CE resumes at epoch 2, tau-norm runs
    monkeypatch.setattr(train_module, "train_one_epoch", real_epoch)
    executed = []
    summary = run_bench(suite, after_run=lambda run: executed.append((run.seed, run.method.name, run.status)))
    assert executed == [(1, "ce", "finished"), (1, "tau_norm", "finished")]
    assert summary["complete"] and summary["runs_finished"] == 4 and not summary["failed"]
    after = mtimes(out)
    for seed0 in ("runs/if10/seed0/ce", "runs/if10/seed0/tau_norm"):
        assert after[seed0] == before[seed0], f"{seed0} was redone"
    resumed = json.loads((out / "runs/if10/seed1/ce/metrics.json").read_text())
    assert resumed["finished"] and [h["epoch"] for h in resumed["history"]] == [1, 2]

    # 3. a third time: nothing left to run
    executed.clear()
    run_bench(suite, after_run=lambda run: executed.append(run))
    assert executed == []

    # the tables hold the mean and sample std over seeds of each run's own test metrics
    runs = {s: json.loads((out / f"runs/if10/seed{s}/tau_norm/metrics.json").read_text()) for s in (0, 1)}
    values = [100 * runs[s]["test"]["mean_class"] for s in (0, 1)]
    with open(out / "results.csv") as f:
        row = next(r for r in csv.DictReader(f) if r["method"] == "tau_norm")
    assert math.isclose(float(row["overall_mean"]), statistics.fmean(values), abs_tol=1e-4)
    assert math.isclose(float(row["overall_std"]), statistics.stdev(values), abs_tol=1e-4)
    assert row["seeds"] == "2"
    assert all(0 <= runs[s]["posthoc"]["tau"] <= 2 for s in (0, 1))  # chosen on val from the 0..2 grid
    md = (out / "results.md").read_text()
    assert "## Imbalance factor 10" in md and "| tau-norm |" in md and "4/4 runs finished" in md
    taus = ", ".join(f"{runs[s]['posthoc']['tau']:g}" for s in (0, 1))  # each seed's tau, and whether it sat on an edge
    edges = sum(runs[s]["posthoc"]["tau"] == 2 for s in (0, 1))
    assert f"tau-norm {taus} (chosen on validation{f', {edges} of 2 on the edge' if edges else ')'}" in md
    for plot in ("bars_if10.png", "per_class_if10.png"):
        assert (out / plot).stat().st_size > 10_000


def check_status_of_the_interrupted_suite(suite: Path, out: Path) -> None:
    """`--status` reads the state of every run from its directory: finished ones with their test overall, seed 1's
    CE interrupted after 1 of 2 epochs, its tau-norm still to run; a live holder of a directory makes it running."""
    import os
    import socket

    from longtail.workflows.bench_status import suite_status

    statuses, left = suite_status(suite)
    by_run = {(s.run.seed, s.run.method.name): s for s in statuses}
    for method in ("ce", "tau_norm"):
        record = json.loads((out / f"runs/if10/seed0/{method}/metrics.json").read_text())
        assert by_run[0, method].state == "finished" and by_run[0, method].test_overall == record["test"]["mean_class"]
    ce1 = by_run[1, "ce"]
    assert (ce1.state, ce1.epochs_done, ce1.epochs) == ("interrupted", 1, 2)
    assert by_run[1, "tau_norm"].state == "to run" and by_run[1, "tau_norm"].epochs is None
    assert by_run[1, "tau_norm"].note == "after ce" and by_run[0, "tau_norm"].note == ""
    assert math.isclose(left, 1 * ce1.seconds_per_epoch)  # one epoch left of the one unfinished training run
    # the running suite's "about ... left" counts the same way, over the runs still ahead of it
    from longtail.workflows.bench import _time_left

    runs = [s.run for s in statuses]
    assert math.isclose(_time_left(runs, [ce1.run, by_run[1, "tau_norm"].run]), left)
    assert _time_left(runs, [by_run[1, "tau_norm"].run]) == 0  # a post-hoc run trains nothing
    lock = out / "runs/if10/seed1/ce/.lock"
    saved = lock.read_text()
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "state": "running"}))
    assert next(s for s in suite_status(suite)[0] if (s.run.seed, s.run.method.name) == (1, "ce")).state == "running"
    lock.write_text(saved)
    assert main(["bench", str(suite), "--status"]) == 0


def test_cli_report_only_and_changed_settings_are_refused(tmp_path, capsys):
    suite = write_suite(tmp_path, seeds=[0], methods=[{"name": "ce", "config": str(REPO / "configs/fashion_mnist_lt/ce.yaml")}])
    assert main(["bench", str(suite)]) == 0
    assert "1 to run" in capsys.readouterr().out
    assert main(["bench", str(suite), "--report-only"]) == 0
    assert "1 finished earlier, 0 to run" in capsys.readouterr().out
    assert main(["bench", str(suite), "--status"]) == 0
    assert "1 finished of 1 runs; nothing left to train" in " ".join(capsys.readouterr().out.split())
    # the same suite with another lr would mix results of different settings: refused before running
    assert main(["bench", str(suite), "lr=0.01"]) == 2
    err = capsys.readouterr().err
    assert "other settings" in err and "lr: 0.05 -> 0.01" in err


@pytest.mark.parametrize("change, message", [
    ({"imbalance_factors": []}, "imbalance_factors must be a non-empty list"),
    ({"colour": "red"}, "unknown suite key"),
    ({"methods": [{"name": "tau", "posthoc": "x.yaml"}]}, "a posthoc method needs from"),
    ({"methods": [{"name": "ce", "config": "configs/no_such.yaml"}]}, "config file configs/no_such.yaml does not exist"),
    ({"methods": [{"name": "ce", "config": str(REPO / "configs/fashion_mnist_lt/ce.yaml")},
                  {"name": "lws", "config": str(REPO / "configs/fashion_mnist_lt/lws.yaml"), "from": "crt"}]},
     "must name a method listed before it"),
    ({"methods": [{"name": "ce", "config": str(REPO / "configs/fashion_mnist_lt/ce.yaml"), "posthoc": "y"}]},
     "exactly one of config"),
])
def test_bad_suites_are_clear_errors(tmp_path, change, message):
    with pytest.raises(ConfigError, match=message):
        load_suite(write_suite(tmp_path, **change))


def test_shipped_suites_load_and_plan():
    """Every shipped suite parses and every one of its runs builds a valid config."""
    from longtail.workflows.bench import plan

    for path in sorted((REPO / "configs/suites").glob("*.yaml")):
        suite = load_suite(path)
        runs = plan(suite)
        assert len(runs) == suite.num_runs and suite.num_runs > 0, path


def test_a_slice_trains_only_its_runs_and_the_report_covers_the_grid(tmp_path, capsys):
    """--seeds / --imbalance-factors train one slice (e.g. one process per core); the report counts every
    finished run, so slices run one after another (or side by side) fill one table."""
    suite = write_suite(tmp_path, methods=[{"name": "ce", "config": str(REPO / "configs/fashion_mnist_lt/ce.yaml")}])
    out = tmp_path / "out"
    assert main(["bench", str(suite), "--seeds", "1"]) == 0
    assert "1 to run in this slice" in capsys.readouterr().out
    assert set(mtimes(out)) == {"runs/if10/seed1/ce"}
    assert main(["bench", str(suite), "--seeds", "0"]) == 0
    assert set(mtimes(out)) == {"runs/if10/seed0/ce", "runs/if10/seed1/ce"}
    rows = list(csv.DictReader((out / "results.csv").open()))
    assert len(rows) == 1 and int(rows[0]["seeds"]) == 2
    assert main(["bench", str(suite), "--imbalance-factors", "50"]) == 2
    assert "imbalance factor(s) [50.0] are not in the suite" in capsys.readouterr().err


def test_methods_can_run_a_subset_of_the_seeds(tmp_path):
    """`seeds:` on a method: the CIFAR-10-LT suite runs every method at seed 0 and the main three at 0-2."""
    from longtail.workflows.bench import plan

    ce = {"name": "ce", "label": "CE", "config": str(REPO / "configs/fashion_mnist_lt/ce.yaml")}
    tau = {"name": "tau_norm", "from": "ce", "posthoc": str(REPO / "configs/fashion_mnist_lt/tau_norm.yaml"), "seeds": [0]}
    suite = load_suite(write_suite(tmp_path, seeds=[0, 1, 2], methods=[ce, tau]))
    runs = plan(suite)
    assert sorted((r.method.name, r.seed) for r in runs) == [("ce", 0), ("ce", 1), ("ce", 2), ("tau_norm", 0)]
    assert suite.num_runs == 4
    with pytest.raises(ConfigError, match="drawn from the suite's seeds"):
        load_suite(write_suite(tmp_path, seeds=[0, 1, 2], methods=[ce, dict(tau, seeds=[5])]))
    with pytest.raises(ConfigError, match="only seeds \\[0\\]; give it seeds: \\[0\\]"):
        load_suite(write_suite(tmp_path, seeds=[0, 1, 2], methods=[dict(ce, seeds=[0]), dict(tau, seeds=None)]))
    cifar = load_suite(REPO / "configs/suites/cifar10_lt.yaml")
    # 14 methods x 2 IFs at seed 0, + seeds 1-2 of CE, Balanced Softmax, BALMS, decoupled BS, post-hoc LA, tau-norm
    assert cifar.num_runs == 14 * 2 + 6 * 2 * 2


@pytest.mark.slow  # ~30 s: 4 tiny runs twice, two of them in spawned worker processes
def test_jobs_train_side_by_side_and_give_the_sequential_results(tmp_path):
    """`--jobs 2`: the runs train in two worker processes, each post-hoc run after its own CE run, and every
    run's test metrics equal those of the one-process suite (same seeds, one thread each)."""
    overrides = TINY + ["threads=1"]
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = load_suite(write_suite(tmp_path / "one", overrides=overrides, output_dir=str(tmp_path / "one" / "out")))
    two_path = write_suite(tmp_path / "two", overrides=overrides, output_dir=str(tmp_path / "two" / "out"))
    assert run_bench(one.path)["runs_finished"] == 4
    finished = []
    summary = run_bench(two_path, jobs=2, after_run=lambda run: finished.append((run.seed, run.method.name)))
    assert summary["complete"] and not summary["failed"]
    for seed in (0, 1):  # a post-hoc run is only ever settled after its stage-1 run
        assert finished.index((seed, "ce")) < finished.index((seed, "tau_norm"))
    for run in ("if10/seed0/ce", "if10/seed1/ce", "if10/seed0/tau_norm", "if10/seed1/tau_norm"):
        a, b = (json.loads((tmp_path / which / "out" / "runs" / run / "metrics.json").read_text())["test"]
                for which in ("one", "two"))
        assert a["per_class"] == b["per_class"] and a["ece"] == b["ece"], run
    with pytest.raises(ConfigError, match="jobs must be >= 1"):
        run_bench(two_path, jobs=0)


@pytest.mark.slow  # ~15 s
def test_jobs_a_failed_run_is_reported_and_its_post_hoc_run_skipped(tmp_path):
    """In worker processes as in one: a diverging CE run fails, its tau-norm cannot start and says why, and the
    other method still trains; nothing waits forever."""
    ce = {"name": "ce", "label": "CE", "config": str(REPO / "configs/fashion_mnist_lt/ce.yaml"), "overrides": ["lr=1e30"]}
    tau = {"name": "tau_norm", "label": "tau-norm", "from": "ce",
           "posthoc": str(REPO / "configs/fashion_mnist_lt/tau_norm.yaml")}
    bs = {"name": "bs", "label": "BS", "config": str(REPO / "configs/fashion_mnist_lt/balanced_softmax.yaml")}
    suite = write_suite(tmp_path, seeds=[0], overrides=TINY + ["threads=1"], methods=[ce, tau, bs])
    summary = run_bench(suite, jobs=2)
    out = tmp_path / "out" / "runs" / "if10" / "seed0"
    assert sorted(Path(p).name for p in summary["failed"]) == ["ce", "tau_norm"]
    errors = {r["method"]: r["error"] for r in summary["runs"]}
    assert "NonFiniteLossError" in errors["ce"] and "did not finish" in errors["tau_norm"]
    assert json.loads((out / "bs" / "metrics.json").read_text())["finished"]
