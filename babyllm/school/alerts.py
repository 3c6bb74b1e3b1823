"""Alerts: rules that watch a run's stats and say when something needs a look (the `[alerts]` config).

RULES is the one table: each rule's name, what it watches (every step's stats, each validation, or the
clock), its config keys (the first is its threshold: 0 turns the rule off) and its message. `Alerts` is
pure (no torch, no UI): fed the stats, it returns the alerts to raise. A rule fires once when its
condition starts to hold and re-arms only once it has cleared, so a condition gives one alert, not one
per step. The Tutor raises each as an "alert" event (headless, the viewer and the cockpit show events),
pauses or stops the run as `alerts.action` says, and runs `alerts.command` with the text (Commands: each in a
process group of its own, killed at its timeout and at the run's end, only a bounded tail of its stderr kept).

Stall is the clock's rule: a stuck step cannot notice itself, so the Tutor's watchdog thread asks
`Alerts.clock` how long the loop has gone without a step.
"""

from __future__ import annotations

import contextlib
import math
import os
import select
import shlex
import signal
import statistics
import subprocess
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from babyllm.config import AlertsConfig
from babyllm.snapshot import Say

Watches = Literal["step", "val", "clock"]
COMMAND_ENV = "BABYLLM_ALERT"  # the alert text, for a command that reads it from the environment
WARMUP_WINDOWS = 5  # throughput: this many windows of steps before its median counts


class Detector(Protocol):
    """One rule's state: fed its input, the message's values while the condition holds, else None."""

    def update(self, value: Any) -> dict[str, float] | None: ...


@dataclass(frozen=True)
class Alert:
    rule: str
    step: int
    message: str


class Divergence:
    """The mean loss of the last N steps is X% above the lowest N-step mean so far."""

    def __init__(self, a: AlertsConfig) -> None:
        self.limit, self.n = a.divergence_pct, a.divergence_steps
        self.window: deque[float] = deque(maxlen=self.n)
        self.total = 0.0
        self.best = math.inf

    def update(self, stats: dict[str, float]) -> dict[str, float] | None:
        loss = stats.get("loss", math.nan)
        if not math.isfinite(loss):
            return None  # (a NaN step is the Tutor's alarm, not an alert)
        if len(self.window) == self.n:
            self.total -= self.window[0]
        self.window.append(loss)
        self.total += loss
        if len(self.window) < self.n:
            return None
        mean = self.total / self.n
        self.best = min(self.best, mean)
        up = (mean / self.best - 1.0) * 100.0 if self.best > 0 else 0.0
        return {"mean": mean, "best": self.best, "up": up} if up > self.limit else None


class Plateau:
    """No new best validation loss for K evaluations."""

    def __init__(self, a: AlertsConfig) -> None:
        self.k = a.plateau_evals
        self.best, self.since = math.inf, 0

    def update(self, val: tuple[float, float]) -> dict[str, float] | None:
        loss = val[0]
        if loss < self.best:
            self.best, self.since = loss, 0
            return None
        self.since += 1
        return {"since": self.since, "best": self.best} if self.since >= self.k else None


class Overfit:
    """Validation minus training loss above G, and larger at each of the last K evaluations."""

    def __init__(self, a: AlertsConfig) -> None:
        self.gap, self.k = a.overfit_gap, a.overfit_evals
        self.gaps: deque[float] = deque(maxlen=self.k + 1)

    def update(self, val: tuple[float, float]) -> dict[str, float] | None:
        gap = val[0] - val[1]
        if not math.isfinite(gap):
            return None
        self.gaps.append(gap)
        g = list(self.gaps)
        growing = len(g) == self.k + 1 and all(b > a for a, b in zip(g, g[1:], strict=False))
        return {"gap": gap, "was": g[0]} if gap > self.gap and growing else None


class Stall:
    """No training step for S seconds (fed the seconds since the last one; None while not watched)."""

    def __init__(self, a: AlertsConfig) -> None:
        self.limit = a.stall_seconds

    def update(self, seconds: float | None) -> dict[str, float] | None:
        return {"seconds": seconds} if seconds is not None and seconds >= self.limit else None


class Throughput:
    """Tokens/s (the median of the last N steps) below a fraction of its running median, after warm-up."""

    def __init__(self, a: AlertsConfig) -> None:
        self.drop, self.n = a.throughput_drop, a.throughput_steps
        self.recent: deque[float] = deque(maxlen=self.n)
        self.past: deque[float] = deque(maxlen=self.n * 50)  # the running median's steps (before the recent)
        self.usual = math.nan  # their median, recomputed every n steps (a sort per step would cost)
        self.seen = 0

    def update(self, stats: dict[str, float]) -> dict[str, float] | None:
        rate = stats.get("tokens_per_s", math.nan)
        if not math.isfinite(rate) or rate <= 0:
            return None
        if len(self.recent) == self.n:
            self.past.append(self.recent[0])
        self.recent.append(rate)
        self.seen += 1
        if len(self.past) < self.n * (WARMUP_WINDOWS - 1):
            return None
        if self.seen % self.n == 0 or not math.isfinite(self.usual):
            self.usual = statistics.median(self.past)
        now, usual = statistics.median(self.recent), self.usual
        return {"rate": now, "median": usual, "pct": 100.0 * now / usual} if now < self.drop * usual else None


@dataclass(frozen=True)
class Rule:
    name: str
    watches: Watches
    keys: tuple[str, ...]  # AlertsConfig fields; the first is the threshold (0 = the rule is off)
    detector: Callable[[AlertsConfig], Detector]
    message: str  # formatted with the detector's values and the config's fields


RULES: tuple[Rule, ...] = (
    Rule("divergence", "step", ("divergence_pct", "divergence_steps"), Divergence,
         "divergence: the loss (mean of the last {divergence_steps} steps) is {mean:.4f}, {up:.0f}% above "
         "its lowest {best:.4f} (alerts.divergence_pct = {divergence_pct:g})"),
    Rule("plateau", "val", ("plateau_evals",), Plateau,
         "plateau: no new best validation loss in {since:.0f} evaluations (best {best:.4f}; "
         "alerts.plateau_evals = {plateau_evals})"),
    Rule("overfit", "val", ("overfit_gap", "overfit_evals"), Overfit,
         "overfitting: validation minus training loss is {gap:.3f} (> alerts.overfit_gap = {overfit_gap:g}) "
         "and grew at each of the last {overfit_evals} evaluations (from {was:.3f})"),
    Rule("stall", "clock", ("stall_seconds",), Stall,
         "stall: no training step for {seconds:.1f} s (alerts.stall_seconds = {stall_seconds:g})"),
    Rule("throughput", "step", ("throughput_drop", "throughput_steps"), Throughput,
         "throughput drop: {rate:,.0f} tokens/s over the last {throughput_steps} steps is {pct:.0f}% of its "
         "median {median:,.0f} (alerts.throughput_drop = {throughput_drop:g})"),
)


class Alerts:
    """The rules that are on, each armed until it fires and re-armed once its condition clears.

    The training thread feeds step() and validation(); the watchdog thread feeds clock(): a lock keeps
    them apart."""

    def __init__(self, cfg: AlertsConfig) -> None:
        self.cfg = cfg
        self._rules = [(r, r.detector(cfg)) for r in RULES if getattr(cfg, r.keys[0])]
        self._fired: set[str] = set()
        self._lock = threading.Lock()

    @property
    def rules(self) -> list[str]:
        return [r.name for r, _ in self._rules]

    def step(self, step: int, stats: dict[str, float]) -> list[Alert]:
        return self._feed("step", step, stats)

    def validation(self, step: int, val_loss: float, train_loss: float) -> list[Alert]:
        return self._feed("val", step, (val_loss, train_loss))

    def clock(self, step: int, seconds: float | None) -> list[Alert]:
        """The seconds since the last step (None: not watched now, e.g. paused: a stall there clears)."""
        return self._feed("clock", step, seconds)

    def _feed(self, watches: Watches, step: int, value: Any) -> list[Alert]:
        out = []
        with self._lock:
            for rule, detector in self._rules:
                if rule.watches != watches:
                    continue
                values = detector.update(value)
                if values is None:
                    self._fired.discard(rule.name)  # cleared: armed again
                elif rule.name not in self._fired:
                    self._fired.add(rule.name)
                    text = rule.message.format(**values, **vars(self.cfg))
                    out.append(Alert(rule.name, step, text))
        return out


TAIL_BYTES = 4096  # of an alert command's stderr kept for its failure line (the rest is read and dropped)
CLOSE_GRACE_S = 5.0  # how long a run's end waits for an alert command still running before killing it


class Commands:
    """A run's alert commands. Each runs in a process group of its own, so whatever it forks is killed with it:
    at its timeout, and at the run's end (close) if still running then; of its stderr only a bounded tail is
    kept (a command that floods it costs nothing)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._groups: set[int] = set()  # process groups started and perhaps still alive
        self._threads: list[threading.Thread] = []

    def run(self, command: str, text: str, timeout: float, failed: Say) -> threading.Thread:
        """Run `command` (split as a shell would, never through one) with `text` as its last argument and in
        $BABYLLM_ALERT, in a background thread; `failed` hears one line if it cannot start, fails or times out."""
        thread = threading.Thread(target=self._go, args=([*shlex.split(command), text], text, timeout, failed),
                                  name="alert-command", daemon=True)
        with self._lock:
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
        thread.start()
        return thread

    def close(self, grace: float = CLOSE_GRACE_S) -> None:
        """The run ends: commands still running get `grace` seconds, then their process groups are killed."""
        deadline = time.monotonic() + grace
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with self._lock:
            groups, self._groups = set(self._groups), set()
        for group in groups:
            _kill_group(group)
        for thread in threads:
            thread.join(1.0)

    def _go(self, argv: list[str], text: str, timeout: float, failed: Say) -> None:
        name = argv[0]
        try:
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.PIPE, env={**os.environ, COMMAND_ENV: text},
                                    start_new_session=True)
        except OSError as e:
            failed(f"alerts.command {name!r} did not start: {e.strerror or e}")
            return
        with self._lock:
            self._groups.add(proc.pid)  # (a new session: its group's id is its pid)
        deadline = time.monotonic() + timeout
        assert proc.stderr is not None
        with proc.stderr:
            tail, finished = _read_tail(proc.stderr.fileno(), deadline)
        try:
            code = proc.wait(max(0.0, deadline - time.monotonic())) if finished else None
        except subprocess.TimeoutExpired:
            code = None
        if code is None:
            _kill_group(proc.pid)
            proc.wait()
            failed(f"alerts.command {name!r} killed after {timeout:g} s (alerts.command_timeout)")
        elif code != 0:
            last = tail.decode(errors="replace").strip().splitlines()[-1:] or [""]
            failed(f"alerts.command {name!r} exited {code}" + (f": {last[0][:200]}" if last[0] else ""))
        if not _group_alive(proc.pid):
            with self._lock:
                self._groups.discard(proc.pid)


def _read_tail(fd: int, deadline: float) -> tuple[bytes, bool]:
    """(the last TAIL_BYTES of what `fd` gives until its end, whether it ended before `deadline`)."""
    tail = b""
    while (left := deadline - time.monotonic()) > 0:
        if select.select([fd], [], [], min(left, 1.0))[0]:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                return tail, True
            tail = (tail + chunk)[-TAIL_BYTES:]
    return tail, False


def _kill_group(group: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, signal.SIGKILL)


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def run_command(command: str, text: str, timeout: float, failed: Say) -> threading.Thread:
    """One alert command, run as Commands.run runs it (without a run whose end would kill what is left)."""
    return Commands().run(command, text, timeout, failed)
