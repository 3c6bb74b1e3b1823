"""Event log pane: saves, checkpoints, validation results, alarms (bounded)."""

from __future__ import annotations

from collections import deque
from typing import Any

from rich.console import RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.events import Resize, Show
from textual.widgets import RichLog

from babyllm.events import EVENT_STYLES, FAILURE_KINDS, KINDS
from babyllm.snapshot import Event
from tui.widgets.base import Guarded, Pane

MAX_LINES = 500
STEP_CELLS = len("999,999 ")  # the step (a longer one pushes its line's kind along), then the kind:
KIND_CELLS = max(len(kind) for kind in KINDS) + 1
MESSAGE_CELLS = 16  # narrower than this beside the step and kind, a line wraps under them instead

Line = tuple[Text, Text]  # (step and kind, the message)


def hanging(line: Line, width: int) -> RenderableType:
    """A line as wide as `width`: its message wraps under itself, not under the step and kind."""
    head, message = line
    if width < head.cell_len + MESSAGE_CELLS:
        return Text.assemble(head, message, no_wrap=False)
    grid = Table.grid(expand=True)
    grid.add_column(width=head.cell_len, no_wrap=True)
    grid.add_column(ratio=1, overflow="fold")
    grid.add_row(head, message)
    return grid


class EventLog(Guarded, RichLog):
    """The log's lines, each wrapped at the log's width with a hanging indent; unlike a plain RichLog it wraps
    them again when its width changes, and a line added while the pane is hidden (one pane at a time, at
    80x24) is wrapped at the width it had on screen, not at RichLog's min_width."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.texts: deque[Line] = deque(maxlen=MAX_LINES)
        self._wrapped_at = 0  # the content width the lines were last wrapped at (0: never on screen)

    def add(self, line: Line) -> None:
        self.texts.append(line)
        if self._wrapped_at:
            self.write(hanging(line, self._wrapped_at), width=self._wrapped_at)
        else:
            self.write(hanging(line, 0))  # (RichLog holds it until its size is known)

    def on_mount(self) -> None:
        # Anchored: the newest lines stay in view as lines come, at every size and when the pane is shown
        # again (a scroll while hidden does nothing), until the user scrolls up to read.
        self.anchor()

    def _width(self) -> int:
        return self.scrollable_content_region.width

    def on_resize(self, event: Resize) -> None:
        super().on_resize(event)
        self._rewrap()

    def on_show(self, event: Show) -> None:
        self._rewrap()

    def _rewrap(self) -> None:
        """At a new width (or the first one), write every line again."""
        width = self._width()
        if width > 0 and width != self._wrapped_at:
            self._wrapped_at = width
            self.clear()
            for line in self.texts:
                self.write(hanging(line, width), width=width)


class EventsPane(Pane):
    """The run's events, newest last: saves, validations, alarms, and what the keys asked for."""

    NAME = "events"
    SHORT = "log"
    UPDATES = ("add",)
    TITLE = "event log"

    @property
    def lines(self) -> list[str]:
        """The plain text of what the log shows."""
        return [head.plain + message.plain for head, message in self.query_one(EventLog).texts]

    def compose(self) -> ComposeResult:
        yield EventLog(max_lines=MAX_LINES, wrap=True, markup=False, id="event-log")

    def add(self, event: Event) -> None:
        head = Text(no_wrap=True)
        head.append(f"{event.step:>{STEP_CELLS - 1},} ", style="dim")
        head.append(f"{event.kind:<{KIND_CELLS}}", style=EVENT_STYLES.get(event.kind, ""))
        message = Text(event.message, style="red" if event.kind in FAILURE_KINDS else "")
        self.query_one(EventLog).add((head, message))
