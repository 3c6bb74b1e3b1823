"""COUNSELLOR: diagnostics: timing of named sections and a debug log."""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Self, TypeVar

from babyllm.stats import TIMING_PREFIX

F = TypeVar("F", bound=Callable[..., Any])


class _NoOpSection:
    """Stateless do-nothing context manager, shared so a disabled section allocates nothing."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


_NO_OP = _NoOpSection()


class _Section:
    """Times one entry into a named section and reports it to its Counsellor."""

    __slots__ = ("_name", "_owner", "_start")

    def __init__(self, owner: Counsellor, name: str) -> None:
        self._owner = owner
        self._name = name
        self._start = 0.0

    def __enter__(self) -> None:
        sync = self._owner.sync
        if sync is not None:
            sync()  # wait for queued GPU work so it is not billed to this section
        self._start = time.perf_counter()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is not None:
            return  # a failed section's time means nothing; don't sync on a possibly broken GPU
        sync = self._owner.sync
        if sync is not None:
            sync()
        self._owner._record(self._name, (time.perf_counter() - self._start) * 1000.0)


class Counsellor:
    """Times named sections (EMA milliseconds, keyed ``t_<name>``) and writes a debug log.

    Timings: each completed entry into a section updates an exponential moving average
    ``ema = ema + alpha * (ms - ema)``; the first sample after construction or ``reset()`` sets it
    directly. A section left by an exception is not recorded. Sections may nest; each is timed on
    its own (an outer section includes its inner ones). Disabled: ``section`` returns a shared
    no-op and nothing is recorded. The debug log is independent of ``enabled``: it writes whenever
    ``log_path`` is set. Timing updates and logging are guarded by one lock, so the Tutor thread
    and the UI thread may both use one instance.
    """

    def __init__(self, enabled: bool = True, log_path: Path | str | None = None,
                 sync: Callable[[], None] | None = None, alpha: float = 0.1) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError(f"alpha must be in (0, 1], got {alpha}")
        self.enabled = enabled
        self.log_path = Path(log_path) if log_path is not None else None
        self.sync = sync
        self.alpha = alpha
        self._ema: dict[str, float] = {}
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()
        self._log_file: IO[str] | None = None

    # -- timing ------------------------------------------------------------------------------

    def section(self, name: str) -> _Section | _NoOpSection:
        """Context manager timing the ``with`` body as section ``name``."""
        if not self.enabled:
            return _NO_OP
        return _Section(self, name)

    def timed(self, name: str) -> Callable[[F], F]:
        """Decorator timing each call as section ``name`` (``enabled`` is checked per call)."""
        def decorate(fn: F) -> F:
            @functools.wraps(fn)
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                with self.section(name):
                    return fn(*args, **kwargs)
            return wrapper  # type: ignore[return-value]
        return decorate

    def _record(self, name: str, ms: float) -> None:
        key = TIMING_PREFIX + name
        with self._lock:
            old = self._ema.get(key)
            self._ema[key] = ms if old is None else old + self.alpha * (ms - old)
            self._counts[key] = self._counts.get(key, 0) + 1

    def timings(self) -> dict[str, float]:
        """EMA milliseconds per section, keyed ``t_<name>`` (a copy, ready for the stats dict)."""
        with self._lock:
            return dict(self._ema)

    def counts(self) -> dict[str, int]:
        """How many times each section completed since construction or ``reset()``."""
        with self._lock:
            return dict(self._counts)

    def reset(self) -> None:
        """Forget all timings."""
        with self._lock:
            self._ema.clear()
            self._counts.clear()

    # -- debug log ---------------------------------------------------------------------------

    def log(self, msg: str) -> None:
        """Append a timestamped line to the debug log (no-op without ``log_path``)."""
        if self.log_path is None:
            return
        stamp = datetime.now().isoformat(sep=" ", timespec="milliseconds")
        line = f"{stamp} [{threading.current_thread().name}] {msg}\n"
        with self._lock:
            try:
                if self._log_file is None:
                    self.log_path.parent.mkdir(parents=True, exist_ok=True)
                    # Line-buffered so a crash still leaves every logged line on disk.
                    self._log_file = open(  # noqa: SIM115 - kept open until close()
                        self.log_path, "a", buffering=1, encoding="utf-8")
                self._log_file.write(line)
            except OSError:  # a full disk or read-only folder: the debug log is best effort, never fatal
                self._drop_file()

    def _drop_file(self) -> None:
        if self._log_file is not None:
            with contextlib.suppress(OSError):
                self._log_file.close()
            self._log_file = None

    def close(self) -> None:
        """Close the debug log; a later ``log`` reopens it in append mode."""
        with self._lock:
            self._drop_file()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def cuda_sync(device: Any) -> Callable[[], None] | None:
    """``torch.cuda.synchronize`` bound to ``device`` if it is a CUDA device, else None."""
    import torch  # lazily: the Counsellor itself must not need torch

    dev = torch.device(device)
    if dev.type != "cuda":
        return None
    return functools.partial(torch.cuda.synchronize, dev)
