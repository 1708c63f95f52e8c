"""A finished run holds its test logits, confusion matrix and per-class precision / recall, and
`longtail eval` writes the same for the split it evaluates; top-5 and ECE land in metrics.json."""

import numpy as np
import pytest
import torch

from helpers.runs import read_metrics, tiny_args
from longtail.cli.main import main


def test_train_and_eval_write_the_same_logits(tmp_path, capsys):
    assert main(["train", *tiny_args(tmp_path, "run"), "--quiet"]) == 0
    run = tmp_path / "run"
    test = read_metrics(run)["test"]
    assert 0 <= test["ece"] <= 1 and test["top5"] >= test["top1"] and "ece_few" in test
    trained = np.load(run / "test_logits.npz")
    assert (run / "test_confusion_matrix.csv").is_file() and (run / "test_confusion_matrix.png").is_file()
    assert (run / "test_reliability.png").is_file() and (run / "test_calibration.csv").is_file()
    assert main(["eval", str(run), "--json"]) == 0
    evaluated = np.load(run / "test_logits.npz")
    np.testing.assert_allclose(evaluated["logits"], trained["logits"], atol=1e-5)
    assert (evaluated["targets"] == trained["targets"]).all()
    assert main(["eval", str(run), "--split", "val"]) == 0
    assert (run / "val_per_class.csv").is_file()
    assert "ECE" in capsys.readouterr().out


def test_exported_model_gives_the_runs_logits(tmp_path):
    """The TorchScript and ONNX exports and the plain state dict rebuild the run's test logits to 1e-5."""
    import json

    import torch

    from longtail.models import create_model
    from longtail.workflows import build
    from longtail.workflows.run_files import load_run_config

    assert main(["train", *tiny_args(tmp_path, "run"), "--quiet"]) == 0
    run = tmp_path / "run"
    assert main(["export", str(run), "--out", str(tmp_path / "exported")]) == 0
    card = json.loads((tmp_path / "exported" / "model.json").read_text())
    assert card["num_classes"] == 6 and len(card["class_names"]) == 6 and card["input_shape"] == [1, 8, 8]
    data = build.build_data(load_run_config(run))
    images = torch.stack([data.test[i][0] for i in range(len(data.test))])
    expected = torch.from_numpy(np.load(run / "test_logits.npz")["logits"])
    scripted = torch.jit.load(str(tmp_path / "exported" / "model.torchscript.pt"))
    torch.testing.assert_close(scripted(images), expected, atol=1e-5, rtol=0)
    rebuilt = create_model(card["model"], card["num_classes"], card["in_channels"], **card["model_options"]).eval()
    rebuilt.load_state_dict(torch.load(tmp_path / "exported" / "model_state.pt", weights_only=True))
    torch.testing.assert_close(rebuilt(images), expected, atol=1e-5, rtol=0)
    onnxruntime = pytest.importorskip("onnxruntime", reason="the ONNX check needs onnxruntime (longtail[export])")
    assert card["files"]["onnx"] == "model.onnx"  # written when the exporter is installed (it is, with onnxruntime)
    session = onnxruntime.InferenceSession(str(tmp_path / "exported" / "model.onnx"))
    logits = session.run(["logits"], {"images": images.numpy()})[0]  # any batch size: the whole test set at once
    torch.testing.assert_close(torch.from_numpy(logits), expected, atol=1e-5, rtol=0)


def test_predict_on_image_files_matches_eval_and_reports_unreadable_ones(tmp_path, capsys):
    """The run's test images written to PNG and predicted give the run's test logits; a corrupt file is
    named in the output and in unreadable.txt, and the other images are still predicted."""
    import csv

    import torch
    from PIL import Image

    from longtail.workflows import build
    from longtail.workflows.run_files import load_run_config

    assert main(["train", *tiny_args(tmp_path, "run"), "--quiet"]) == 0
    run = tmp_path / "run"
    data = build.build_data(load_run_config(run))
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(len(data.test)):
        Image.fromarray(data.test.images[i, 0].numpy(), mode="L").save(folder / f"{i:03d}.png")
    (folder / "050_broken.png").write_bytes(b"not an image")
    assert main(["predict", str(run), str(folder), "--out", str(tmp_path / "pred"), "--top-k", "3"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    assert "050_broken.png" in out and "1 unreadable" in out
    assert "050_broken.png" in (tmp_path / "pred" / "unreadable.txt").read_text()
    saved = np.load(tmp_path / "pred" / "logits.npz")
    expected = np.load(run / "test_logits.npz")["logits"]
    assert len(saved["paths"]) == len(data.test)
    np.testing.assert_allclose(saved["logits"], expected, atol=1e-5)
    rows = list(csv.DictReader(open(tmp_path / "pred" / "predictions.csv")))
    assert len(rows) == len(data.test) and rows[0]["name1"] == data.class_names[int(expected[0].argmax())]
    top3 = torch.tensor(expected[0]).softmax(0).topk(3).values.sum().item()
    assert abs(sum(float(rows[0][f"prob{r}"]) for r in (1, 2, 3)) - top3) < 1e-5
    # a test-time prior shifts the logits by log pi
    assert main(["predict", str(run), str(folder / "000.png"), "--out", str(tmp_path / "p2"), "--prior", "train"]) == 0
    counts = torch.tensor(data.class_counts, dtype=torch.float64)
    shifted = np.load(tmp_path / "p2" / "logits.npz")["logits"][0]
    np.testing.assert_allclose(shifted, expected[0] + torch.log(counts / counts.sum()).numpy(), atol=1e-5)


def test_posthoc_logit_adjustment_from_saved_logits_equals_recomputing(tmp_path):
    """A finished run saves its selected model's val and test logits; post-hoc logit adjustment reads them
    (no backbone pass) and gets exactly what recomputing the features gives."""
    from pathlib import Path

    repo = Path(__file__).parents[2]
    assert main(["train", *tiny_args(tmp_path, "ce"), "--quiet"]) == 0
    args = ["posthoc", str(repo / "configs/fashion_mnist_lt/posthoc_la.yaml"), f"from_run={tmp_path / 'ce'}",
            f"output_dir={tmp_path}"]
    assert main([*args, "name=saved", "--quiet"]) == 0
    saved = read_metrics(tmp_path / "saved")
    assert saved["posthoc"]["from_saved_logits"]
    # the corrected model is scored like any model: ECE of softmax(z - tau log p), and of z uncorrected
    from longtail.evaluation import expected_calibration_error

    stage1 = np.load(tmp_path / "ce" / "test_logits.npz")
    z, y = torch.tensor(stage1["logits"], dtype=torch.float64), torch.tensor(stage1["targets"])
    counts = torch.tensor(saved["class_counts"], dtype=torch.float64)
    corrected = z - saved["posthoc"]["tau"] * torch.log(counts / counts.sum())
    assert abs(saved["test"]["ece"] - expected_calibration_error(corrected, y)) < 1e-6
    assert abs(saved["test_plain"]["ece"] - expected_calibration_error(z, y)) < 1e-6
    assert saved["test"]["ece"] != saved["test_plain"]["ece"] and "top5" in saved["test"]
    for split in ("val", "test"):
        (tmp_path / "ce" / f"{split}_logits.npz").unlink()
    assert main([*args, "name=recomputed", "--quiet"]) == 0
    recomputed = read_metrics(tmp_path / "recomputed")
    assert not recomputed["posthoc"]["from_saved_logits"]
    assert saved["posthoc"]["tau"] == recomputed["posthoc"]["tau"]
    assert saved["posthoc"]["val_mean_class"] == recomputed["posthoc"]["val_mean_class"]
    assert saved["test"]["per_class"] == recomputed["test"]["per_class"] and saved["test_plain"] == recomputed["test_plain"]


@pytest.mark.slow
@pytest.mark.ddp
def test_predict_under_torchrun_equals_one_process(tmp_path):
    """`longtail predict` with 2 processes: each predicts a shard, rank 0 writes the same files as one process
    (same paths in the same order, same logits) and names the unreadable image once."""
    import subprocess
    import sys

    from PIL import Image

    from helpers.runs import subprocess_env

    assert main(["train", *tiny_args(tmp_path, "run"), "--quiet"]) == 0
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(11):  # an odd count: the shards differ in length
        Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8), mode="L").save(folder / f"{i:03d}.png")
    (folder / "005_broken.png").write_bytes(b"not an image")
    assert main(["predict", str(tmp_path / "run"), str(folder), "--out", str(tmp_path / "one")]) == 0
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "longtail.cli.main", "predict", str(tmp_path / "run"), str(folder), "--out", str(tmp_path / "two")]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=subprocess_env())
    assert done.returncode == 0, done.stderr[-3000:]
    one, two = np.load(tmp_path / "one" / "logits.npz"), np.load(tmp_path / "two" / "logits.npz")
    assert list(two["paths"]) == list(one["paths"]) and len(one["paths"]) == 11
    np.testing.assert_allclose(two["logits"], one["logits"], atol=1e-6)
    assert (tmp_path / "two" / "predictions.csv").read_text() == (tmp_path / "one" / "predictions.csv").read_text()
    unreadable = (tmp_path / "two" / "unreadable.txt").read_text().splitlines()
    assert len(unreadable) == 1 and unreadable[0].startswith(str(folder / "005_broken.png"))


def test_tau_norm_from_features_saved_by_eval_equals_recomputing(tmp_path):
    """`longtail eval --features` saves a split's backbone features; post-hoc tau-norm reads them (no backbone
    pass) and gets what recomputing gives; features of other weights are not used."""
    from pathlib import Path

    import torch

    repo = Path(__file__).parents[2]
    assert main(["train", *tiny_args(tmp_path, "ce"), "--quiet"]) == 0
    args = ["posthoc", str(repo / "configs/fashion_mnist_lt/tau_norm.yaml"), f"from_run={tmp_path / 'ce'}",
            f"output_dir={tmp_path}"]
    assert main([*args, "name=recomputed", "--quiet"]) == 0
    for split in ("val", "test"):
        assert main(["eval", str(tmp_path / "ce"), "--split", split, "--features"]) == 0
        assert (tmp_path / "ce" / f"{split}_features.npz").is_file()
    assert main([*args, "name=saved", "--quiet"]) == 0
    saved, recomputed = read_metrics(tmp_path / "saved"), read_metrics(tmp_path / "recomputed")
    assert saved["posthoc"]["from_saved_features"] and not recomputed["posthoc"]["from_saved_features"]
    assert saved["posthoc"]["tau"] == recomputed["posthoc"]["tau"]
    assert saved["posthoc"]["val_mean_class"] == recomputed["posthoc"]["val_mean_class"]
    assert saved["test"]["per_class"] == recomputed["test"]["per_class"] and saved["test_plain"] == recomputed["test_plain"]
    state = torch.load(tmp_path / "ce" / "best.pt", weights_only=True)
    state["epoch"] = -7  # other weights: the saved features no longer belong to them
    torch.save(state, tmp_path / "ce" / "best.pt")
    assert main([*args, "name=other", "--quiet"]) == 0
    assert not read_metrics(tmp_path / "other")["posthoc"]["from_saved_features"]


def test_posthoc_warns_when_tau_is_chosen_on_the_grid_edge(tmp_path, capsys):
    """Far beyond any useful correction every tau predicts the same (the tail), the tie goes to the smallest,
    the grid's lower end above 0: the run says so even when quiet and records the note."""
    from pathlib import Path

    repo = Path(__file__).parents[2]
    assert main(["train", *tiny_args(tmp_path, "ce"), "--quiet"]) == 0
    assert main(["posthoc", str(repo / "configs/fashion_mnist_lt/posthoc_la.yaml"), f"from_run={tmp_path / 'ce'}",
                 f"output_dir={tmp_path}", "name=far", "tau_min=50", "tau_max=50.5", "tau_step=0.5", "--quiet"]) == 0
    note = read_metrics(tmp_path / "far")["posthoc"]["grid_edge_note"]
    assert note and "tau_min" in note and "smallest value of the grid" in " ".join(capsys.readouterr().out.split())
    assert main(["posthoc", str(repo / "configs/fashion_mnist_lt/posthoc_la.yaml"), f"from_run={tmp_path / 'ce'}",
                 f"output_dir={tmp_path}", "name=fixed", "tau=1", "--quiet"]) == 0  # a fixed tau: nothing searched
    assert read_metrics(tmp_path / "fixed")["posthoc"]["grid_edge_note"] is None


def test_ldam_runs_report_the_probabilities_their_loss_trains(tmp_path):
    """LDAM trains softmax(s z) on cosine logits z: its ECE, calibration report, `longtail eval`, predict's
    probabilities and the export card all use s (the softmax of the raw cosines is nearly uniform); the saved
    test logits stay the model's raw outputs, and accuracy does not depend on s."""
    import json

    from PIL import Image

    from longtail.evaluation import expected_calibration_error
    from longtail.workflows import build
    from longtail.workflows.run_files import load_run_config

    assert main(["train", *tiny_args(tmp_path, "ldam", "loss=ldam", "head=cosine", "loss_options={scale: 16.0}"),
                 "--quiet"]) == 0
    run = tmp_path / "ldam"
    metrics = read_metrics(run)
    assert metrics["probability_scale"] == 16.0
    saved = np.load(run / "test_logits.npz")
    z, y = torch.tensor(saved["logits"], dtype=torch.float64), torch.tensor(saved["targets"])
    assert z.abs().max() <= 1 + 1e-5  # raw cosines
    assert abs(metrics["test"]["ece"] - expected_calibration_error(16 * z, y)) < 1e-6
    assert abs(metrics["test"]["ece"] - expected_calibration_error(z, y)) > 1e-3  # the scale matters
    bins = np.genfromtxt(run / "test_calibration.csv", delimiter=",", names=True)
    assert abs(np.nansum(bins["count"] / bins["count"].sum() * np.abs(bins["accuracy"] - bins["mean_confidence"]))
               - metrics["test"]["ece"]) < 1e-5
    from longtail.workflows.evaluate import run_eval

    assert abs(run_eval(run)["ece"] - metrics["test"]["ece"]) < 1e-6  # `longtail eval` scores the same probabilities
    data = build.build_data(load_run_config(run))
    folder = tmp_path / "images"
    folder.mkdir()
    Image.fromarray(data.test.images[0, 0].numpy(), mode="L").save(folder / "first.png")
    assert main(["predict", str(run), str(folder), "--out", str(tmp_path / "pred"), "--top-k", "1"]) == 0
    row = (tmp_path / "pred" / "predictions.csv").read_text().splitlines()[1].split(",")
    assert abs(float(row[3]) - float((16 * z[0]).softmax(0).max())) < 1e-5
    assert main(["export", str(run), "--out", str(tmp_path / "exported")]) == 0
    assert json.loads((tmp_path / "exported" / "model.json").read_text())["probability_scale"] == 16.0
    # post-hoc logit adjustment subtracts tau log p from the trained logits s z, not from the cosines z
    # (that would be an s-times larger tau)
    from pathlib import Path

    repo = Path(__file__).parents[2]
    assert main(["posthoc", str(repo / "configs/fashion_mnist_lt/posthoc_la.yaml"), f"from_run={run}",
                 f"output_dir={tmp_path}", "name=la", "tau=1", "--quiet"]) == 0
    adjusted = read_metrics(tmp_path / "la")
    counts = torch.tensor(adjusted["class_counts"], dtype=torch.float64)
    corrected = 16 * z - torch.log(counts / counts.sum())
    predicted = corrected.argmax(1)
    per_class = [float((predicted[y == c] == c).double().mean()) for c in range(len(counts))]
    assert np.allclose(adjusted["test"]["per_class"], per_class)
    assert abs(adjusted["test"]["ece"] - expected_calibration_error(corrected, y)) < 1e-6
    assert abs(adjusted["test_plain"]["ece"] - metrics["test"]["ece"]) < 1e-6
