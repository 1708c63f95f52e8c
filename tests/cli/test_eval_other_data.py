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
from longtail.workflows.run_files import other_data_dir

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


def test_predict_and_export_need_no_data_and_give_what_the_data_gives(trained, tmp_path):
    """The run recorded its classes and test pipeline: with its data gone, predict and export work and agree
    with the same commands on the data rebuilt (--data-root)."""
    from helpers.cifar_stand_in import png_of

    run, moved = trained
    assert "inputs" in json.loads((run / "metrics.json").read_text())
    image = tmp_path / "new.png"
    image.write_bytes(png_of(6))
    outputs = {}
    for how, extra in (("recorded", []), ("rebuilt", ["--data-root", str(moved)])):
        assert main(["predict", str(run), str(image), "--out", str(tmp_path / how), *extra]) == 0
        assert main(["export", str(run), "--out", str(tmp_path / f"export_{how}"), *extra]) == 0
        outputs[how] = (np.load(tmp_path / how / "logits.npz")["logits"],
                        (tmp_path / how / "predictions.csv").read_text(),
                        json.loads((tmp_path / f"export_{how}" / "model.json").read_text()))
    np.testing.assert_allclose(outputs["recorded"][0], outputs["rebuilt"][0], atol=1e-6)
    assert outputs["recorded"][1] == outputs["rebuilt"][1]
    for key in ("class_names", "class_counts", "input_shape", "normalise", "num_classes", "preprocess"):
        assert outputs["recorded"][2][key] == outputs["rebuilt"][2][key], key
    assert outputs["recorded"][2]["preprocess"].startswith("RGB; resize to 32x32 (bilinear) where the size differs")


def test_a_run_without_the_record_rebuilds_the_data_or_says_where_to_find_it(trained, tmp_path, capsys):
    """Runs trained before longtail recorded the pipeline need the data, and say how to point at it."""
    from helpers.cifar_stand_in import png_of

    run, moved = trained
    old = tmp_path / "old_run"
    shutil.copytree(run, old)
    metrics = json.loads((old / "metrics.json").read_text())
    del metrics["inputs"]
    (old / "metrics.json").write_text(json.dumps(metrics))
    image = tmp_path / "new.png"
    image.write_bytes(png_of(6))
    predict = ["predict", str(old), str(image), "--out", str(tmp_path / "pred")]
    export = ["export", str(old), "--out", str(tmp_path / "export")]
    for args in (predict, export):
        assert main(args) != 0
        assert "--data-root PATH" in capsys.readouterr().err
    assert main([*predict, "--data-root", str(moved)]) == 0
    assert len((tmp_path / "pred" / "predictions.csv").read_text().splitlines()) == 2  # header + the image
    assert main([*export, "--data-root", str(moved)]) == 0
    card = json.loads(next((tmp_path / "export").glob("*.json")).read_text())
    assert card["class_counts"] == metrics["class_counts"]
