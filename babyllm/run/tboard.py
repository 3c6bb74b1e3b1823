"""TensorBoard event files without TensorBoard: `[log] tensorboard = true` writes runs/NAME/tensorboard/.

An event file is a TFRecord file: each record is its length (uint64, little-endian), the masked CRC-32C
of those 8 bytes, the data, and the data's masked CRC-32C. The data is one `Event` protobuf, encoded
here by hand (no dependency): wall_time (double, field 1), step (int64, field 2), then either
file_version (string, field 3: "brain.Event:2", the first record), a Summary (field 5) whose values
(field 1) are {tag (string, 1), simple_value (float, 2)}, or a SessionLog (field 7) with status START
(field 1 = 1). A START at step S tells TensorBoard (purge_orphaned_data, its default) to drop what it
read at steps >= S: written where a resume or rollback continues, so the discarded branch disappears.

This is one of the run's mirrors (babyllm.run.mirrors): records are buffered and written when the metrics
log flushes (RunWriter); the machine's readings go in as ``system/<key>`` scalars. A failed write drops the
file (one event says so) and training goes on. Nothing here imports torch.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import struct
import time
from pathlib import Path
from typing import IO

from babyllm.run.mirrors import SYSTEM_PREFIX, Mirror, Start
from babyllm.run.runfiles import TENSORBOARD
from babyllm.snapshot import Say
from babyllm.stats import REGISTRY, STEPWISE

FILE_VERSION = b"brain.Event:2"
# The stats the registry marks for TensorBoard: written every step, or (stepwise) only where they change.
EVERY_STEP: tuple[str, ...] = REGISTRY.where(lambda s: s.tensorboard and s.changes != STEPWISE)
ON_CHANGE: tuple[str, ...] = REGISTRY.where(lambda s: s.tensorboard and s.changes == STEPWISE)
SESSION_START = 1  # SessionLog.status START


def _crc_table() -> tuple[int, ...]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1  # CRC-32C (Castagnoli), reflected
        table.append(c)
    return tuple(table)


_CRC_TABLE = _crc_table()


def crc32c(data: bytes) -> int:
    """The CRC-32C of `data` (table-driven: records are tens of bytes)."""
    crc = 0xFFFFFFFF
    table = _CRC_TABLE
    for b in data:
        crc = table[(crc ^ b) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


def masked_crc(data: bytes) -> int:
    """TFRecord's masked CRC (so a CRC stored inside checked data does not look like one)."""
    crc = crc32c(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def record(data: bytes) -> bytes:
    """One TFRecord: length, its masked CRC, the data, the data's masked CRC."""
    length = struct.pack("<Q", len(data))
    return length + struct.pack("<I", masked_crc(length)) + data + struct.pack("<I", masked_crc(data))


# --- protobuf, by hand (varint, 64-bit and length-delimited fields) ------------------------------


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1  # negative int64s are ten bytes of two's complement
    out = bytearray()
    while True:
        low, n = n & 0x7F, n >> 7
        if n:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _bytes_field(field: int, data: bytes) -> bytes:
    return _key(field, 2) + _varint(len(data)) + data


def event(wall_time: float, step: int, *, file_version: bytes | None = None,
          values: dict[str, float] | None = None, session_start: bool = False) -> bytes:
    """An Event message: a file version, a summary of scalars, or a SessionLog START."""
    out = _key(1, 1) + struct.pack("<d", wall_time) + _key(2, 0) + _varint(step)
    if file_version is not None:
        out += _bytes_field(3, file_version)
    if values:
        summary = b"".join(
            _bytes_field(1, _bytes_field(1, tag.encode()) + _key(2, 5) + struct.pack("<f", v))
            for tag, v in values.items())
        out += _bytes_field(5, summary)
    if session_start:
        out += _bytes_field(7, _key(1, 0) + _varint(SESSION_START))
    return out


def event_file_name(when: float | None = None) -> str:
    """events.out.tfevents.<seconds>.<host>.<pid> (TensorBoard finds files by the 'tfevents' in the name)."""
    return f"events.out.tfevents.{int(time.time() if when is None else when):010d}.{socket.gethostname()}.{os.getpid()}"


def open_mirror(start: Start, failed: Say) -> EventWriter:
    """`[log] tensorboard = true`: this start's event file (the tracker's entry in babyllm.run.mirrors)."""
    return EventWriter(start.run_dir, start.step, failed)


class EventWriter(Mirror):
    """Appends the run's scalars to one event file; `failed(reason)` hears of a write that failed (then it stops).

    Opened at `start_step` (the step a resumed run continues from: a SessionLog START there, after 0).
    """

    def __init__(self, run_dir: Path, start_step: int, failed: Say) -> None:
        self._failed = failed
        self._pending: list[bytes] = []
        self._last: dict[str, float] = {}
        self._file: IO[bytes] | None = None
        self._started: int | None = None  # the step of the last START written, until a step is added
        folder = Path(run_dir) / TENSORBOARD
        self.path = folder / event_file_name()
        try:
            folder.mkdir(exist_ok=True)
            self._file = open(self.path, "ab")  # noqa: SIM115 - kept open until close()
        except OSError as e:
            self._drop(e)
            return
        self.where = str(self.path)
        self._pending.append(record(event(time.time(), 0, file_version=FILE_VERSION)))
        if start_step:
            self.restart(start_step)
        self.flush()

    @property
    def active(self) -> bool:
        return self._file is not None

    def add(self, stats: dict[str, float]) -> None:
        """Buffer one step's scalars (written at the next flush)."""
        if self._file is None:
            return
        values = {k: stats[k] for k in EVERY_STEP if k in stats and math.isfinite(stats[k])}
        for k in ON_CHANGE:
            v = stats.get(k, math.nan)
            if math.isfinite(v) and self._last.get(k) != v:
                values[k] = self._last[k] = v
        if values:
            self._pending.append(record(event(time.time(), int(stats["step"]), values=values)))
        self._started = None

    def system(self, step: int, readings: dict[str, float]) -> None:
        values = {SYSTEM_PREFIX + k: v for k, v in readings.items() if math.isfinite(v)}
        if self._file is not None and values:
            self._pending.append(record(event(time.time(), step, values=values)))

    def restart(self, step: int) -> None:
        """Everything logged after `step` was discarded (a resume or a rollback): TensorBoard purges it."""
        if self._file is None or self._started == step:  # (said already: this file's start at a resume)
            return
        self._started = step
        self._pending.append(record(event(time.time(), step + 1, session_start=True)))

    def flush(self) -> None:
        if self._file is None or not self._pending:
            return
        data, self._pending = b"".join(self._pending), []
        try:
            self._file.write(data)
            self._file.flush()
        except OSError as e:
            self._drop(e)

    def close(self) -> None:
        self.flush()
        if self._file is not None:
            with contextlib.suppress(OSError):
                self._file.close()
            self._file = None

    def _drop(self, e: OSError) -> None:
        f, self._file = self._file, None
        self._pending = []
        if f is not None:
            with contextlib.suppress(OSError):
                f.close()
        where = e.filename or self.path  # (the folder, when it is what could not be made)
        self._failed(f"{where}: cannot write ({e.strerror or e}); TensorBoard logging is off for this "
                     "run (metrics.jsonl has every step)")
