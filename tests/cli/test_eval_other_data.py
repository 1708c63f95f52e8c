"""`longtail eval RUN --data-root PATH` scores a run on its dataset at another path (the data moved, or another
copy): the same figures as at training, its reports beside the run's own (never over them), and a clear refusal
where the data is missing or is not the dataset the run learned."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from helpers.cifar_stand_in import write_stand_in
from longtail.cli.main import main
from longtail.workflows.evaluate import other_data_dir

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A one-epoch CIFAR-10-LT run on a generated copy, whose tar then moves elsewhere."""
    base = tmp_path_factory.mktemp("eval_other_data")
    original = write_stand_in(base / "copy.tar", per_class={"train": 30, "test": 4})
    assert main(["train", "dataset=cifar10_lt", f"data_root={original}", "n_max=20", "imbalance_factor=10",
                 "val_per_class=2", "model=resnet8_small", "epochs=1", "warmup_epochs=0", "batch_size=16",
                 "device=cpu", "threads=1", f"output_dir={base}", "name=run", "--quiet"]) == 0
    moved = base / "elsewhere" / "copy.tar"
    moved.parent.mkdir()
    shutil.move(original, moved)
    return base / "run", moved


def test_eval_on_moved_data_gives_the_runs_figures_beside_its_own_reports(trained, capsys):
    run, moved = trained
    own_logits = (run / "test_logits.npz").read_bytes()
    recorded = json.loads((run / "metrics.json").read_text())["test"]

    assert main(["eval", str(run), "--data-root", str(moved), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["data_root"] == str(moved)
    for key in ("mean_class", "top1", "few", "ece"):
        assert printed[key] == pytest.approx(recorded[key], abs=1e-6), key

    assert (run / "test_logits.npz").read_bytes() == own_logits  # the run's own reports are untouched
    reports = other_data_dir(run, moved)
    assert reports.parent == run / "eval_on" and reports.name.startswith("copy.tar-")
    np.testing.assert_allclose(np.load(reports / "test_logits.npz")["logits"], np.load(run / "test_logits.npz")["logits"],
                               atol=1e-5)
    assert (reports / "test_per_class.csv").is_file()


def test_eval_says_how_to_point_at_data_that_moved(trained, capsys):
    run, _ = trained
    assert main(["eval", str(run)]) != 0
    err = capsys.readouterr().err
    assert "does not exist" in err and "--data-root" in err
    assert main(["eval", str(run), "--data-root", str(run / "no_such.tar")]) != 0
    assert "--data-root" in capsys.readouterr().err
    assert not any(p.name.startswith("no_such") for p in (run / "eval_on").glob("*"))


def test_eval_refuses_data_whose_long_tailed_counts_are_not_the_runs(trained, tmp_path, capsys):
    run, moved = trained
    other = tmp_path / "run"
    shutil.copytree(run, other, ignore=shutil.ignore_patterns("eval_on"))
    metrics = json.loads((other / "metrics.json").read_text())
    metrics["class_counts"] = [c + 1 for c in metrics["class_counts"]]  # as if trained on another draw or dataset
    (other / "metrics.json").write_text(json.dumps(metrics))

    assert main(["eval", str(other), "--data-root", str(moved)]) != 0
    err = capsys.readouterr().err
    assert "training class counts" in err and "not the same long-tailed dataset" in err
    assert not (other / "eval_on").exists()


def test_posthoc_follows_the_data_where_it_moved(trained, tmp_path, capsys):
    run, moved = trained
    args = ["posthoc", "method=logit_adjust", f"from_run={run}", f"output_dir={tmp_path}", "name=la", "tau=0"]
    assert main(args) != 0
    assert "data_root=PATH" in capsys.readouterr().err and not (tmp_path / "la").exists()
    assert main([*args, f"data_root={moved}", "--quiet"]) == 0
    corrected = json.loads((tmp_path / "la" / "metrics.json").read_text())
    recorded = json.loads((run / "metrics.json").read_text())["test"]
    # tau 0 leaves the logits as they are: the run's own figure, from its data at the new place
    assert corrected["test"]["mean_class"] == pytest.approx(recorded["mean_class"], abs=1e-6)


def test_a_suite_given_another_data_root_passes_it_to_its_posthoc_runs(tmp_path):
    from longtail.workflows.bench import load_suite, plan

    suite_path = tmp_path / "suite.yaml"
    suite_path.write_text(yaml.safe_dump({"name": "moved", "imbalance_factors": [10], "seeds": [0], "methods": [
        {"name": "ce", "config": str(REPO / "configs/fashion_mnist_lt/ce.yaml")},
        {"name": "la", "from": "ce", "posthoc": str(REPO / "configs/fashion_mnist_lt/posthoc_la.yaml")}]}))
    runs = {r.method.name: r.config for r in plan(load_suite(suite_path), ("data_root=/data/moved",))}
    assert runs["ce"].data_root == runs["la"].data_root == "/data/moved"
    assert plan(load_suite(suite_path))[1].config.data_root is None  # nothing given: the stage-1 run's own


def test_predict_and_export_take_the_moved_data_too(trained, tmp_path, capsys):
    from helpers.cifar_stand_in import png_of

    run, moved = trained
    image = tmp_path / "new.png"
    image.write_bytes(png_of(6))
    predict = ["predict", str(run), str(image), "--out", str(tmp_path / "pred")]
    export = ["export", str(run), "--out", str(tmp_path / "export")]
    for args in (predict, export):
        assert main(args) != 0
        assert "--data-root PATH" in capsys.readouterr().err
    assert main([*predict, "--data-root", str(moved)]) == 0
    assert len((tmp_path / "pred" / "predictions.csv").read_text().splitlines()) == 2  # header + the image
    assert main([*export, "--data-root", str(moved)]) == 0
    card = json.loads(next((tmp_path / "export").glob("*.json")).read_text())
    assert card["class_counts"] == json.loads((run / "metrics.json").read_text())["class_counts"]
