"""One-line status bar under the header: state, step, loss, speed; turns into a red banner on an alarm and
carries an alert's banner (babyllm.school.alerts) until it is dismissed."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from typing import Any

from rich.text import Text
from textual.widgets import Static

from babyllm.calligraphist import Calligraphist, format_value
from babyllm.durations import duration
from babyllm.events import EVENT_STYLES
from babyllm.snapshot import Snapshot
from tui.keys import Keys
from tui.pace import PANES_EVERY, Pace
from tui.widgets.timing import eta_seconds

STATE_STYLES = {
    "starting": "bold yellow", "running": "bold green", "paused": "bold yellow", "alarm": "bold white on red",
    "stopping": "bold yellow", "stopped": "bold", "finished": "bold cyan", "error": "bold white on red",
}
ALERT_STYLE = EVENT_STYLES["alert"]

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
    """The line under the header: state, step, loss, speed, ETA, and a note (lasting) or a flash (short).

    Told each snapshot; it redraws at most every PANES_EVERY (stretched by the Pace) unless told to
    show one at once (the first, a change of state), since snapshots can come ~20 a second.
    """

    DEFAULT_CSS = "StatusBar { height: 1; }"

    def __init__(self, calligraphist: Calligraphist, token_rate: TokenRate, pace: Pace, keys: Keys,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calligraphist, self.token_rate, self.pace, self.keys = calligraphist, token_rate, pace, keys
        self.snapshot: Snapshot | None = None
        self.note = ""  # lasting (stopping; what a viewer makes of the run): it wins over a flash
        self.alert = ""  # the latest alert's text, shown until dismissed (its dismiss_alert key) or a resume
        self._flash, self._flash_until = "", 0.0
        self._dirty = False
        self._shown = 0.0

    def tell(self, snap: Snapshot, at_once: bool = False) -> None:
        """The newest snapshot: shown now if at_once or due, else on a later tick."""
        self.snapshot = snap
        if at_once or self.pace.due(self._shown, PANES_EVERY):
            self.refresh_line()
        else:
            self._dirty = True

    def tick(self) -> None:
        """Timer: show the newest snapshot if one is waiting and due."""
        if self._dirty and self.pace.due(self._shown, PANES_EVERY):
            self.refresh_line()

    def flash(self, text: str, seconds: float = 4.0) -> None:
        """A short confirmation (a toast would cover a pane's text); the line clears itself after."""
        self._flash, self._flash_until = text, time.monotonic() + seconds
        self.refresh_line()
        self.set_timer(seconds + 0.05, self.refresh_line)

    def refresh_line(self) -> None:
        """Show the newest snapshot with the note, or the flash while it lasts."""
        self._dirty = False
        self._shown = time.monotonic()
        flash = self._flash if time.monotonic() < self._flash_until else ""
        self.show(self.snapshot, self.note or flash)

    def show(self, snap: Snapshot | None, note: str = "") -> None:
        """Draw the line for this snapshot (None: still starting) with this note."""
        if not self.is_attached:
            return  # the app is being torn down: a late timer finds the bar gone
        self.set_class(snap is not None and snap.state in ("alarm", "error"), "-alarm")
        if snap is None:
            starting = (" STARTING ", STATE_STYLES["starting"])
            self.update(Text.assemble(starting, " ", (note or "building the Tutor…", "dim")))
            return
        out = Text(no_wrap=True, overflow="ellipsis")
        out.append(f" {snap.state.upper()} ", style=STATE_STYLES.get(snap.state, "bold"))
        if snap.state == "alarm":
            out.append(f" {snap.error or 'NaN/inf: training paused'}  ", style="bold")
            out.append(self.keys.first("pause"), style="bold reverse")
            out.append(" resume  ")
            out.append(self.keys.first("rollback"), style="bold reverse")
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
        if self.alert:  # early, as the note; the dismiss_alert key dismisses it
            out.append("  ")
            out.append(self.keys.all("dismiss_alert"), style="bold reverse")
            out.append(f" ⚠ {self.alert}", style=ALERT_STYLE)
        if note:  # early, so 80 columns never cut it off ("saved → save-00000904")
            out.append(f"  {note}", style="italic")
        s = snap.stats
        calli = self.calligraphist
        if "loss" in s:
            out.append("  loss ", style="dim")
            out.append_text(calli.text("loss", s["loss"]))
        if "val_loss" in s:
            out.append("  val ", style="dim")
            out.append_text(calli.text("val_loss", s["val_loss"]))
        rate = self.token_rate.rate() if snap.state == "running" else None
        if rate is None and snap.state == "running" and "tokens_per_s" in s:
            rate = s["tokens_per_s"]  # the first seconds: the Tutor's own (per-step) figure
        if rate is not None:
            # "avg": a mean over the last RATE_SECONDS, unlike loss and val (the last step's)
            out.append(f"  avg {format_value('tokens_per_s', rate)} tok/s", style="dim")
        left = eta_seconds(snap.step, snap.max_steps, s.get("step_ms", float("nan")))
        if left is not None:
            out.append(f"  ETA {duration(left)}", style="dim")
        self.update(out, layout=False)
