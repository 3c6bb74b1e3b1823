"""Event log pane: saves, checkpoints, validation results, alarms (bounded)."""

from __future__ import annotations

from collections import deque
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.events import Resize
from textual.widgets import RichLog

from babyllm.events import EVENT_STYLES
from babyllm.snapshot import Event
from tui.widgets.base import Guarded, Pane

MAX_LINES = 500


class EventLog(Guarded, RichLog):
    """The log's lines; unlike a plain RichLog it wraps them again when its width changes."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.texts: deque[Text] = deque(maxlen=MAX_LINES)
        self._wrapped_at = 0

    def add(self, line: Text) -> None:
        self.texts.append(line)
        self.write(line)

    def on_resize(self, event: Resize) -> None:
        """RichLog wraps a line when it is written: at a new width, write them all again."""
        super().on_resize(event)
        width = event.size.width
        if not self._wrapped_at:
            self._wrapped_at = width  # the first size: the deferred writes just used it
        elif width and width != self._wrapped_at:
            self._wrapped_at = width
            self.clear()
            for t in self.texts:
                self.write(t)
        # The newest lines in view at every size: RichLog scrolls after each write, but a scroll decided
        # before the layout settles (the first sizes of a pane) can leave it at the top.
        self.call_after_refresh(self.scroll_end, animate=False, immediate=True)


class EventsPane(Pane):
    """The run's events, newest last: saves, validations, alarms, and what the keys asked for."""

    NAME = "events"
    SHORT = "log"
    UPDATES = ("add",)
    TITLE = "event log"

    @property
    def lines(self) -> list[str]:
        """The plain text of what the log shows."""
        return [t.plain for t in self.query_one(EventLog).texts]

    def compose(self) -> ComposeResult:
        # wrap at the pane width, not 78
        yield EventLog(max_lines=MAX_LINES, wrap=True, markup=False, min_width=20, id="event-log")

    def add(self, event: Event) -> None:
        line = Text(no_wrap=False)
        line.append(f"{event.step:>7,} ", style="dim")
        line.append(f"{event.kind:<11}", style=EVENT_STYLES.get(event.kind, ""))
        line.append(event.message, style="red" if event.kind in ("alarm", "error") else "")
        self.query_one(EventLog).add(line)
