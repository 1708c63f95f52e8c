"""benchmarks/step_time.py runs and prints both losses' step times and their ratio (tiny settings)."""

import runpy
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "step_time.py"


def test_step_time_benchmark_smoke(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", [str(SCRIPT), "--batch-size", "4", "--rounds", "2", "--steps", "1",
                                      "--warmup", "1", "--device", "cpu", "--threads", "1"])
    threads = torch.get_num_threads()
    try:
        runpy.run_path(str(SCRIPT), run_name="__main__")
    finally:
        torch.set_num_threads(threads)  # the script sets it process-wide
    out = capsys.readouterr().out
    assert "ResNet-32, batch 4 x 3x32x32, 100 classes" in out
    assert out.count("Balanced Softmax") == 2 and out.count("cross-entropy") == 2
    assert "ratio BS / CE (wall clock)" in out and "ratio BS / CE (process CPU time)" in out
