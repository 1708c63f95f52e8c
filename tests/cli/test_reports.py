"""A finished run holds its test logits, confusion matrix and per-class precision / recall, and
`longtail eval` writes the same for the split it evaluates; top-5 and ECE land in metrics.json."""

import numpy as np

from foundation_helpers import read_metrics, tiny_args
from longtail.cli.main import main


def test_train_and_eval_write_the_same_logits(tmp_path, capsys):
    assert main(["train", *tiny_args(tmp_path, "run"), "--quiet"]) == 0
    run = tmp_path / "run"
    test = read_metrics(run)["test"]
    assert 0 <= test["ece"] <= 1 and test["top5"] >= test["top1"] and "ece_few" in test
    trained = np.load(run / "test_logits.npz")
    assert (run / "test_confusion_matrix.csv").is_file() and (run / "test_confusion_matrix.png").is_file()
    assert main(["eval", str(run), "--json"]) == 0
    evaluated = np.load(run / "test_logits.npz")
    np.testing.assert_allclose(evaluated["logits"], trained["logits"], atol=1e-5)
    assert (evaluated["targets"] == trained["targets"]).all()
    assert main(["eval", str(run), "--split", "val"]) == 0
    assert (run / "val_per_class.csv").is_file()
    assert "ECE" in capsys.readouterr().out
