"""The small interface between the Tutor and whoever watches it (the cockpit, the headless printer, tests).

The Tutor publishes immutable Snapshots (at most a few per second) and keeps thread-safe bounded
History series; readers never touch the model or the Tutor's internals, and the Tutor never waits
on a reader.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol, runtime_checkable

from babyllm import stats
from babyllm.events import EventKind
from babyllm.stats import REGISTRY

State = Literal["starting", "running", "paused", "alarm", "stopping", "stopped", "finished", "error",
                "waiting", "idle"]  # the last two: a follower's (no step yet; no new step for a while)


@dataclass(frozen=True)
class Event:
    """Something worth a line in the event log: a save, a checkpoint, a validation result, an alarm."""

    step: int
    kind: EventKind
    message: str
    time: float = field(default_factory=time.time)
    said: bool = False  # told the user as it happened (the Tutor's `say`, e.g. a corpus's bad row): not again


@dataclass(frozen=True)
class Sample:
    """The latest guess-versus-truth sample: per position, the model's argmax guess and the true next token."""

    step: int
    context: str  # the text the guesses were made on
    guesses: tuple[str, ...]
    truths: tuple[str, ...]

    @property
    def matches(self) -> tuple[bool, ...]:
        return tuple(g == t for g, t in zip(self.guesses, self.truths, strict=False))  # ragged if damaged


@dataclass(frozen=True)
class Corpus:
    """What the run trains on: where the text came from and how many tokens each split has."""

    root: str
    train_tokens: int
    val_tokens: int


@dataclass(frozen=True)
class Snapshot:
    """What the Tutor looks like right now: state, the latest stats, the latest sample, recent events.

    Its fields are the wire format too (babyllm.socket.wire derives it from them); every field has a
    default: what a reader takes a snapshot that does not say to mean."""

    step: int = 0
    tokens: int = 0
    state: State = "idle"
    stats: dict[str, float] = field(default_factory=dict)
    max_steps: int = 0  # 0 = no limit
    sample: Sample | None = None
    events: tuple[Event, ...] = ()  # the most recent events, oldest first
    event_count: int = 0  # total events so far, so a reader can tell which ones are new
    history_events: int = 0  # the first this many of event_count were read back from the run's log (a resume)
    error: str | None = None  # the message when state is "error" or "alarm"
    device: str = ""
    config_name: str = ""
    run_dir: str = ""
    dtype: str = ""
    params: int = 0  # the model's parameter count (0: not known, e.g. a follower)
    corpus: Corpus | None = None
    best_val: float = math.inf  # the lowest validation loss so far, and its step
    best_val_step: int = 0
    last_save_step: int | None = None
    last_save_path: str | None = None
    last_save_error: str | None = None  # why the latest save failed (None once one succeeds)
    system: dict[str, float] = field(default_factory=dict)  # the training process's resources (babyllm.system)
    overrides: dict[str, object] = field(default_factory=dict)  # live changes (babyllm.live): key -> value now
    settings: dict[str, object] = field(default_factory=dict)  # every live setting's value now (key -> value)
    # each memory gate's histogram: neurons per bin over [0, 1] (stats.GATE_BINS), keyed as its mean's stat
    # (mem1_gate_short, ...); refreshed with the slow stats; empty where unknown (a follower)
    gate_hist: dict[str, tuple[int, ...]] = field(default_factory=dict)
    global_batch: int = 0  # sequences an optimizer step trains on (batch x accumulate x ranks); 0: not known


Publish = Callable[[Snapshot], None]  # takes each new Snapshot (the cockpit's, the endpoint's); must return at once
Say = Callable[[str], None]  # takes a line of text: for the user (a notice, a warning, a failed write) or a log


class History:
    """Bounded, thread-safe series of (step, value) per stat name, with downsampling for plots."""

    # Stats that change only at a validation: kept only where they change, so the series is the validations
    # themselves and "best @step" is a validation step. Counters: thinned to each bucket's last value.
    STEPWISE = REGISTRY.where(lambda s: s.changes == stats.STEPWISE)
    CUMULATIVE = REGISTRY.where(lambda s: s.changes == stats.CUMULATIVE)

    def __init__(self, maxlen: int = 20_000) -> None:
        self._maxlen = maxlen
        self._series: dict[str, deque[tuple[int, float]]] = {}
        self._lock = threading.Lock()

    def add(self, step: int, values: dict[str, float]) -> None:
        with self._lock:
            for name, v in values.items():
                series = self._series.get(name)
                if series is None:
                    series = self._series[name] = deque(maxlen=self._maxlen)
                elif name in self.STEPWISE and series and _same(series[-1][1], v):
                    continue
                series.append((step, v))

    def clear(self) -> None:
        """Forget every series (the run's metrics log started over)."""
        with self._lock:
            self._series.clear()

    def rewind(self, step: int) -> None:
        """Drop every point at `step` or later (a rollback or resume went back before it)."""
        with self._lock:
            for series in self._series.values():
                while series and series[-1][0] >= step:
                    series.pop()

    def rows(self, last: int) -> list[dict[str, float]]:
        """The last `last` steps as one stats dict each, oldest first (to prime a reader's own windows)."""
        with self._lock:
            merged: dict[int, dict[str, float]] = {}
            for name, series in self._series.items():
                for step, v in list(series)[-last:]:
                    merged.setdefault(step, {})[name] = v
        return [merged[s] for s in sorted(merged)[-last:]]

    def points(self, max_points: int | None = None) -> dict[str, list[tuple[int, float]]]:
        """Every stat's (step, value) points, oldest first; thinned as series() does when max_points is given."""
        if max_points is None:
            with self._lock:
                return {name: list(series) for name, series in self._series.items()}
        return {name: list(zip(*self.series(name, max_points), strict=True)) for name in self.names()}

    def names(self) -> list[str]:
        with self._lock:
            return list(self._series)

    def series(self, name: str, max_points: int = 1000) -> tuple[list[int], list[float]]:
        """(steps, values) for a stat, thinned to at most max_points by averaging neighbouring points."""
        with self._lock:
            points = list(self._series.get(name, ()))
        return thin(points, max_points, last=name in self.CUMULATIVE)


def thin(points: Sequence[tuple[int, float]], max_points: int, last: bool = False) -> tuple[list[int], list[float]]:
    """(steps, values) of at most max_points: each the mean of neighbouring points (with `last`: the last
    one's value), at the last one's step."""
    if not points:
        return [], []
    stride = -(-len(points) // max(1, max_points))  # ceil: buckets of `stride` points each
    ends = [min(i + stride, len(points)) - 1 for i in range(0, len(points), stride)]
    steps = [points[e][0] for e in ends]
    if last:
        return steps, [points[e][1] for e in ends]
    buckets = [points[i : i + stride] for i in range(0, len(points), stride)]
    return steps, [sum(v for _, v in b) / len(b) for b in buckets]


def _same(a: float, b: float) -> bool:
    return a == b or (a != a and b != b)  # nan == nan here: a run not yet validated stays one point


class ChatSession(Protocol):
    """A conversation with the run's model, as the chat pane uses it (babyllm.infer2.Infer2 is one)."""

    notices: list[str]  # things to tell the user (a trimmed prompt, a reloaded save), taken as shown
    @property
    def hit_limit(self) -> bool: ...  # whether the last reply stopped at its token limit

    def stream(self, prompt: str) -> Iterator[str]: ...

    def command(self, line: str) -> str: ...


class TutorControl(Protocol):
    """What a viewer may ask of a Tutor (or a follower); every call but run() returns at once (requests are queued)."""

    history: History

    def snapshot(self) -> Snapshot: ...

    def chat_session(self) -> ChatSession: ...

    def run(self) -> State: ...  # in the caller's worker thread: train (or follow) until stopped

    # The control ops, as typed methods: babyllm.control's op table (Controls) names and implements them, and
    # a test checks these are its methods. `by` names who asked (the cockpit, "ctl (pid 123)" over the
    # control socket); the run's event names it.
    def pause(self, by: str = ...) -> None: ...

    def resume(self, by: str = ...) -> None: ...

    def request_save(self, by: str = ...) -> None: ...

    def request_checkpoint(self, by: str = ...) -> None: ...

    def rollback(self, by: str = ...) -> None: ...

    def stop(self, by: str = ...) -> None: ...

    def debug_log(self, text: str) -> None: ...  # a line for the run's debug.log (the UI's own faults)


@runtime_checkable
class LiveSettings(Protocol):
    """A control that can change settings mid-run (the Tutor; babyllm.live lists which)."""

    # Queues (key, the text after --set KEY=) pairs, applied together; raises ConfigError at once, queueing
    # none, when one cannot be.
    def set_settings(self, items: Sequence[tuple[str, str]], by: str = ...) -> None: ...
