"""RunWriter: the Tutor's records appended to the run's logs (metrics.jsonl, events.jsonl, samples.jsonl) and
handed to its mirrors (babyllm.run.mirrors); the records' shapes are babyllm.run.runfiles's."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import IO, Literal

from babyllm.errors import BabyError
from babyllm.run.mirrors import Mirrors
from babyllm.run.runfiles import (
    EVENTS_FILE,
    METRICS_FILE,
    SAMPLES_FILE,
    event_record,
    metrics_record,
    rollback_record,
    sample_record,
)
from babyllm.safefile import cut_torn_line, writable_log
from babyllm.snapshot import Event, Sample


def open_log(path: Path, mode: str) -> IO[str]:
    """Open a JSON-lines log for appending ("a") or afresh ("w"); a torn last line (a crash or a full disk
    mid-write) is cut first, so the next line never glues onto it. Failure is one line naming the file."""
    try:
        if writable_log(path) and mode == "a":
            cut_torn_line(path)
        return open(path, mode, encoding="utf-8")  # noqa: SIM115 - kept open until close()
    except OSError as e:
        raise BabyError(f"{path}: cannot open for writing ({e.strerror or e}); free space or fix permissions "
                        "(the run's saves are intact)") from None


LogName = Literal["metrics", "events", "samples"]
_FILES: Mapping[LogName, str] = MappingProxyType(
    {"metrics": METRICS_FILE, "events": EVENTS_FILE, "samples": SAMPLES_FILE})


@dataclass
class RunWriter:
    """Appends the Tutor's records to its logs (a failed write drops that log: see _write) and hands them to
    `mirrors` (which handle their own failures)."""

    run_dir: Path
    failed: Callable[[str, OSError], None]
    flush_every: float = 1.0  # seconds between flushes of metrics.jsonl (events and samples are flushed at once)
    mirrors: Mirrors = field(default_factory=lambda: Mirrors(lambda _message: None))
    _files: dict[LogName, IO[str] | None] = field(default_factory=dict)
    _last_flush: float = field(default_factory=time.monotonic)

    def open(self, mode: str, only: tuple[LogName, ...] = ("metrics", "events", "samples")) -> None:
        for name in only:
            self._files[name] = open_log(Path(self.run_dir) / _FILES[name], mode)

    def metrics(self, stats: dict[str, float], system: dict[str, float] | None = None) -> None:
        """One step's stats, and the machine's readings when given (every few seconds)."""
        flush = time.monotonic() - self._last_flush >= self.flush_every
        self.mirrors.add(stats)
        if system:
            self.mirrors.system(int(stats["step"]), system)
        self._write("metrics", json.dumps(metrics_record(stats, system=system)) + "\n", flush)

    def sample(self, sample: Sample) -> None:
        self.mirrors.sample(sample)
        self._write("samples", json.dumps(sample_record(sample)) + "\n", flush=True)

    def rollback(self, step: int) -> None:
        """Every step logged after `step` is discarded: a marker in metrics.jsonl and samples.jsonl."""
        self.mirrors.restart(step)
        marker = json.dumps(rollback_record(step)) + "\n"
        self._write("metrics", marker, flush=True)
        self._write("samples", marker, flush=True)

    def event(self, ev: Event) -> None:
        self._write("events", json.dumps(event_record(ev)) + "\n", flush=True)
        self.flush()

    def flush(self, sync: bool = False) -> None:
        """Flush metrics.jsonl now (an event or a state change: a follower should see the steps before it);
        `sync`: onto the disk too (before a save: a step saved is a step logged, whatever kills the process)."""
        self._write("metrics", "", flush=True, sync=sync)

    def reopen(self) -> list[str]:
        """Reopen any log that failed (once the user has freed space); the errors of those that still fail."""
        errors = []
        for name in _FILES:
            if name in self._files and self._files[name] is None:
                try:
                    self.open("a", (name,))
                except BabyError as e:
                    errors.append(str(e))
        return errors

    def close(self) -> None:
        self.mirrors.close()
        for f in self._files.values():
            if f is not None and not f.closed:
                with contextlib.suppress(OSError):  # a full disk at the very end: the saves are intact
                    f.close()  # (flushes)
        self._files = {name: None for name in self._files}

    def _write(self, name: LogName, text: str, flush: bool, sync: bool = False) -> None:
        """Write and/or flush one log; an OSError (a full disk) drops it and calls `failed(file name, error)`."""
        f = self._files.get(name)
        if f is None:
            return
        try:
            if text:
                f.write(text)
            if flush:
                f.flush()
                if sync:
                    os.fsync(f.fileno())
                if name == "metrics":
                    self._last_flush = time.monotonic()
                    self.mirrors.flush()
        except OSError as e:
            self._files[name] = None
            with contextlib.suppress(OSError):
                f.close()
            self.failed(_FILES[name], e)
