"""Mirrors: other homes for a run's records (TensorBoard, Weights & Biases, Trackio), behind one small interface.

RunWriter (babyllm.run.writer) hands what it writes into the run directory to its Mirrors as well: each
step's stats, the steps a rollback or a resume discarded, the guess-versus-truth samples and the machine's
readings; it flushes them with metrics.jsonl and closes them at the end. A tracker is one module with an
``open_mirror(start, failed) -> Mirror`` function, one row of TRACKERS and its switch in ``[log]``
(babyllm.config.LogConfig): an MLflow mirror would be one more file and one more row.

A tracker's package is imported only when its switch is on; a missing one is a one-line error naming the pip
extra, before training starts. A tracker that fails later (its method raises) is closed and dropped with
one "error" event, and training goes on: metrics.jsonl still has every step.
"""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import math
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from babyllm.config import LogConfig
from babyllm.errors import BabyError, ConfigError
from babyllm.snapshot import Sample, Say
from babyllm.stats import REGISTRY, STEPWISE


@dataclass(frozen=True)
class Start:
    """What a mirror is told when training starts: a new run, or a resume continuing from `step`."""

    run_dir: Path
    name: str  # the run directory's name: trackers name and group their runs by it
    project: str  # [log] project
    step: int  # the step this start continues from (0: a new run)
    config: dict[str, Any]  # the run's config (every section) and how it runs ("run": device, dtype, versions)


class Mirror:
    """One tracker's end of a run. Every method does nothing by default: an adapter implements what its tracker
    takes. ``where`` says where the records go (said once, as an "info" event, when training starts)."""

    where: str = ""

    def add(self, stats: dict[str, float]) -> None:
        """One step's stats (every step; values may be nan)."""

    def restart(self, step: int) -> None:
        """Every step logged after `step` was discarded (a rollback, or a resume from an older save)."""

    def sample(self, sample: Sample) -> None:
        """A guess-versus-truth sample (every train.sample_every steps)."""

    def system(self, step: int, readings: dict[str, float]) -> None:
        """The machine's readings at `step` (babyllm.system's keys; every few seconds)."""

    def flush(self) -> None:
        """Write what is buffered (with metrics.jsonl, about once a second)."""

    def close(self) -> None:
        """The run's end (or this start's): finish the tracker's run."""


class Mirrors:
    """The fan-out RunWriter calls: each call goes to every mirror; one that raises is closed and dropped, and
    `failed` hears one line naming it."""

    def __init__(self, failed: Say) -> None:
        self._failed = failed
        self._mirrors: list[tuple[str, Mirror]] = []

    def attach(self, name: str, mirror: Mirror) -> None:
        self._mirrors.append((name, mirror))

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self._mirrors]

    def add(self, stats: dict[str, float]) -> None:
        self._each(lambda m: m.add(stats))

    def restart(self, step: int) -> None:
        self._each(lambda m: m.restart(step))

    def sample(self, sample: Sample) -> None:
        self._each(lambda m: m.sample(sample))

    def system(self, step: int, readings: dict[str, float]) -> None:
        self._each(lambda m: m.system(step, readings))

    def flush(self) -> None:
        self._each(lambda m: m.flush())

    def close(self) -> None:
        self._each(lambda m: m.close())
        self._mirrors = []

    def _each(self, call: Callable[[Mirror], None]) -> None:
        for name, mirror in list(self._mirrors):
            try:
                call(mirror)
            except Exception as e:  # noqa: BLE001 - a tracker's fault never stops training
                self._mirrors.remove((name, mirror))
                with contextlib.suppress(Exception):
                    mirror.close()
                self._failed(f"{name}: {type(e).__name__}: {str(e)[:200]}; logging to {name} is off for this run "
                             "(metrics.jsonl has every step)")


class Queued(Mirror):
    """A mirror whose calls run on a thread of its own, so a tracker's latency (W&B's log call took 5 ms a row
    beside a training step on a busy 2-core machine) never holds up a step. The queue is bounded: a tracker
    that falls MAX_QUEUED calls behind holds the steps up instead of losing rows. A call that raised is raised
    again at the next call from the training side, where Mirrors drops the mirror and says why."""

    def __init__(self, inner: Mirror, name: str) -> None:
        self.inner, self.where = inner, inner.where
        self._calls: queue.Queue[Callable[[], None] | None] = queue.Queue(MAX_QUEUED)
        self._error: Exception | None = None
        self._closed = False
        self._thread = threading.Thread(target=self._work, name=f"mirror-{name}", daemon=True)
        self._thread.start()

    def _work(self) -> None:
        while (call := self._calls.get()) is not None:
            if self._error is None:
                try:
                    call()
                except Exception as e:  # noqa: BLE001 - handed to the training side (see _put)
                    self._error = e

    def _put(self, call: Callable[[], None]) -> None:
        if self._error is not None:
            raise self._error
        self._calls.put(call)

    def add(self, stats: dict[str, float]) -> None:
        row = dict(stats)
        self._put(lambda: self.inner.add(row))

    def restart(self, step: int) -> None:
        self._put(lambda: self.inner.restart(step))

    def sample(self, sample: Sample) -> None:
        self._put(lambda: self.inner.sample(sample))

    def system(self, step: int, readings: dict[str, float]) -> None:
        got = dict(readings)
        self._put(lambda: self.inner.system(step, got))

    def flush(self) -> None:
        self._put(self.inner.flush)

    def close(self) -> None:
        """What is queued is sent first (at most CLOSE_WAIT_S), then the tracker's run is finished (once)."""
        if self._closed:
            return
        self._closed = True
        self._calls.put(None)
        self._thread.join(CLOSE_WAIT_S)
        self.inner.close()
        if self._error is not None:
            raise self._error


MAX_QUEUED = 10_000  # calls a tracker's thread may fall behind
CLOSE_WAIT_S = 60.0


# --- the trackers ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tracker:
    """One row of TRACKERS: a tracker's [log] switch, its adapter module, the package it needs and its extra."""

    key: str  # its switch in [log] (a LogConfig field)
    module: str  # the adapter: a module with open_mirror(start: Start, failed: Say) -> Mirror
    package: str | None  # the top-level module it imports (None: nothing beyond babyllm's own dependencies)
    extra: str  # the pip extra that installs it
    queued: bool = True  # its calls run on a thread of its own (Queued); False: cheap enough for the step's


TRACKERS: tuple[Tracker, ...] = (
    Tracker("tensorboard", "babyllm.run.tboard", None, "tensorboard", queued=False),  # (buffers, writes per flush)
    Tracker("wandb", "babyllm.run.wandb_mirror", "wandb", "wandb"),
    Tracker("trackio", "babyllm.run.trackio_mirror", "trackio", "trackio"),
)


def switched_on(log: LogConfig) -> list[Tracker]:
    return [t for t in TRACKERS if getattr(log, t.key)]


def check_installed(log: LogConfig) -> None:
    """A one-line error for a tracker switched on whose package is missing (found without importing it)."""
    for t in switched_on(log):
        if t.package is not None and importlib.util.find_spec(t.package) is None:
            raise ConfigError(f"log.{t.key} = true needs the {t.package} package: pip install "
                              f"\"babyllm-tui[{t.extra}]\" (with pipx: pipx inject babyllm-tui {t.package}), "
                              f"or set log.{t.key} = false")


def open_mirrors(log: LogConfig, start: Start, mirrors: Mirrors, failed: Say) -> list[str]:
    """Attach every tracker switched on to `mirrors`; where each one logs. A user's mistake (a missing package,
    not logged in) raises a one-line BabyError; a tracker that fails to start otherwise is one `failed` line."""
    check_installed(log)
    where = []
    for t in switched_on(log):
        try:
            opener: Callable[[Start, Say], Mirror] = importlib.import_module(t.module).open_mirror
            mirror = opener(start, failed)
        except BabyError:
            raise
        except Exception as e:  # noqa: BLE001 - e.g. a tracker's server out of reach: train without it
            failed(f"{t.key}: did not start ({type(e).__name__}: {str(e)[:200]}); training goes on without it "
                   "(metrics.jsonl has every step)")
            continue
        mirrors.attach(t.key, Queued(mirror, t.key) if t.queued else mirror)
        if mirror.where:
            where.append(f"{t.key}: {mirror.where}")
    return where


# --- what trackers are sent -----------------------------------------------------------------------

_STEPWISE = frozenset(REGISTRY.where(lambda s: s.changes == STEPWISE))


class Rows:
    """A step's stats as a tracker's row: finite values only, and the stats that change only at a validation
    (the registry's STEPWISE: val_loss, val_bpb, ...) only where they change, so their points are the
    validations themselves (TensorBoard's mirror does the same)."""

    def __init__(self) -> None:
        self._last: dict[str, float] = {}

    def row(self, stats: dict[str, float]) -> dict[str, float]:
        out = {}
        for k, v in stats.items():
            if not math.isfinite(v):
                continue
            if k in _STEPWISE:
                if self._last.get(k) == v:
                    continue
                self._last[k] = v
            out[k] = v
        return out

    def forget(self) -> None:
        """After a rollback: the next validation is logged even if it repeats a value."""
        self._last.clear()


def sample_text(sample: Sample) -> dict[str, Any]:
    """A sample as a table row: its text, the true next tokens and the guesses (each joined), how many were right."""
    right = sum(sample.matches)
    return {"step": sample.step, "text": sample.context, "truth": "".join(sample.truths),
            "guess": "".join(sample.guesses), "right": right, "of": len(sample.truths)}


SAMPLE_COLUMNS = ("step", "text", "truth", "guess", "right", "of")
SYSTEM_PREFIX = "system/"  # the machine's readings as trackers' keys: system/cpu_percent, system/gpu_temp_c ...
