"""Bad input and hostile files give one clear line and exit 2, never run code, never lose work."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from helpers.runs import tiny_args, toy_detection_config
from longtail.cli.main import main

REPO = Path(__file__).parents[2]


class Payload:
    """Unpickling this runs ``touch <marker>``: a checkpoint that must never be loaded."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def malicious(path: Path, marker: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {}, "epoch": 1, "evil": Payload(marker)}, path)
    return path


def err_of(capsys) -> str:
    return " ".join(capsys.readouterr().err.split())


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    assert main(["train", *tiny_args(out, "ce"), "--quiet"]) == 0
    return out / "ce"


def assert_refused_safely(code: int, err: str, marker: Path) -> None:
    assert code == 2, err
    assert not marker.exists(), "the pickle payload ran"
    assert "weights_only=False" not in err and "holds Python objects" in err
    assert "Traceback" not in err


def test_malicious_checkpoints_are_refused_at_every_entry_point(tmp_path, finished, capsys):
    import shutil

    marker = tmp_path / "pwned"
    evil = malicious(tmp_path / "evil.pt", marker)
    # stage-2 init_from
    assert_refused_safely(main(["train", *tiny_args(tmp_path, "s2", f"init_from={evil}", "allow_split_mismatch=true"),
                                "--quiet"]), err_of(capsys), marker)
    # --resume, eval and posthoc of a run whose checkpoint / best.pt were replaced
    run = tmp_path / "victim"
    shutil.copytree(finished, run)
    malicious(run / "checkpoint.pt", marker)
    malicious(run / "best.pt", marker)
    assert_refused_safely(main(["train", *tiny_args(tmp_path, "victim"), "--resume", "--quiet"]), err_of(capsys), marker)
    assert_refused_safely(main(["eval", str(run)]), err_of(capsys), marker)
    assert_refused_safely(main(["posthoc", str(REPO / "configs/fashion_mnist_lt/tau_norm.yaml"), f"from_run={run}",
                                f"output_dir={tmp_path}", "name=ph"]), err_of(capsys), marker)
    # a model's pretrained weights
    assert_refused_safely(main(["train", *tiny_args(tmp_path, "pre", "model=resnet18",
                                                    f"model_options={{pretrained_path: {evil}}}"), "--quiet"]),
                          err_of(capsys), marker)


@pytest.mark.slow
def test_malicious_and_missing_detection_weights(tmp_path, capsys):
    config = toy_detection_config(tmp_path)
    marker = tmp_path / "pwned"
    evil = malicious(tmp_path / "evil.pt", marker)
    assert_refused_safely(main(["detect", "train", str(config), f"init_from={evil}", "--quiet"]), err_of(capsys), marker)
    assert main(["detect", "train", str(config), f"init_from={tmp_path / 'nope.pt'}", "--quiet"]) == 2
    err = err_of(capsys)
    assert "does not exist" in err and "Errno" not in err
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(b"PK\x03\x04 not really a zip")
    assert main(["detect", "train", str(config), f"init_from={damaged}", "--quiet"]) == 2
    assert "not a readable checkpoint" in err_of(capsys)


def test_a_truncated_checkpoint_says_damaged_not_resume(tmp_path, finished, capsys):
    import shutil

    run = tmp_path / "cut"
    shutil.copytree(finished, run)
    data = (run / "best.pt").read_bytes()
    (run / "best.pt").write_bytes(data[: len(data) // 2])
    assert main(["eval", str(run)]) == 2
    err = err_of(capsys)
    assert "not a readable checkpoint" in err and "damaged" in err and "resume from the run directory" not in err


@pytest.mark.parametrize("extra, message", [
    (["epochs=-1"], "epochs must be >= 1, got -1"),
    (["warmup_epochs=5"], "warmup_epochs must lie in [0, epochs = 2], got 5.0"),
    (["lr=fast"], "the command-line override lr=...: lr must be float"),
    # YAML reads a misspelt boolean as a string, which Python would take as true
    (["dataset=fashion_mnist_lt", "dataset_options={batched: flase}"], "batched: 'flase' must be true or false"),
    # YAML reads {presampled:true} as the key 'presampled:true' with no value: it used to pass as "keep the default"
    (["dataset_options={noise:30}"], "does not take option(s) ['noise:30']"),
    (["dataset_options={noise:30}"], "put a space after the colon, {noise: 30}"),
    (["dataset_options={nosie: 30}"], "does not take option(s) ['nosie']"),
])
def test_bad_values_name_their_source_and_leave_no_run_directory(tmp_path, capsys, extra, message):
    assert main(["train", *tiny_args(tmp_path, "bad", *extra), "--quiet"]) == 2
    assert message in err_of(capsys)
    assert not (tmp_path / "bad").exists()


def test_a_wrong_type_in_the_yaml_file_names_the_file(tmp_path, capsys):
    config = tmp_path / "c.yaml"
    config.write_text("epochs: many\n")
    assert main(["train", str(config)]) == 2
    assert f"{config}: epochs must be int" in err_of(capsys)


def test_a_directory_given_as_config(capsys):
    assert main(["train", str(REPO / "configs/fashion_mnist_lt")]) == 2
    assert "is a directory; give a YAML file in it" in err_of(capsys)


def test_truncated_and_duplicate_detection_jsons_name_the_file_and_ids(tmp_path):
    from longtail.detection.lvis import LvisDetection

    path = tmp_path / "train.json"
    images = [{"id": 7, "file_name": "a.png", "height": 8, "width": 8}, {"id": 7, "file_name": "b.png", "height": 8, "width": 8}]
    path.write_text(json.dumps({"images": images, "annotations": [], "categories": [{"id": 1, "name": "x"}]}))
    with pytest.raises(ValueError, match=f"{path} lists 1 duplicate image id\\(s\\): \\[7\\]"):
        LvisDetection(path, tmp_path, check_images=False, counts_from="annotations")
    path.write_text(path.read_text()[:40])
    with pytest.raises(ValueError, match=f"{path} is not valid JSON .* may be truncated"):
        LvisDetection(path, tmp_path, check_images=False)


def test_a_mistyped_fashion_mnist_root_is_not_created(tmp_path, capsys):
    typo = tmp_path / "dat" / "fmnist"
    assert main(["train", str(REPO / "configs/fashion_mnist_lt/ce.yaml"), f"data_root={typo}", f"output_dir={tmp_path}",
                 "epochs=1"]) == 2
    assert f"data_root {typo} does not exist" in err_of(capsys)
    assert not typo.exists() and not (tmp_path / "dat").exists()


def test_help_list_keys_and_config_errors_answer_before_torch_is_imported():
    """torch and torchvision take 3-4 s to import; `--help`, `--list-keys` and a bad config path or key need neither."""
    import subprocess
    import sys

    from helpers.runs import subprocess_env

    code = ("import sys, contextlib, io\n"
            "from longtail.cli.main import main\n"
            "with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):\n"
            "    codes = [main(['train', '--list-keys']), main(['train', 'no_such.yaml']),\n"
            "             main(['train', 'dataset=x', 'lr=fast']), main(['posthoc', 'no_such.yaml']),\n"
            "             main(['detect', 'train', '--list-keys'])]\n"
            "print(codes, 'torch' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert out.stdout.split() == ["[0,", "2,", "2,", "2,", "0]", "False"], out.stdout + out.stderr


def test_the_expected_error_classes_exist_where_the_command_line_looks_for_them():
    import importlib

    from longtail.cli.main import EXPECTED_ERRORS

    for module, names in EXPECTED_ERRORS.items():
        for name in names:
            assert issubclass(getattr(importlib.import_module(module), name), Exception), f"{module}.{name}"
