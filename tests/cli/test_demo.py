"""`longtail demo`, the README's main job, end to end on synthetic data: the four methods side by side, the
stage-2 rows on the CE run of their seed, the tables and plot written; a second call reuses the finished runs,
and runs made with other settings are refused rather than silently reused."""

import json
from pathlib import Path

import pytest
import yaml

from longtail.cli.main import main
from longtail.config import ConfigError
from longtail.workflows.demo import run_demo

REPO = Path(__file__).resolve().parents[2]
SYNTHETIC = ["dataset=synthetic_lt", "n_max=40", "imbalance_factor=20", "dataset_options={image_size: 8}",
             "model=resnet8_small", "batch_size=16", "many_threshold=20", "few_threshold=5", "threads=1",
             "download=null"]  # the demo asks torchvision to download Fashion-MNIST; the synthetic set needs nothing


@pytest.mark.slow  # ~15 s: 8 tiny runs
def test_demo_end_to_end_reuses_finished_runs_and_refuses_other_settings(tmp_path, capsys):
    out = tmp_path / "demo"
    args = dict(seeds=[0, 1], epochs=2, configs=str(REPO / "configs/fashion_mnist_lt"), overrides=SYNTHETIC)
    summary = run_demo(str(out), **args)
    assert list(summary) == ["CE (softmax)", "Balanced Softmax, end-to-end", "Balanced Softmax, decoupled",
                             "BALMS (BS + Meta Sampler)"]
    for stem, label in (("ce", "CE (softmax)"), ("balms", "BALMS (BS + Meta Sampler)")):
        overall = [json.loads((out / f"{stem}_s{s}" / "metrics.json").read_text())["test"]["mean_class"] for s in (0, 1)]
        assert abs(summary[label]["mean_class"]["mean"] - 100 * sum(overall) / 2) < 1e-9
    for stem in ("decoupled_balanced_softmax", "balms"):  # stage 2 starts from the CE run of the same seed
        for s in (0, 1):
            assert yaml.safe_load((out / f"{stem}_s{s}" / "config.yaml").read_text())["init_from"] == f"{out}/ce_s{s}"
    md = (out / "results.md").read_text()
    assert "| BALMS (BS + Meta Sampler) |" in md and "| method | ECE |" in md
    assert (out / "per_class_accuracy.png").stat().st_size > 10_000 and (out / "results.json").is_file()

    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/metrics.json")}
    capsys.readouterr()
    assert run_demo(str(out), **args) == summary  # nothing retrained
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/metrics.json")} == stamps
    assert capsys.readouterr().out.count("finished earlier with the same settings") == 8

    with pytest.raises(ConfigError, match=r"ce_s0 was made with other settings \(epochs: 2 -> 3\)"):
        run_demo(str(out), **dict(args, epochs=3))
    assert main(["demo", "--output-dir", str(out), "--seeds", "0", "--epochs", "3", "--configs", args["configs"],
                 *SYNTHETIC]) == 2  # the CLI says so and exits 2
