"""What every pane shares: a numbered border title and two update hooks the app calls."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import RenderableType
from textual.containers import Vertical
from textual.widgets import Static

if TYPE_CHECKING:
    from tui.app import CockpitApp


class Pane(Vertical):
    """A titled box. ``show_snapshot`` runs a few times a second, ``redraw`` (plots) at most ~2 Hz.

    Both are only called while the pane is on screen; a pane that comes into view is brought up to
    date at once.
    """

    ALLOW_MAXIMIZE = True
    REDRAW_EVERY = 1.0  # seconds: plots redraw at most this often (and only when there are new steps)
    KEY = "0"
    NAME = "pane"  # the widget id, and what the palette and the tabs call it
    TITLE = "pane"
    SHORT = "pane"  # the tab label

    def __init__(self) -> None:
        super().__init__(id=self.NAME, classes="pane")
        self.border_title = f"{self.KEY} {self.TITLE}"

    @property
    def cockpit(self) -> "CockpitApp":
        return self.app  # type: ignore[return-value]

    def show_snapshot(self) -> None:
        """Show the app's latest snapshot (cheap: text only)."""

    def redraw(self) -> None:
        """Redraw from the downsampled History (plots); default: nothing to draw."""


class PlotPane(Pane):
    """A pane with a plot (its Plot asks for a redraw when resized)."""


def update_static(widget: Static, content: RenderableType, key: object = None) -> None:
    """Static.update without a screen-wide layout pass unless the widget's height really changes.

    A layout pass costs far more than rendering one widget, and most updates keep the height, so
    measuring first keeps the cockpit's CPU use (and so its cost to training) low. With ``key`` (what
    the height depends on, besides the width) nothing is measured: layout only when the key changes.
    """
    if key is not None:
        key = (key, widget.content_region.width)
        old = getattr(widget, "_cockpit_key", None)
        widget._cockpit_key = key  # type: ignore[attr-defined]
        widget.update(content, layout=key != old)
        return
    width = widget.content_region.width
    if width <= 0:
        widget.update(content)
        return
    console = widget.app.console
    lines = len(console.render_lines(content, console.options.update_width(width), pad=False))
    old = getattr(widget, "_cockpit_lines", None)
    widget._cockpit_lines = lines  # type: ignore[attr-defined]
    widget.update(content, layout=lines != old)
