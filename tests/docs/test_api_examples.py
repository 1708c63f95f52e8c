"""Every Python example of docs/api.md runs as written (in a scratch folder), and prints what it says."""

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.fashion_mnist import fashion_mnist_root_or_skip
from helpers.runs import subprocess_env

API = Path(__file__).resolve().parents[2] / "docs" / "api.md"


def examples() -> dict[str, str]:
    """The ```python blocks of docs/api.md, keyed by the heading they sit under."""
    out, heading = {}, None
    for match in re.finditer(r"^## ([^\n]*)$|^```python\n(.*?)^```$", API.read_text(), flags=re.M | re.S):
        if match.group(1) is not None:
            heading = match.group(1).strip()
        else:
            out[heading] = match.group(2)
    return out


def run_example(code: str, folder: Path, *command: str) -> str:
    script = folder / "example.py"
    script.write_text(code)
    done = subprocess.run([*(command or (sys.executable,)), str(script)], cwd=folder, env=subprocess_env(),
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_the_documented_examples_are_found():
    assert len(examples()) == 6, list(examples())


def test_decoupled_balms_on_your_own_model(tmp_path):
    out = run_example(examples()["Decoupled BALMS stage 2 on your own model and data"], tmp_path)
    accuracy = float(re.search(r"val mean-class accuracy ([0-9.]+)", out).group(1))
    probability = json.loads(re.search(r"learned sampling probability (\[.*\])", out).group(1))
    assert accuracy > 0.5  # four separable clusters: the re-trained head learns them
    assert len(probability) == 4 and abs(sum(probability) - 1) < 1e-2


def test_mixing_with_a_long_tail_loss(tmp_path):
    out = run_example(examples()["Mixup, CutMix or ReMix with a long-tail loss in your own loop"], tmp_path)
    sums = json.loads(re.search(r"soft targets sum to (\[.*?\])", out).group(1))
    assert sums == [1.0, 1.0, 1.0] and float(out.split("loss")[-1]) > 0


def test_a_trained_run_in_your_own_code(tmp_path):
    out = run_example(examples()["A trained run in your own code, without its dataset"], tmp_path)
    found = re.search(r"classes (\[.*?\]) predicted (\S+) probability ([0-9.]+)", out)
    names = eval(found.group(1))
    assert len(names) == 6 and found.group(2) in names and 1 / 6 <= float(found.group(3)) <= 1


def test_your_own_sampler(tmp_path):
    """The subclass's class frequencies follow n_j^q with q = 1/2 at epoch 0 and q = 0.05 at epoch 9 of 10."""
    out = run_example(examples()["Your own sampler: a class distribution of your choice per epoch"], tmp_path)
    counts = [500, 50, 5]
    for epoch, q in ((0, 0.5), (9, 0.05)):
        measured = json.loads(re.search(rf"epoch {epoch} class frequencies (\[.*?\])", out).group(1))
        expected = [n ** q / sum(m ** q for m in counts) for n in counts]
        assert all(abs(a - b) < 0.02 for a, b in zip(measured, expected)), (epoch, measured, expected)


@pytest.mark.slow
def test_bags_on_a_torchvision_faster_rcnn(tmp_path):
    fashion_mnist_root_or_skip()  # the example generates its LVIS-style data from Fashion-MNIST
    out = run_example(examples()["BAGS on a torchvision Faster R-CNN, trained in your loop and evaluated with LVIS metrics"],
                      tmp_path)
    metrics = eval(out.strip().splitlines()[-1], {"nan": float("nan")})  # the printed dict of AP, APr, APc, APf
    assert set(metrics) == {"AP", "APr", "APc", "APf"}
    assert all(0 <= v <= 1 for v in metrics.values() if v == v)  # NaN: a frequency group without val objects


@pytest.mark.slow
@pytest.mark.ddp
def test_evaluate_detector_under_torchrun_equals_one_process(tmp_path):
    fashion_mnist_root_or_skip()
    code = examples()["`evaluate_detector` under torchrun"]
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    one = json.loads(run_example(code, tmp_path / "one").strip().splitlines()[-1])
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    two = json.loads(run_example(code, tmp_path / "two", *torchrun).strip().splitlines()[-1])
    assert one["world_size"] == 1 and two["world_size"] == 2
    assert two["detections"] == one["detections"] > 0  # every rank's share of the images reached rank 0
    assert two["bbox"] == pytest.approx(one["bbox"], abs=1e-9, nan_ok=True)
