"""Reading and mending a run's files safely: never more than a bound, never through a link out of the run,
never a device or a FIFO. A 2 GB sparse file or a link to /dev/zero is then one line, not an out-of-memory kill."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from babyllm.errors import BabyError, CheckpointError


class Refused(CheckpointError):
    """A file of a run that is not read: a link out of the run directory, not a regular file, or larger than a
    file of its kind can be (`why`, without the path)."""

    def __init__(self, path: Path, why: str) -> None:
        super().__init__(f"{path}: {why}")
        self.path, self.why = Path(path), why


def open_checked(path: Path, root: Path | None = None) -> tuple[int, int]:
    """(a read-only descriptor, the size) of `path`, a regular file inside `root` (default: its own folder)
    once links are followed. Refused for anything else (a link out of the run, /dev/zero, a FIFO: nothing
    unbounded is ever read); FileNotFoundError or another OSError as the system says."""
    path = Path(path)
    real = path.resolve(strict=True)
    inside = Path(root if root is not None else path.parent).resolve()
    if not real.is_relative_to(inside):
        raise Refused(path, f"a link out of the run directory (to {real}); refused, not read")
    fd = os.open(real, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Refused(path, "not a regular file; refused, not read")
    except BaseException:
        os.close(fd)
        raise
    return fd, st.st_size


def read_bounded(path: Path, limit: int, root: Path | None = None, what: str = "") -> bytes:
    """The whole of `path` (see open_checked), refused before reading if it holds more than `limit` bytes."""
    fd, size = open_checked(path, root)
    try:
        if size > limit:
            raise Refused(path, f"{size:,} bytes, more than {what or 'a ' + Path(path).name} can hold "
                                f"({limit:,}); not read")
        chunks, got = [], 0
        while got <= limit and (chunk := os.read(fd, min(1 << 20, limit + 1 - got))):
            chunks.append(chunk)
            got += len(chunk)
    finally:
        os.close(fd)
    if got > limit:  # it grew while being read
        raise Refused(path, f"grew past {limit:,} bytes while being read; not read")
    return b"".join(chunks)


def read_tail(path: Path, offset: int, tail_bytes: int) -> tuple[bytes, int]:
    """(the bytes after `offset`, at most the last `tail_bytes` of them; the file's size), read through
    open_checked: a link out of the run or a device is refused (CheckpointError), never read without end."""
    fd, size = open_checked(path)
    try:
        start = max(offset, size - tail_bytes, 0)
        return os.pread(fd, max(0, size - start), start), size
    finally:
        os.close(fd)


def cut_torn_line(path: Path, chunk: int = 1 << 16) -> None:
    """Cut a log's last line if it has no newline, looking back from the end a chunk at a time (never the
    whole file)."""
    with open(path, "rb+") as fh:
        end = fh.seek(0, 2)
        pos = end
        while pos > 0:
            start = max(0, pos - chunk)
            fh.seek(start)
            data = fh.read(pos - start)
            if pos == end and data.endswith(b"\n"):
                return
            cut = data.rfind(b"\n")
            if cut >= 0:
                fh.truncate(start + cut + 1)
                return
            pos = start
        fh.truncate(0)


def writable_log(path: Path) -> bool:
    """Whether a log exists to append to; BabyError if what is there is no regular file of the run (a link,
    a device): writing through it could truncate or fill something else."""
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise BabyError(f"{path}: not a regular file (a link or a device); move it away so the run can write its "
                        "own (the run's saves are intact)")
    return path.exists()
