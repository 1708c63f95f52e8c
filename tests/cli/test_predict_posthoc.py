"""`longtail predict` and `longtail export` on a post-hoc run (tau-norm, logit adjustment), which has no weights
of its own: the stage-1 model with the correction in its head. Its predictions on the test images score what
the post-hoc run recorded, class by class."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.runs import read_metrics, tiny_args
from longtail.cli.main import main
from longtail.workflows import build
from longtail.workflows.run_files import load_run_config

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def stage1(tmp_path_factory):
    """A tiny CE run, its test images as PNG files and their labels."""
    base = tmp_path_factory.mktemp("posthoc_predict")
    assert main(["train", *tiny_args(base, "ce"), "--quiet"]) == 0
    data = build.build_data(load_run_config(base / "ce"))
    folder = base / "images"
    folder.mkdir()
    for i in range(len(data.test)):
        Image.fromarray(data.test.images[i, 0].numpy()).save(folder / f"{i:03d}.png")
    assert main(["predict", str(base / "ce"), str(folder), "--out", str(base / "ce_pred")]) == 0
    return base, folder, data.test.targets, np.load(base / "ce_pred" / "logits.npz")["logits"]


@pytest.mark.parametrize("method", ["posthoc_la", "tau_norm"])
def test_predict_on_a_posthoc_run_scores_what_it_recorded(stage1, method, tmp_path):
    base, folder, targets, plain = stage1
    assert main(["posthoc", str(REPO / f"configs/fashion_mnist_lt/{method}.yaml"), f"from_run={base / 'ce'}",
                 f"output_dir={tmp_path}", "name=corrected", "tau=1", "--quiet"]) == 0
    run = tmp_path / "corrected"
    recorded = read_metrics(run)
    assert main(["predict", str(run), str(folder)]) == 0  # outputs default to the post-hoc run's own folder
    logits = np.load(run / "predictions" / "logits.npz")["logits"]
    predicted = torch.from_numpy(logits).argmax(1)
    per_class = [float((predicted[targets == c] == c).double().mean()) for c in range(len(recorded["class_counts"]))]
    assert per_class == pytest.approx(recorded["test"]["per_class"], abs=1e-9)
    assert not np.allclose(logits, plain, atol=1e-3)  # the correction acts
    if method == "posthoc_la":  # z - tau log p, exactly
        counts = np.array(recorded["class_counts"], dtype=np.float64)
        np.testing.assert_allclose(logits, plain - np.log(counts / counts.sum()), atol=1e-5)

    assert main(["export", str(run), "--out", str(tmp_path / "exported")]) == 0
    card = json.loads((tmp_path / "exported" / "model.json").read_text())
    assert card["posthoc"]["method"] == recorded["posthoc"]["method"] and card["posthoc"]["tau"] == 1
    scripted = torch.jit.load(str(tmp_path / "exported" / "model.torchscript.pt"))
    images = torch.stack([(torch.from_numpy(np.array(Image.open(p), dtype=np.float32))[None] / 255 - 0.5) / 0.25
                          for p in sorted(folder.glob("*.png"))])  # synthetic_lt's normalisation
    torch.testing.assert_close(scripted(images), torch.from_numpy(logits), atol=1e-4, rtol=0)


def test_a_posthoc_run_finds_its_stage1_run_beside_it_or_says_it_is_gone(stage1, tmp_path, capsys):
    """A suite's folder moved as a whole: the stage-1 run named in the post-hoc run is found beside it."""
    import shutil

    base, folder, _, _ = stage1
    assert main(["posthoc", str(REPO / "configs/fashion_mnist_lt/posthoc_la.yaml"), f"from_run={base / 'ce'}",
                 f"output_dir={tmp_path / 'suite'}", "name=la", "tau=1", "--quiet"]) == 0
    shutil.copytree(base / "ce", tmp_path / "suite" / "ce")
    metrics = json.loads((tmp_path / "suite" / "la" / "metrics.json").read_text())
    metrics["posthoc"]["from_run"] = str(tmp_path / "moved_away" / "ce")  # where the suite was
    (tmp_path / "suite" / "la" / "metrics.json").write_text(json.dumps(metrics))
    assert main(["predict", str(tmp_path / "suite" / "la"), str(folder / "000.png"), "--out", str(tmp_path / "p")]) == 0
    shutil.rmtree(tmp_path / "suite" / "ce")
    assert main(["predict", str(tmp_path / "suite" / "la"), str(folder / "000.png")]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "is a post-hoc correction of the run" in err and "moved_away" in err and "is not found there nor beside it" in err


def test_eval_on_a_posthoc_run_scores_it_and_writes_its_reports(stage1, tmp_path, capsys):
    """A post-hoc run writes the test reports of a trained run (confusion matrix, per-class CSV, calibration);
    `longtail eval` on it gives the figures and logits it recorded; weights are asked of it in vain, with a
    pointer to what applies it."""
    base, _, _, _ = stage1
    assert main(["posthoc", str(REPO / "configs/fashion_mnist_lt/tau_norm.yaml"), f"from_run={base / 'ce'}",
                 f"output_dir={tmp_path}", "name=tn", "tau=1", "--quiet"]) == 0
    run = tmp_path / "tn"
    recorded = read_metrics(run)["test"]
    assert (run / "test_confusion_matrix.csv").is_file() and (run / "test_reliability.png").is_file()  # from posthoc
    from_posthoc = np.load(run / "test_logits.npz")["logits"]
    stage1_logits = (base / "ce" / "test_logits.npz").read_bytes()
    assert main(["eval", str(run), "--json"]) == 0
    np.testing.assert_allclose(np.load(run / "test_logits.npz")["logits"], from_posthoc, atol=1e-5)  # the same model
    printed = json.loads(capsys.readouterr().out)
    assert printed["per_class"] == pytest.approx(recorded["per_class"], abs=1e-9)
    assert printed["ece"] == pytest.approx(recorded["ece"], abs=1e-6)
    assert (run / "test_confusion_matrix.csv").is_file() and (run / "test_logits.npz").is_file()
    assert (base / "ce" / "test_logits.npz").read_bytes() == stage1_logits  # the stage-1 run's reports are its own
    assert main(["posthoc", str(REPO / "configs/fashion_mnist_lt/posthoc_la.yaml"), f"from_run={run}",
                 f"output_dir={tmp_path}", "name=again", "--quiet"]) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "is a post-hoc run (tau_norm of" in err and "give its stage-1 run" in err
