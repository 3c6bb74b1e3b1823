"""What the cockpit shows, as drawn: the chat keeps the exchange in view at every size, the windows pane's
colours are one table (bars and lines alike, seven apart at every depth), and what is drawn is readable at
80x24 and 160x50."""

from __future__ import annotations

import sys
import time

import pytest
from rich.color import ColorSystem
from rich.style import Style
from runhelpers import pilot_wait
from textual.containers import VerticalScroll
from textual.geometry import Region
from textual.widget import Widget

from babyllm.calligraphist import Depth
from tui import widgets
from tui.app import CockpitApp
from tui.fake import FakeTutor
from tui.widgets.base import Guarded
from tui.widgets.windows import WINDOW_HUES, WINDOW_MARKERS, WindowBars, WindowTrends

SMALL, BIG = (80, 24), (160, 50)


class LongChat:
    """Replies with a few lines; understands any /command."""

    def __init__(self, lines: int = 3) -> None:
        self.notices: list[str] = []
        self.hit_limit = False
        self.lines = lines

    def stream(self, prompt: str):
        for i in range(self.lines):
            time.sleep(0.001)
            yield f"line {i} of the reply to {prompt}\n" if i < self.lines - 1 else f"last line ({prompt})"

    def command(self, line: str) -> str:
        return f"ok {line}"


def make_app(depth: Depth = Depth.TRUECOLOR, chat=None, **kwargs) -> CockpitApp:
    return CockpitApp(lambda publish, say: FakeTutor(publish=publish),
                      chat_factory=(lambda tutor: chat) if chat is not None else None,
                      handle_signals=False, depth=depth, **kwargs)


def drawn(widget: Widget) -> list[tuple[str, Style]]:
    """(character, style) of every cell the widget draws, after the app's filters (what the terminal gets)."""
    w, h = widget.size
    return [(seg.text, seg.style or Style()) for strip in widget.render_lines(Region(0, 0, w, h))
            for seg in strip for _ in [0] if seg.text]


def colours(cells: list[tuple[str, Style]], chars: str | None = None) -> list[str]:
    """The foreground colours (as truecolour triplets) of the cells holding any of `chars` (None: any
    non-blank), in order, each once."""
    seen: list[str] = []
    for text, style in cells:
        if style.color is None or not text.strip() or (chars is not None and not any(c in chars for c in text)):
            continue
        name = style.color.get_truecolor().hex
        if name not in seen:
            seen.append(name)
    return seen


# --- 1: the chat keeps the exchange in view -------------------------------------------------------


def test_every_guarded_widget_keeps_its_textual_base_css():
    """Textual inherits DEFAULT_CSS along each class's first widget base only: a Guarded that was a Widget cut
    off the guarded widget's own CSS (a Static's height: auto, so each chat line was a pane tall)."""
    from textual.widget import Widget as Base

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    checked = 0
    for cls in subclasses(Guarded):
        if not cls.__module__.startswith("tui."):
            continue
        for base in cls.__mro__[1:]:
            if issubclass(base, Base) and base.__module__.startswith("textual.") and "DEFAULT_CSS" in base.__dict__:
                assert base.__name__ in cls._css_type_names, (cls, base)
                checked += 1
    assert checked >= 5 and widgets  # (the panes, the chat lines, the plots, the event log)


def in_view(app: CockpitApp) -> list[str]:
    """The chat lines wholly inside the chat log's viewport, top to bottom."""
    log = app.query_one("#chat-log", VerticalScroll)
    top, bottom = log.content_region.y, log.content_region.bottom
    return [str(c.render()) for c in log.children
            if c.region.height and c.region.y >= top and c.region.bottom <= bottom]


@pytest.mark.parametrize("lines", [1, 6])
async def test_the_chat_keeps_the_exchange_in_view_after_replies_commands_and_resizes(lines):
    app = make_app(chat=LongChat(lines))
    async with app.run_test(size=SMALL) as pilot:
        await pilot_wait(pilot, lambda: app.chat is not None and app.snapshot is not None)
        await pilot.press("i")
        for i in range(4):
            await pilot.press(*f"hello {i}", "enter")
            await pilot_wait(pilot, lambda: not app.chat_pane.answering)
            await pilot.press(*f"/temp 0.{i}", "enter")
            await pilot.pause(0.05)
            shown = in_view(app)
            # the command and its answer at the bottom, the reply above it, and (a short reply) the prompt too
            assert shown[-2:] == [f"you /temp 0.{i}", f"ok /temp 0.{i}"], shown
            assert any(s.startswith("baby ") and f"last line (hello {i})" in s for s in shown), shown
            if lines == 1:
                assert f"you hello {i}" in shown, shown
        for size in ((200, 60), SMALL, (60, 20), BIG, (40, 12), SMALL):
            await pilot.resize_terminal(*size)
            await pilot.pause(0.2)
            if app.compact:
                await pilot.press("escape", "3")
                await pilot.pause(0.1)
            shown = in_view(app)
            assert shown and shown[-1] == "ok /temp 0.3", (size, shown)


# --- 3: the windows pane's colours -----------------------------------------------------------------


@pytest.mark.parametrize("depth", [Depth.TRUECOLOR, Depth.EIGHT_BIT, Depth.STANDARD])
def test_the_seven_window_colours_are_apart_at_every_depth(depth):
    system = {Depth.TRUECOLOR: ColorSystem.TRUECOLOR, Depth.EIGHT_BIT: ColorSystem.EIGHT_BIT,
              Depth.STANDARD: ColorSystem.STANDARD}[depth]
    shown = {h.style(depth).color.downgrade(system) for h in WINDOW_HUES}
    assert len(WINDOW_HUES) == 7 and len(shown) == 7
    assert len(set(WINDOW_MARKERS)) == 7  # and without colour, the lines' marks


async def window_pane(pilot, app: CockpitApp, size: tuple[int, int], maximise: bool = False):
    await pilot_wait(pilot, lambda: app.snapshot is not None)
    await pilot.resize_terminal(*size)
    await pilot.press("4")
    pane = app.pane("windows")
    await pilot_wait(pilot, lambda: pane.size.height > 0 and not app._plots_dirty)
    await pilot.pause(0.3)
    await pilot_wait(pilot, lambda: not app._plots_dirty)
    return pane


@pytest.mark.parametrize("depth", [Depth.TRUECOLOR, Depth.STANDARD])
async def test_the_weightings_lines_take_the_bars_colours(depth):
    """Maximised at 160x50 the pane has room for the plot: its seven lines are the bars' seven colours."""
    app = make_app(depth)
    async with app.run_test(size=BIG) as pilot:
        pane = await window_pane(pilot, app, BIG)
        assert not pane.trends_shown
        from tui.widgets.plotting import Plot

        bars = colours(drawn(pane.query_one(WindowBars)), "#")
        lines = colours(drawn(pane.query_one(Plot)), "".join(chr(c) for c in range(0x2801, 0x2900)))
        assert len(bars) == 7 and sorted(lines) == sorted(bars), (bars, lines)


@pytest.mark.parametrize("size", [SMALL, BIG])
async def test_all_seven_windows_are_readable_over_steps(size):
    """At 80x24 (and in the wide grid, where the pane is as short) each window keeps its own row: a sparkline
    in its bar's colour, so none hides behind another."""
    app = make_app()
    async with app.run_test(size=size) as pilot:
        if size == BIG:
            await pilot_wait(pilot, lambda: app.snapshot is not None)
            await pilot.pause(0.3)
            pane = app.pane("windows")
            await pilot_wait(pilot, lambda: not app._plots_dirty)
        else:
            pane = await window_pane(pilot, app, size)
        assert pane.trends_shown
        trends = pane.query_one(WindowTrends)
        cells = drawn(trends)
        rows = "".join(t for t, _ in cells)
        assert all(f"#{i} " in rows for i in range(7)), rows
        bars = colours(drawn(pane.query_one(WindowBars)), "#")
        assert colours(cells, "▁▂▃▄▅▆▇█") == bars and len(bars) == 7
        assert trends.region.bottom <= pane.content_region.bottom  # every row on screen


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
