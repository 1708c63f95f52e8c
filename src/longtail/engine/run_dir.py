"""A run directory that belongs to one process at a time, and an --overwrite that cannot lose work.

**Lock.** ``RunDirectory.acquire`` takes an exclusive ``flock`` on ``RUN/.lock`` and writes who holds it
(pid, host, command, start time). A second process gets :class:`RunDirInUseError` naming the holder. The
kernel drops the lock when its process dies, even by ``kill -9``, so a killed run never blocks the next
one: the leftover file is recognised as stale (its pid is gone) and reported.

**Overwrite.** ``prepare(overwrite=True)`` moves the old run's files into ``RUN/.replaced/`` instead of
deleting them; ``commit()`` deletes them once the new run has written its first checkpoint, and
``rollback()`` puts them back if the new run fails before that. A run killed in between is rolled back
by the next ``prepare`` of that directory, so the old run is never lost to a failed replacement.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import socket
import sys
import time
from pathlib import Path
from typing import Callable

from . import distributed as dist_utils

LOCK, REPLACED = ".lock", ".replaced"


class RunDirInUseError(RuntimeError):
    """Another live process holds the run directory."""


class RunDirError(ValueError):
    """The run directory cannot be used as asked (e.g. it holds a run and neither resume nor overwrite
    was given)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class RunDirectory:
    """``path``: the run directory; ``run_files``: the names (files or folders) a run writes there,
    moved aside by an overwrite; ``checkpoint``: the file whose presence means a resumable run."""

    def __init__(self, path: str | Path, run_files: tuple[str, ...], checkpoint: str) -> None:
        self.path = Path(path)
        self.run_files = run_files
        self.checkpoint = checkpoint
        self._fd: int | None = None
        self._replacing = False

    # --- lock ---------------------------------------------------------------------------------------
    def acquire(self) -> str | None:
        """Lock the directory (creating it). Returns a note when a stale lock of a dead process was
        found, raises RunDirInUseError when a live process holds it."""
        self.path.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = self._describe(self._read_holder(fd))
            os.close(fd)
            raise RunDirInUseError(
                f"{self.path} is in use by another run ({holder}). Two runs in one directory would overwrite each "
                f"other's checkpoints and metrics: wait for it to finish, stop it, or give this run another "
                f"name=... / output_dir=...") from None
        previous = self._read_holder(fd)
        note = None
        if previous.get("state") == "running" and not (previous.get("host") == socket.gethostname()
                                                       and _pid_alive(int(previous.get("pid", -1)))):
            note = (f"{self.path}: the previous run ({self._describe(previous)}) stopped without releasing the "
                    "directory (killed?); its last checkpoint is what --resume continues from")
        self._fd = fd
        self._write_holder({"pid": os.getpid(), "host": socket.gethostname(), "state": "running",
                            "command": " ".join(sys.argv), "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
        return note

    def release(self) -> None:
        if self._fd is None:
            return
        try:
            self._write_holder({"pid": os.getpid(), "host": socket.gethostname(), "state": "released",
                                "released": time.strftime("%Y-%m-%dT%H:%M:%S")})
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        finally:
            os.close(self._fd)
            self._fd = None

    def live_holder(self) -> dict | None:
        """Who holds the directory now (pid, host, command, start), read without touching the lock, or None
        when no live process does. A process on another host sharing the folder counts as live."""
        try:
            info = json.loads((self.path / LOCK).read_text() or "{}")
        except (OSError, ValueError):
            return None
        if info.get("state") != "running":
            return None
        if info.get("host") == socket.gethostname() and not _pid_alive(int(info.get("pid", -1))):
            return None  # killed without releasing: a stale lock
        return info

    def __enter__(self) -> "RunDirectory":
        return self

    def __exit__(self, *exc) -> None:
        self.release()

    @staticmethod
    def _read_holder(fd: int) -> dict:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            return json.loads(os.read(fd, 65536).decode() or "{}")
        except (OSError, ValueError):
            return {}

    def _write_holder(self, info: dict) -> None:
        data = json.dumps(info).encode()
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, data, 0)

    @staticmethod
    def _describe(info: dict) -> str:
        if not info:
            return "holder unknown"
        return (f"pid {info.get('pid')} on {info.get('host')}, started {info.get('started', '?')}: "
                f"{info.get('command', '?')}")

    # --- resume / overwrite -------------------------------------------------------------------------
    def prepare(self, *, resume: bool, overwrite: bool) -> bool:
        """Call with the lock held. Returns True when there is a checkpoint to resume from."""
        self._rollback_interrupted()
        has_run = (self.path / self.checkpoint).exists()
        if has_run and not (resume or overwrite):
            raise RunDirError(f"{self.path} already holds a run. Pass --resume to continue it, --overwrite to start "
                              "again from scratch, or name=... to use another directory.")
        if overwrite:
            present = [name for name in self.run_files if (self.path / name).exists()]
            if present:
                aside = self.path / REPLACED
                aside.mkdir()
                for name in present:
                    os.replace(self.path / name, aside / name)
                self._replacing = True
            return False
        return resume and has_run

    def commit(self) -> None:
        """The new run has written its first checkpoint: the replaced run can go."""
        if self._replacing:
            shutil.rmtree(self.path / REPLACED, ignore_errors=True)
            self._replacing = False

    def rollback(self) -> None:
        """The new run failed before its first checkpoint: put the replaced run back."""
        if self._replacing:
            self._restore()
            self._replacing = False

    def _rollback_interrupted(self) -> None:
        if (self.path / REPLACED).is_dir():
            if (self.path / self.checkpoint).exists():  # the replacement got as far as a checkpoint
                shutil.rmtree(self.path / REPLACED)
            else:
                self._restore()

    def _restore(self) -> None:
        aside = self.path / REPLACED
        for item in aside.iterdir():
            target = self.path / item.name
            if target.is_dir():
                shutil.rmtree(target)
            elif target.exists():
                target.unlink()
            os.replace(item, target)
        aside.rmdir()


@contextlib.contextmanager
def claimed_run_dir(directory: RunDirectory, info: dist_utils.DistInfo, *, resume: bool, overwrite: bool,
                    warn: Callable[[str], None] = lambda note: None):
    """Hold the run directory for the body of the ``with``: lock it and prepare it for a new or resumed run
    (rank 0; the other ranks learn the outcome, so a refusal stops every rank), yield True when there is a
    checkpoint to resume from; if the body fails, a replaced run comes back (``rollback``); the lock is
    released at the end either way. ``warn`` gets the note about a stale lock of a killed run."""
    outcome: tuple[bool, Exception | None] = (False, None)
    if info.is_main:
        try:
            note = directory.acquire()
            if note:
                warn(note)
            outcome = (directory.prepare(resume=resume, overwrite=overwrite), None)
        except (RunDirInUseError, RunDirError) as err:
            directory.release()
            outcome = (False, err)
    can_resume, error = dist_utils.broadcast_object(outcome)
    if error is not None:
        raise error
    try:
        yield can_resume
    except BaseException:
        if info.is_main:
            directory.rollback()  # a failed --overwrite before its first checkpoint gives the old run back
        raise
    finally:
        if info.is_main:
            directory.release()
