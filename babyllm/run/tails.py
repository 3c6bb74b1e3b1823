"""Reading a file another process appends to, read-only: each look returns the new complete lines (a torn last
line waits for its newline), and a file that shrinks, is replaced or rewritten in place is read again."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, NamedTuple

CHUNK = 4 << 20  # bytes read per file per look (a long file is caught up on over several looks)
MAX_LINE = 16 << 20  # a "line" longer than this (no newline in sight) is dropped as damaged
HEAD_BYTES = 256  # a file whose first bytes change was rewritten by a new run: read it again


class TailRead(NamedTuple):
    lines: list[bytes]  # new complete lines (without their newline)
    restarted: bool  # the file started over (truncated, replaced or rewritten): forget what it said
    more: bool  # there is more to read already (a long file is read CHUNK bytes per look)


class LineTail:
    """The new complete lines of a file another process appends to; opened read-only on every look.

    start_within: on the first look at a file longer than this, start that many bytes before its end
    (at the next line start): a long history is only partly needed.
    """

    def __init__(self, path: Path, start_within: int | None = None, chunk: int = CHUNK) -> None:
        self.path = Path(path)
        self.start_within = start_within
        self.chunk = chunk
        self.exists = False
        self.mtime: float | None = None  # of the last look that found the file
        self.skipped = 0  # bytes not read at the start of a long file
        self.dropped = 0  # over-long fragments dropped
        self._id: tuple[int, int] | None = None
        self._offset = 0
        self._buf = b""
        self._head = b""
        self._skip_partial = False

    def _reset(self) -> None:
        self._id, self._offset, self._buf, self._head, self._skip_partial = None, 0, b"", b"", False
        self.skipped = 0

    def _changed(self, fd: int, st: os.stat_result) -> bool:
        """Is the file at our path no longer the one read so far (replaced, truncated or rewritten)?"""
        return self._id is not None and ((st.st_dev, st.st_ino) != self._id or st.st_size < self._offset
                                         or (bool(self._head) and os.pread(fd, len(self._head), 0) != self._head))

    def read(self) -> TailRead:
        for attempt in range(2):  # a file that looks changed is looked at once more before starting over
            try:
                fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError:  # not there (yet, or any more), or unreadable: wait
                self.exists = False
                return TailRead([], False, False)
            try:
                changed = self._changed(fd, os.fstat(fd))
            except OSError:
                changed = True
            if not changed or attempt:
                break
            os.close(fd)
        try:
            st = os.fstat(fd)
            self.exists, self.mtime = True, st.st_mtime
            ident = (st.st_dev, st.st_ino)
            restarted = False
            if changed:
                self._reset()
                restarted = True
            if self._id is None:
                self._id = ident
                if self.start_within and st.st_size > self.start_within:
                    self._offset = self.skipped = st.st_size - self.start_within
                    self._skip_partial = os.pread(fd, 1, self._offset - 1) != b"\n"
            left = st.st_size - self._offset
            data = os.pread(fd, min(self.chunk, left), self._offset) if left > 0 else b""
            self._offset += len(data)
            if len(self._head) < HEAD_BYTES and self._offset > len(self._head):
                self._head = os.pread(fd, min(HEAD_BYTES, self._offset), 0)
            more = self._offset < st.st_size
        except OSError:
            return TailRead([], False, False)
        finally:
            os.close(fd)
        lines = (self._buf + data).split(b"\n")
        self._buf = lines.pop()  # the part after the last newline: a line still being written
        if len(self._buf) > MAX_LINE:
            self._buf = b""
            self.dropped += 1
        if self._skip_partial and lines:
            lines.pop(0)  # the tail of a line that started before where reading began
            self._skip_partial = False
        return TailRead([ln for ln in lines if ln.strip()], restarted, more)


class JsonlTail(LineTail):
    """LineTail of a JSON-lines file: each new line as a dict (damaged lines are counted and skipped)."""

    def __init__(self, path: Path, start_within: int | None = None, chunk: int = CHUNK) -> None:
        super().__init__(path, start_within, chunk)
        self.bad_lines = 0

    def records(self) -> tuple[list[dict[str, Any]], bool, bool]:
        """(new records, restarted, more) -- see TailRead."""
        got = self.read()
        out = []
        for line in got.lines:
            try:
                rec = json.loads(line)
            except ValueError:  # half a line from a crash, or not JSON at all
                self.bad_lines += 1
                continue
            if isinstance(rec, dict):
                out.append(rec)
            else:
                self.bad_lines += 1
        return out, got.restarted, got.more
