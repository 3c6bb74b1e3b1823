"""One-line status bar under the header: state, step, loss, speed; turns into a red banner on an alarm."""

from __future__ import annotations

import time
from collections import deque
from typing import Callable

from rich.text import Text
from textual.widgets import Static

from babyllm.calligraphist import format_value
from babyllm.snapshot import Snapshot
from tui.widgets.timing import duration, eta_seconds

STATE_STYLES = {
    "starting": "bold yellow", "running": "bold green", "paused": "bold yellow", "alarm": "bold white on red",
    "stopping": "bold yellow", "stopped": "bold", "finished": "bold cyan", "error": "bold white on red",
}


RATE_SECONDS = 10.0  # the header's tok/s is the mean over this many seconds of wall time


class TokenRate:
    """Tokens per second over the last RATE_SECONDS of wall time (one step's rate swings 5x).

    Fed the snapshots' token counts; while training is paused the rate is None (not a stale number).
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._points: deque[tuple[float, int]] = deque()

    def observe(self, tokens: int) -> None:
        now = self._clock()
        if self._points and tokens < self._points[-1][1]:
            self._points.clear()  # a rollback: the count went back
        if not self._points or tokens != self._points[-1][1]:
            self._points.append((now, tokens))
        while len(self._points) > 2 and now - self._points[1][0] >= RATE_SECONDS:
            self._points.popleft()

    def reset(self) -> None:
        """Forget the past (training paused or resumed: the idle time is no one's rate)."""
        self._points.clear()

    def rate(self) -> float | None:
        if len(self._points) < 2:
            return None
        (t0, n0), (t1, n1) = self._points[0], self._points[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else None


class StatusBar(Static):
    """The line under the header: state, step, loss, speed, ETA, and a short note (a flash)."""

    DEFAULT_CSS = "StatusBar { height: 1; }"

    def show(self, snap: Snapshot | None, note: str = "") -> None:
        self.set_class(snap is not None and snap.state in ("alarm", "error"), "-alarm")
        if snap is None:
            self.update(Text.assemble((" STARTING ", STATE_STYLES["starting"]), " ", (note or "building the Tutor…", "dim")))
            return
        out = Text(no_wrap=True, overflow="ellipsis")
        out.append(f" {snap.state.upper()} ", style=STATE_STYLES.get(snap.state, "bold"))
        if snap.state == "alarm":
            out.append(f" {snap.error or 'NaN/inf: training paused'}  ", style="bold")
            out.append("space", style="bold reverse")
            out.append(" resume  ")
            out.append("r", style="bold reverse")
            out.append(" roll back to last save")
            self.update(out, layout=False)
            return
        if snap.state == "error":
            out.append(f" {snap.error or 'the Tutor stopped with an error'}")
            self.update(out, layout=False)
            return
        out.append(f" step {snap.step:,}")
        if snap.max_steps:
            out.append(f"/{snap.max_steps:,}")
        if note:  # early, so 80 columns never cut it off ("saved → save-00000904")
            out.append(f"  {note}", style="italic")
        s = snap.stats
        calli = self.app.calligraphist  # type: ignore[attr-defined]
        if "loss" in s:
            out.append("  loss ", style="dim")
            out.append_text(calli.text("loss", s["loss"]))
        if "val_loss" in s:
            out.append("  val ", style="dim")
            out.append_text(calli.text("val_loss", s["val_loss"]))
        rate = self.app.token_rate.rate() if snap.state == "running" else None  # type: ignore[attr-defined]
        if rate is None and snap.state == "running" and "tokens_per_s" in s:
            rate = s["tokens_per_s"]  # the first seconds: the Tutor's own (per-step) figure
        if rate is not None:
            # "avg": a mean over the last RATE_SECONDS, unlike loss and val (the last step's)
            out.append(f"  avg {format_value('tokens_per_s', rate)} tok/s", style="dim")
        left = eta_seconds(snap.step, snap.max_steps, s.get("step_ms", float("nan")))
        if left is not None:
            out.append(f"  ETA {duration(left)}", style="dim")
        self.update(out, layout=False)
