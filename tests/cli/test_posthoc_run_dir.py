"""`longtail posthoc` never writes over another run: a trained run's directory is refused outright (its metrics and
config would be replaced and the run could no longer be evaluated), another post-hoc run unless --overwrite; the same
post-hoc run again is computed again."""

import json
from pathlib import Path

from helpers.runs import read_metrics, tiny_args
from longtail.cli.main import main

LA = str(Path(__file__).resolve().parents[2] / "configs/fashion_mnist_lt/posthoc_la.yaml")


def test_posthoc_refuses_to_replace_another_run(tmp_path, capsys):
    for name, seed in (("ce0", 0), ("ce1", 1)):
        assert main(["train", *tiny_args(tmp_path, name, f"seed={seed}"), "--quiet"]) == 0
    posthoc = ["posthoc", LA, f"output_dir={tmp_path}"]
    assert main([*posthoc, f"from_run={tmp_path / 'ce0'}", "--quiet"]) == 0
    first = (tmp_path / "posthoc_la" / "metrics.json").read_text()
    assert main([*posthoc, f"from_run={tmp_path / 'ce0'}", "--quiet"]) == 0  # the same run again: fine

    trained = (tmp_path / "ce0" / "metrics.json").read_bytes(), (tmp_path / "ce0" / "config.yaml").read_bytes()
    for extra, message in (([f"from_run={tmp_path / 'ce1'}"], "holds another post-hoc run (from_run:"),
                           ([f"from_run={tmp_path / 'ce0'}", "tau=0.5"], "holds another post-hoc run (tau: None -> 0.5)"),
                           ([f"from_run={tmp_path / 'ce1'}", "name=ce0", "--overwrite"], "holds a trained run")):
        assert main([*posthoc, *extra]) == 2
        assert message in " ".join(capsys.readouterr().err.split())
    assert json.loads((tmp_path / "posthoc_la" / "metrics.json").read_text())["posthoc"] == json.loads(first)["posthoc"]
    assert ((tmp_path / "ce0" / "metrics.json").read_bytes(), (tmp_path / "ce0" / "config.yaml").read_bytes()) == trained
    assert main(["eval", str(tmp_path / "ce0"), "--json"]) == 0  # the trained run still evaluates

    assert main([*posthoc, f"from_run={tmp_path / 'ce1'}", "--overwrite", "--quiet"]) == 0
    assert read_metrics(tmp_path / "posthoc_la")["posthoc"]["from_run"] == str(tmp_path / "ce1")
