"""Checkpoints: atomic writes, weights_only reads, clear errors."""

import pytest
import torch

from longtail.engine import CheckpointError, load_checkpoint, save_checkpoint


class Unpicklable:
    def __reduce__(self):
        raise RuntimeError("disk full (simulated)")


class Custom:
    pass


def test_round_trip(tmp_path):
    state = {"model": {"w": torch.arange(3.0)}, "epoch": 2, "best": {"score": float("-inf")}, "history": [{"a": 1}]}
    save_checkpoint(state, tmp_path / "c.pt")
    loaded = load_checkpoint(tmp_path / "c.pt")
    assert torch.equal(loaded["model"]["w"], state["model"]["w"]) and loaded["epoch"] == 2
    assert loaded["best"]["score"] == float("-inf")


def test_a_failed_write_leaves_the_previous_checkpoint(tmp_path):
    path = tmp_path / "c.pt"
    save_checkpoint({"epoch": 1}, path)
    before = path.read_bytes()
    with pytest.raises(RuntimeError, match="disk full"):
        save_checkpoint({"epoch": 2, "bad": Unpicklable()}, path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"], "no temporary file left behind"


def test_pickled_objects_are_refused_and_corrupt_files_explained(tmp_path):
    torch.save({"obj": Custom()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="holds Python objects besides tensors") as info:
        load_checkpoint(tmp_path / "evil.pt")
    assert "weights_only=False" not in str(info.value)  # torch's advice would run the file's code
    (tmp_path / "half.pt").write_bytes(b"PK\x03\x04 truncated")
    with pytest.raises(CheckpointError, match="not a readable checkpoint .* damaged or not a torch checkpoint"):
        load_checkpoint(tmp_path / "half.pt")
    with pytest.raises(CheckpointError, match="is a directory"):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="no checkpoint at"):
        load_checkpoint(tmp_path / "missing.pt")
