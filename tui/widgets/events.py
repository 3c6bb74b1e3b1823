"""Event log pane: saves, checkpoints, validation results, alarms (bounded)."""

from __future__ import annotations

from collections import deque

from rich.text import Text
from textual.widgets import RichLog

from babyllm.snapshot import Event
from tui.widgets.base import Pane

MAX_LINES = 500
STYLES = {"save": "green", "checkpoint": "cyan", "val": "#ff8c00", "alarm": "bold red",
          "error": "bold red", "state": "dim", "info": "", "ui": "magenta"}


class EventsPane(Pane):
    KEY = "7"
    NAME = "events"
    SHORT = "log"
    TITLE = "event log"

    def __init__(self) -> None:
        super().__init__()
        self.lines: deque[str] = deque(maxlen=MAX_LINES)  # plain text of what the log shows

    def compose(self):  # type: ignore[no-untyped-def]
        yield RichLog(max_lines=MAX_LINES, wrap=True, markup=False, min_width=20, id="event-log")  # wrap at the pane width, not 78

    def add(self, event: Event) -> None:
        line = Text(no_wrap=False)
        line.append(f"{event.step:>7} ", style="dim")
        line.append(f"{event.kind:<11}", style=STYLES.get(event.kind, ""))
        line.append(event.message, style="red" if event.kind in ("alarm", "error") else "")
        self.lines.append(line.plain)
        self.query_one(RichLog).write(line)
