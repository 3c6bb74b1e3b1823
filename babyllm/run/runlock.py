"""One owner per run directory: an OS lock (fcntl.flock) on ``RUN_DIR/train.lock`` naming pid and host.

Taken by whoever trains (``babyllm train``, the cockpit's Tutor, torchrun's rank 0) for as long as it
trains; viewers, chat and sample never take it. The kernel drops a flock when its holder dies (even by
kill -9), so a stale lock file never blocks: only a live holder does.
"""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from babyllm.errors import BabyError
from babyllm.run.runfiles import LOCK_FILE


class RunLocked(BabyError):
    """Another live process is training this run directory."""


class LockFileGone(BabyError):
    """The lock was taken on a lock file no longer in the run directory (it was removed meanwhile)."""


class RunLock:
    """An exclusive, non-blocking lock on one run directory (release() or process exit drops it)."""

    def __init__(self, run_dir: Path) -> None:
        self.path = Path(run_dir) / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> RunLock:
        try:  # (never through a link: the lock is the run directory's own file)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0), 0o644)
        except OSError as e:
            raise BabyError(f"{self.path}: cannot create the run's lock file ({e.strerror}); "
                            "check the run directory is writable") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = _read_holder(fd)
            os.close(fd)
            raise RunLocked(f"{self.path.parent}: already being trained by {holder}; "
                            "stop that one first, or watch it with --watch") from None
        if not _still_there(fd, self.path):  # a failed start removed the directory while this one locked it
            os.close(fd)
            raise LockFileGone(f"{self.path}: removed while it was being locked")
        try:  # name the holder (best effort: a full disk must not stop the lock itself from working)
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        except OSError:
            pass
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing drops the flock; the file stays (it names no one once unlocked)
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _still_there(fd: int, path: Path) -> bool:
    try:
        here, locked = os.stat(path, follow_symlinks=False), os.fstat(fd)
    except OSError:
        return False
    return (here.st_dev, here.st_ino) == (locked.st_dev, locked.st_ino)


def _read_holder(fd: int) -> str:
    try:
        text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
    except OSError:
        text = ""
    return text or "another process (pid unknown)"


def check_free(run_dir: Path) -> None:
    """Raise RunLocked if a live process trains `run_dir` now (a look only: nothing is created or kept)."""
    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return  # no lock file (or unreadable): nobody we can name; acquire() is the real test
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            raise RunLocked(f"{path.parent}: already being trained by {_read_holder(fd)}; "
                            "stop that one first, or watch it with --watch") from None
    finally:
        os.close(fd)
