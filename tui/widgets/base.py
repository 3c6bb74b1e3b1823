"""What every pane shares: a numbered border title, the kit the app hands it (PaneKit), the snapshot and
History it is told, two update hooks, and the guard that keeps a failing pane from taking the cockpit down."""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from rich.console import RenderableType
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.containers import Vertical
from textual.geometry import Region
from textual.reactive import var
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import Static

from babyllm.calligraphist import Calligraphist
from babyllm.snapshot import History, Snapshot
from tui.keys import Keys
from tui.messages import Flash, RedrawWanted

# The pane methods the app calls on every update: __init_subclass__ guards them in every pane, and
# the ones a pane lists in its UPDATES (its own update methods, e.g. the event log's add).
GUARDED_HOOKS = ("show_snapshot", "redraw")


Failed = Callable[[str, str, BaseException], None]  # (pane, what failed, the error): debug.log gets it


def _not_logged(name: str, what: str, error: BaseException) -> None:
    """(a pane outside a cockpit, e.g. in a test: its note in the title is all there is)"""


@dataclass(frozen=True)
class PaneKit:
    """What the app hands every pane instead of itself: the Calligraphist, the keys of its action table
    (for the texts that name a key) and where a failure is logged. What a pane shows is pushed to it (the
    refresh scheduler); it asks the app for the rest by message (tui.messages: Flash, RedrawWanted)."""

    calligraphist: Calligraphist
    keys: Keys = Keys(())
    failed: Failed = _not_logged


def pane_of(widget: Widget) -> Pane | None:
    """The pane a widget is in (itself, if it is one)."""
    return next((w for w in (widget, *widget.ancestors) if isinstance(w, Pane)), None)


def report_failure(widget: Widget, what: str, error: BaseException) -> str:
    """Tell the app (debug.log gets the traceback, once per distinct error); return the one-line note."""
    pane = pane_of(widget)
    note = f"⚠ {what} failed: {type(error).__name__}: {error}"[:200]
    if pane is not None:
        pane.kit.failed(pane.NAME, what, error)
    return note


def _guard_hook(hook: Callable[..., None], what: str) -> Callable[..., None]:
    @functools.wraps(hook)
    def guarded(self: Pane, *args: Any, **kwargs: Any) -> None:
        try:
            hook(self, *args, **kwargs)
        except Exception as e:  # noqa: BLE001 - a pane's bug shows as a note; training carries on
            self.show_failure(hook.__name__, report_failure(self, what, e))
        else:
            self.show_failure(hook.__name__, None)
    guarded.__cockpit_guarded__ = True  # type: ignore[attr-defined]
    return guarded


if TYPE_CHECKING:
    _Drawn = Widget  # what the mixin's super() calls reach (the widget it is mixed into)
else:
    _Drawn = object


class Guarded(_Drawn):
    """A widget whose drawing can fail without ending the app: it shows a one-line note instead.

    A mixin, put before the Textual widget it guards (``Guarded, Static``), never a Widget itself:
    Textual inherits DEFAULT_CSS only along each class's first widget base, so a Widget here would
    cut off the guarded widget's own CSS (a Static's ``height: auto``: every chat line was a pane tall).

    Textual draws every widget through render_lines, so this one override covers render(), the
    Rich renderables it returns and whatever a library (plotext) does while building them. The
    next refresh tries again, so a passing fault (a theme switch mid-build) heals by itself.
    """

    def render_lines(self, crop: Region) -> list[Strip]:
        try:
            return super().render_lines(crop)
        except Exception as e:  # noqa: BLE001 - see the class docstring
            note = report_failure(self, "drawing", e) + " (see debug.log)"
            style = Style(color="red", italic=True)
            first = Strip([Segment(note, style)]).crop_extend(0, crop.width, None)
            return [first] + [Strip.blank(crop.width)] * max(0, crop.height - 1)


class GuardedWidget(Guarded, Widget):
    """A plain widget that draws itself (render), guarded."""


class GuardedStatic(Guarded, Static):
    """A Static inside a pane (see Guarded)."""


class Pane(Guarded, Vertical):
    """A titled box, told what to show: ``snapshot``, ``rate`` and ``history`` are set by the app's refresh
    scheduler, only while the pane is on screen, a few times a second; setting ``snapshot`` runs
    ``show_snapshot`` (cheap: text only), and the scheduler calls ``redraw`` (plots) at most every
    REDRAW_EVERY. A pane that comes into view is brought up to date at once. Every subclass's hooks
    are guarded (see __init_subclass__): an exception in one puts a one-line note in the pane's title,
    its traceback in debug.log, and the app carries on.
    """

    ALLOW_MAXIMIZE = True
    REDRAW_EVERY = 1.0  # seconds: plots redraw at most this often (and only when there are new steps)
    NAME = "pane"  # the widget id, and what the palette and the tabs call it
    TITLE = "pane"
    SHORT = "pane"  # the tab label
    UPDATES: tuple[str, ...] = ()  # this pane's own update methods (returning None), guarded too

    # always_update: a snapshot is a new object each time; comparing two by value would cost more
    # than showing one. init=False: nothing to show until the first snapshot comes.
    snapshot: var[Snapshot | None] = var(None, always_update=True, init=False)
    history: var[History | None] = var(None, init=False)
    rate: float | None = None  # the header's tokens/s (a mean over seconds; None while paused or not known)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in (*GUARDED_HOOKS, *cls.UPDATES):
            hook = cls.__dict__.get(name)
            if hook is not None and not getattr(hook, "__cockpit_guarded__", False):
                setattr(cls, name, _guard_hook(hook, "plot" if name == "redraw" else "update"))

    def __init__(self, key: str, kit: PaneKit) -> None:
        super().__init__(id=self.NAME, classes="pane")
        self.key = key  # its number key (tui.panes.PANES)
        self.kit = kit
        self.calligraphist = kit.calligraphist
        self.failures: dict[str, str] = {}  # guarded method -> the note of its last failure
        self.border_title = self.title_text()

    def title_text(self) -> Text:
        title = Text(f"{self.key} {self.TITLE}")
        if self.failures:  # a Text, not markup: an error message may contain brackets
            title.append(f" {next(iter(self.failures.values()))} (see debug.log)", style="red")
        return title

    def show_failure(self, method: str, note: str | None) -> None:
        """Show (or, with None, clear) the one-line note of a method's failed update in the title."""
        if self.failures.get(method) == note:
            return
        if note is None:
            del self.failures[method]
        else:
            self.failures[method] = note
        self.border_title = self.title_text()

    def flash(self, text: str, seconds: float = 4.0) -> None:
        """A short note on the status line (the app shows it)."""
        self.post_message(Flash(text, seconds))

    def want_redraw(self) -> None:
        """Redraw this pane's plot on the next tick, due or not: keys can come by the thousand (a paste),
        and a redraw costs ~50 ms."""
        self.post_message(RedrawWanted(self.NAME))

    def watch_snapshot(self) -> None:
        self.show_snapshot()

    def show_snapshot(self) -> None:
        """Show ``self.snapshot`` (cheap: text only)."""

    def redraw(self) -> None:
        """Redraw from ``self.history`` (plots); default: nothing to draw."""


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
