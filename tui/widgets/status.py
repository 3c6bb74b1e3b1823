"""One-line status bar under the header: state, step, loss, speed; turns into a red banner on an alarm and
carries an alert's banner (babyllm.school.alerts) until it is dismissed."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
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
# What matters most on a narrow line (fit): the state and step, a flash or note, loss, val, tokens/s, an alert's
# banner (cut, never the numbers), a viewer's standing note, the ETA.
HEAD, NOTE, LOSS, VAL, RATE, ALERT, ABOUT, ETA = 9, 8, 7, 6, 5, 4, 3, 2


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


MIN_TEXT_CELLS = 12  # a text cut shorter than this is left out instead


@dataclass(frozen=True)
class Part:
    """A piece of the status line: its text, how much it matters (a narrow line drops or cuts the least first),
    and whether it may be cut (a text) or only dropped (a number)."""

    text: Text
    rank: int
    cuttable: bool = False


def fit(parts: list[Part], width: int) -> Text:
    """The parts in order on one line of `width` cells (0: unknown, all of them): while too long, the part that
    matters least is cut (a text, down to MIN_TEXT_CELLS) or dropped. A long alert never pushes the numbers
    off the line, and a short confirmation (a flash) stays whole before a number does."""
    parts = [p for p in parts if p.text.cell_len]
    while width and parts and sum(p.text.cell_len for p in parts) > width:
        least = min(range(len(parts)), key=lambda i: parts[i].rank)
        part, over = parts[least], sum(p.text.cell_len for p in parts) - width
        if part.cuttable and part.text.cell_len - over >= MIN_TEXT_CELLS:
            cut = part.text.copy()
            cut.truncate(part.text.cell_len - over, overflow="ellipsis")
            parts[least] = Part(cut, part.rank, True)
        else:
            del parts[least]
    out = Text(no_wrap=True, overflow="ellipsis")
    for p in parts:
        out.append_text(p.text)
    return out


class StatusBar(Static):
    """The line under the header: state, step, loss, speed, ETA, and a note (lasting), a flash (short) or what
    a viewer makes of the run (``about``, when neither), all cut to fit the line before the numbers are.

    Told each snapshot; it redraws at most every PANES_EVERY (stretched by the Pace) unless told to
    show one at once (the first, a change of state), since snapshots can come ~20 a second.
    """

    DEFAULT_CSS = "StatusBar { height: 1; }"

    def __init__(self, calligraphist: Calligraphist, token_rate: TokenRate, pace: Pace, keys: Keys,
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.calligraphist, self.token_rate, self.pace, self.keys = calligraphist, token_rate, pace, keys
        self.snapshot: Snapshot | None = None
        self.note = ""  # lasting (stopping): it wins over a flash
        self.about = ""  # what a viewer makes of the run: shown when there is neither a note nor a flash
        self.starting = ""  # what the Tutor's building says (a corpus's progress): shown until the first snapshot
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

    def on_resize(self) -> None:
        self.refresh_line()  # (what fits depends on the width)

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
        said = self.note or flash
        if self.snapshot is None:
            self.show(None, said or self.starting)
            return
        self.show(self.snapshot, said or self.about, standing=not said)

    def show(self, snap: Snapshot | None, note: str = "", standing: bool = False) -> None:
        """Draw the line for this snapshot (None: still starting) with this note (`standing`: a viewer's, which
        a narrow line cuts before the numbers)."""
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
        step = f" step {snap.step:,}" + (f"/{snap.max_steps:,}" if snap.max_steps else "")
        parts = [Part(out, HEAD), Part(Text(step), HEAD)]
        if self.alert:  # early, and cut first: the dismiss_alert key dismisses it
            banner = Text("  ")
            banner.append(self.keys.all("dismiss_alert"), style="bold reverse")
            banner.append(f" ⚠ {self.alert}", style=ALERT_STYLE)
            parts.append(Part(banner, ALERT, cuttable=True))
        if note:  # early: "saved → save-00000904"; a viewer's standing note is cut before the numbers
            parts.append(Part(Text(f"  {note}", style="italic"), ABOUT if standing else NOTE, cuttable=True))
        parts += self._numbers(snap)
        self.update(fit(parts, self.content_region.width), layout=False)

    def _numbers(self, snap: Snapshot) -> list[Part]:
        """loss and val (coloured by their bands), the tokens/s and the ETA."""
        s = snap.stats
        calli = self.calligraphist
        out = []
        if "loss" in s:
            out.append(Part(Text.assemble(("  loss ", "dim"), calli.text("loss", s["loss"])), LOSS))
        if "val_loss" in s:
            out.append(Part(Text.assemble(("  val ", "dim"), calli.text("val_loss", s["val_loss"])), VAL))
        rate = self.token_rate.rate() if snap.state == "running" else None
        if rate is None and snap.state == "running" and "tokens_per_s" in s:
            rate = s["tokens_per_s"]  # the first seconds: the Tutor's own (per-step) figure
        if rate is not None:
            # "avg": a mean over the last RATE_SECONDS, unlike loss and val (the last step's)
            out.append(Part(Text(f"  avg {format_value('tokens_per_s', rate)} tok/s", style="dim"), RATE))
        left = eta_seconds(snap.step, snap.max_steps, s.get("step_ms", float("nan")))
        if left is not None:
            out.append(Part(Text(f"  ETA {duration(left)}", style="dim"), ETA))
        return out
