"""One run directory, one process; --overwrite never loses the old run."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers.runs import LONGTAIL, read_metrics, subprocess_env, tiny_args  # noqa: E402
from longtail.engine.run_dir import LOCK, REPLACED, RunDirectory, RunDirError, RunDirInUseError

FILES = ("checkpoint.pt", "best.pt", "metrics.json", "config.yaml", "tb")


def digest(run_dir: Path) -> dict[str, str]:
    return {name: hashlib.sha256((run_dir / name).read_bytes()).hexdigest()
            for name in ("checkpoint.pt", "best.pt", "metrics.json")}


def fake_run(path: Path) -> None:
    path.mkdir(parents=True)
    for name in FILES[:-1]:
        (path / name).write_text(f"old {name}")
    (path / "tb").mkdir()
    (path / "tb" / "events").write_text("old events")


def test_a_second_holder_is_refused_with_the_holders_pid(tmp_path):
    first = RunDirectory(tmp_path / "run", FILES, "checkpoint.pt")
    assert first.acquire() is None
    with pytest.raises(RunDirInUseError, match=r"in use by another run \(pid \d+ on .*started"):
        RunDirectory(tmp_path / "run", FILES, "checkpoint.pt").acquire()
    first.release()
    again = RunDirectory(tmp_path / "run", FILES, "checkpoint.pt")
    assert again.acquire() is None  # released: free again, and no stale note
    again.release()


def test_a_lock_left_by_a_killed_process_is_reported_not_blocking(tmp_path):
    run = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", "import sys\nfrom longtail.engine.run_dir import RunDirectory\n"
                             f"RunDirectory({str(run)!r}, (), 'c').acquire()\nprint('held', flush=True)\n"
                             "import time\ntime.sleep(60)"], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    with pytest.raises(RunDirInUseError, match=f"pid {proc.pid}"):
        RunDirectory(run, (), "c").acquire()
    proc.kill()  # kill -9: the kernel drops the flock, the file stays
    proc.wait()
    assert json.loads((run / LOCK).read_text())["state"] == "running"
    note = RunDirectory(run, (), "c").acquire()
    assert note is not None and f"pid {proc.pid}" in note and "killed?" in note


def test_existing_run_needs_resume_or_overwrite(tmp_path):
    fake_run(tmp_path / "run")
    d = RunDirectory(tmp_path / "run", FILES, "checkpoint.pt")
    d.acquire()
    with pytest.raises(RunDirError, match="already holds a run. Pass --resume"):
        d.prepare(resume=False, overwrite=False)
    assert d.prepare(resume=True, overwrite=False) is True


def test_overwrite_moves_aside_then_commit_deletes(tmp_path):
    run = tmp_path / "run"
    fake_run(run)
    d = RunDirectory(run, FILES, "checkpoint.pt")
    d.acquire()
    assert d.prepare(resume=False, overwrite=True) is False
    assert not (run / "checkpoint.pt").exists() and (run / REPLACED / "checkpoint.pt").read_text() == "old checkpoint.pt"
    (run / "checkpoint.pt").write_text("new")
    d.commit()
    assert not (run / REPLACED).exists() and (run / "checkpoint.pt").read_text() == "new"


def test_overwrite_rolls_back_on_failure_and_after_a_kill(tmp_path):
    run = tmp_path / "run"
    fake_run(run)
    d = RunDirectory(run, FILES, "checkpoint.pt")
    d.acquire()
    d.prepare(resume=False, overwrite=True)
    (run / "config.yaml").write_text("new config")  # the new run got as far as its config
    d.rollback()
    assert all((run / n).read_text() == f"old {n}" for n in FILES[:-1]) and (run / "tb" / "events").exists()
    d.release()
    # killed between moving aside and the first checkpoint: the next prepare restores the old run
    d = RunDirectory(run, FILES, "checkpoint.pt")
    d.acquire()
    d.prepare(resume=False, overwrite=True)
    d.release()  # no rollback: as if killed
    d2 = RunDirectory(run, FILES, "checkpoint.pt")
    d2.acquire()
    assert d2.prepare(resume=True, overwrite=False) is True
    assert (run / "checkpoint.pt").read_text() == "old checkpoint.pt" and not (run / REPLACED).exists()


def test_overwrite_with_a_failing_config_keeps_the_old_run(tmp_path):
    from longtail.cli.main import main

    assert main(["train", *tiny_args(tmp_path, "keep"), "--quiet"]) == 0
    before = digest(tmp_path / "keep")
    # fails validation (data): nothing is touched
    assert main(["train", *tiny_args(tmp_path, "keep", "imbalance_factor=0"), "--overwrite", "--quiet"]) == 2
    assert digest(tmp_path / "keep") == before
    # fails in training before its first checkpoint (diverges in epoch 1): the old run comes back
    assert main(["train", *tiny_args(tmp_path, "keep", "lr=1e30"), "--overwrite", "--quiet"]) == 2
    assert digest(tmp_path / "keep") == before and not (tmp_path / "keep" / REPLACED).exists()
    # a good overwrite replaces it
    assert main(["train", *tiny_args(tmp_path, "keep", "seed=1"), "--overwrite", "--quiet"]) == 0
    assert read_metrics(tmp_path / "keep")["seed"] == 1 and not (tmp_path / REPLACED).exists()


def test_a_run_that_fails_validation_creates_no_run_directory(tmp_path):
    from longtail.cli.main import main

    assert main(["train", *tiny_args(tmp_path, "never", "loss=no_such_loss"), "--quiet"]) == 2
    assert main(["train", *tiny_args(tmp_path, "never2", "imbalance_factor=0"), "--quiet"]) == 2
    assert not (tmp_path / "never").exists() and not (tmp_path / "never2").exists()


def test_two_concurrent_trainings_into_one_directory(tmp_path):
    """The issue's reproduction: the second command stops at once, naming the first, whose config and
    metrics stay its own."""
    args = tiny_args(tmp_path, "same", "epochs=2000")  # long enough to still run when the second one starts
    first = subprocess.Popen([LONGTAIL, "train", *args, "seed=0", "--quiet"], env=subprocess_env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while not (tmp_path / "same" / "checkpoint.pt").exists():  # the first run is training
        assert first.poll() is None and time.time() < deadline, first.communicate()
        time.sleep(0.2)
    second = subprocess.run([LONGTAIL, "train", *tiny_args(tmp_path, "same", "epochs=2"), "seed=1", "lr=0.01"],
                            capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert second.returncode == 2
    assert f"pid {first.pid}" in " ".join(second.stderr.split()) and "in use by another run" in second.stderr
    assert first.poll() is None
    first.kill()
    first.communicate()
    metrics = read_metrics(tmp_path / "same")
    assert metrics["seed"] == 0 and metrics["epochs"] == 2000 and "seed: 0" in (tmp_path / "same" / "config.yaml").read_text()
    # the killed run left a stale lock: --resume takes over, reporting it
    resumed = subprocess.run([LONGTAIL, "train", *args, "seed=0", "epochs=2000", "--resume", "max_grad_norm=1"],
                             capture_output=True, text=True, env=subprocess_env(), timeout=120)
    assert resumed.returncode == 2 and "changed config" in resumed.stderr  # refused for the config, not the lock
