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


@pytest.mark.parametrize("lines, attached", [(1, False), (6, False), (1, True)])
async def test_the_chat_keeps_the_exchange_in_view_after_replies_commands_and_resizes(lines, attached):
    app = make_app(chat=LongChat(lines), attached=attached)
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
        await pilot_wait(pilot, lambda: trends.drawn_cells == trends.cells)
        await pilot.pause(0.2)
        text = "".join(t for t, _ in drawn(trends))
        assert sum(c in "▁▂▃▄▅▆▇█" for c in text) >= 7 * (trends.cells * 3 // 4)  # (about) a point a cell


# --- 4: the event log, the sample -----------------------------------------------------------------


def log_rows(app: CockpitApp) -> list[str]:
    from tui.widgets.events import EventLog

    log = app.query_one(EventLog)
    return [strip.text for strip in log.lines]


@pytest.mark.parametrize("shown_before", [True, False])
async def test_event_lines_added_while_the_log_is_hidden_wrap_at_its_width_under_their_message(shown_before):
    """At 80x24 one pane shows at a time: lines added while the log was hidden wrapped at RichLog's min_width
    (20 columns), every wrapped line started at column 0 instead of under its message, and the log could
    come back scrolled to its oldest lines."""
    from babyllm.snapshot import Event
    from tui.widgets.events import EventLog

    app = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await pilot_wait(pilot, lambda: app.snapshot is not None)
        if shown_before:
            await pilot.press("7")  # the log on screen once (its width known), then hidden again
            await pilot.pause(0.2)
            await pilot.press("1")
        for i in range(20):
            app.pane("events").add(Event(280 + i, "info", f"an event, number {i}"))
        long = "saved step 301 to /a/rather/long/path/of/folders/runs/demo/checkpoint-00000301 " * 2
        app.pane("events").add(Event(301, "checkpoint", long.strip()))
        await pilot.press("7")
        await pilot.pause(0.3)
        log = app.query_one(EventLog)
        rows = log_rows(app)
        top = round(log.scroll_y)
        shown = rows[max(0, top):top + log.scrollable_content_region.height]
        assert shown[-1] == rows[-1] and "301 checkpoint" in "".join(shown), shown  # the newest at the bottom
        mine = rows[next(i for i, r in enumerate(rows) if "checkpoint" in r and "301" in r):]
        width = log.scrollable_content_region.width
        assert len(mine) <= 5 and max(len(r.rstrip()) for r in mine) > 50, mine  # not 10 lines of 20
        indent = mine[0].index("saved")
        assert all(len(r.rstrip()) <= width for r in mine)
        assert all(r[:indent].strip() == "" and r[indent:].strip() for r in mine[1:]), mine
        for size in (BIG, SMALL):  # and again at each width
            await pilot.resize_terminal(*size)
            await pilot.pause(0.3)
            if app.compact:
                await pilot.press("7")
                await pilot.pause(0.2)
            rows = log_rows(app)
            mine = rows[next(i for i, r in enumerate(rows) if "checkpoint" in r and "301" in r):]
            assert all(r[:indent].strip() == "" for r in mine[1:]), (size, mine)


async def test_the_loss_plot_stays_inside_its_pane_with_the_unigram_label():
    """(Found not to reproduce: the row with the unigram label is as wide as the plot in the terminal; the PNG
    showed it longer because rsvg draws braille in a proportional fallback font.) Every row of every plot is
    exactly its width, the label's row too, at 80x24 and 160x50."""
    from tui.widgets.plotting import Plot

    for size, key in ((BIG, None), (SMALL, "2")):
        app = make_app()
        ready = lambda app=app: app.snapshot is not None and not app._plots_dirty  # noqa: E731
        async with app.run_test(size=size) as pilot:
            await pilot_wait(pilot, ready)
            if key:
                await pilot.press(key)
            await pilot.pause(0.5)
            await pilot_wait(pilot, ready)
            plot = app.query_one("#loss-plot", Plot)
            rows = plot.render().split("\n")
            assert any("unigram" in r.plain for r in rows)
            assert all(r.cell_len == plot.size.width for r in rows), [r.cell_len for r in rows]


# --- 5: toasts, the status line, maximised panes, the palette ------------------------------------------


async def test_toasts_never_cover_the_chat_input_and_an_alert_keeps_the_numbers_on_the_status_line():
    from textual.widgets._toast import Toast

    alert = ("throughput drop: 551 tokens/s over the last 20 steps is 48% of its median 1,137 "
             "(alerts.throughput_drop = 0.5)")
    for size in (SMALL, BIG):
        app = make_app(chat=LongChat())
        async with app.run_test(size=size, notifications=True) as pilot:
            await pilot_wait(pilot, lambda app=app: app.chat is not None and app.snapshot is not None)
            await pilot.press("i")
            for i in range(5):
                app.notify(f"note {i}: " + "words " * 12, timeout=30)
            app._alert(alert)
            await pilot.pause(0.5)
            box = app.query_one("#chat-input").region
            toasts = [t.region for t in app.screen.query(Toast)]
            assert toasts and not any(t.overlaps(box) for t in toasts), (size, box, toasts)
            line = str(app.status.render())
            assert "loss 3.085" in line and "val 3.205" in line and "tok/s" in line, (size, line)
            assert "a ⚠ through" in line and len(line) <= size[0], (size, line)  # (its dismiss key, its start)
            app.status.flash("saved → save-00000300")  # a short flash stays whole (a number may wait)
            line = str(app.status.render())
            assert "saved → save-00000300" in line and "loss 3.085" in line and len(line) <= size[0], line
            assert "tok/s" in line or size == SMALL


def test_the_status_line_cuts_the_least_that_matters_first():
    from rich.text import Text

    from tui.widgets.status import ALERT, ETA, HEAD, LOSS, NOTE, RATE, Part, fit

    parts = [Part(Text(" RUNNING  step 9"), HEAD), Part(Text("  a ⚠ " + "long alert " * 10), ALERT, True),
             Part(Text("  saved → save-00000009"), NOTE, True), Part(Text("  loss 3.1"), LOSS),
             Part(Text("  avg 5,000 tok/s"), RATE), Part(Text("  ETA 2m"), ETA)]
    needed = sum(p.text.cell_len for p in parts if p.rank in (HEAD, NOTE, LOSS, RATE))
    for width in range(50, 200, 7):
        line = fit(parts, width).plain
        assert len(line) <= width and "loss 3.1" in line and "saved → save-00000009" in line
        assert ("tok/s" in line) == (width >= needed), (width, line)
        assert ("ETA" in line) <= ("long alert " * 10 in line)  # the ETA goes first, then the alert is cut


async def test_a_maximised_pane_keeps_the_header_and_the_status_line():
    from textual.widgets import Header

    app = make_app()
    async with app.run_test(size=BIG) as pilot:
        await pilot_wait(pilot, lambda: app.snapshot is not None)
        for key in ("2", "4", "7"):
            await pilot.press(key)
            await pilot.pause(0.2)
            assert app.main_screen.maximized is app.pane(app.pane_slots[int(key) - 1].pane.NAME)
            header, status, pane = app.query_one(Header).region, app.status.region, app.main_screen.maximized.region
            assert header.height >= 1 and status.height == 1 and status.y == header.bottom, (header, status)
            assert pane.y >= status.bottom and pane.bottom <= app.size.height - 1  # (the footer below)
            assert "step 300" in str(app.status.render())
            await pilot.press(key)


async def test_the_palette_offers_the_cockpits_own_entries_and_the_themes_only():
    """Textual's own Quit (no save), Keys, Maximize and Screenshot sat beside the cockpit's entries."""
    from textual.command import CommandPalette

    app = make_app()
    async with app.run_test(size=BIG) as pilot:
        await pilot_wait(pilot, lambda: app.snapshot is not None)
        names = [c.title for c in app.get_system_commands(app.screen)]
        assert names == ["Theme"]
        await pilot.press("ctrl+p")
        await pilot.pause(0.5)
        assert isinstance(app.screen, CommandPalette)
        await pilot.press(*"Quit")
        await pilot.pause(0.5)
        shown = [str(o.prompt) for o in app.screen.query("CommandList").first().options]
        ours = {name for name, _, _ in app.palette_entries()}
        assert shown and all(any(name in s for name in ours) for s in shown), shown


# --- 6: colours for the terminal -----------------------------------------------------------------------


@pytest.mark.parametrize("environ, depth", [
    ({"NO_COLOR": "1", "COLORTERM": "truecolor"}, Depth.NONE),
    ({"TERM": "dumb", "COLORTERM": "truecolor"}, Depth.NONE),
    ({"TERM": "xterm", "COLORTERM": "truecolor"}, Depth.TRUECOLOR),
    ({"TERM": "xterm-256color"}, Depth.EIGHT_BIT),
    ({"TERM": "xterm"}, Depth.STANDARD),
    ({"TERM": "linux"}, Depth.STANDARD),
    ({"TERM": "xterm-256color", "TEXTUAL_COLOR_SYSTEM": "standard"}, Depth.STANDARD),
])
def test_the_colour_depth_is_decided_from_the_environment(environ, depth):
    from babyllm.calligraphist import colour_depth

    assert colour_depth(environ) is depth


@pytest.mark.parametrize("depth, system, least", [(Depth.STANDARD, ColorSystem.STANDARD, 8),
                                                  (Depth.EIGHT_BIT, ColorSystem.EIGHT_BIT, 10),
                                                  (Depth.TRUECOLOR, ColorSystem.TRUECOLOR, 16)])
def test_the_sixteen_bands_stay_apart_at_each_depth_in_band_order(depth, system, least):
    """Downgraded to 16 colours the bands' hexes became about four hues; each depth has its own."""
    from babyllm.calligraphist import BANDS, Calligraphist

    calli = Calligraphist(depth=depth)
    shown = [calli.style(b).color.downgrade(system) for b in BANDS]
    runs = [c for i, c in enumerate(shown) if i == 0 or c != shown[i - 1]]
    assert len(set(shown)) >= least and len(runs) == len(set(shown))  # each colour one run: in band order


async def test_without_colour_the_cockpit_sends_none():
    """NO_COLOR or TERM=dumb: no colour in the bands and none in anything drawn (Textual alone sent greys
    for NO_COLOR and truecolour for a dumb TERM), bold and the like kept."""
    from babyllm.calligraphist import BANDS, Calligraphist

    assert all(Calligraphist(depth=Depth.NONE).style(b).color is None for b in BANDS)
    app = make_app(Depth.NONE)
    async with app.run_test(size=BIG) as pilot:
        await pilot_wait(pilot, lambda: app.snapshot is not None)
        await pilot.pause(0.5)
        cells = [c for w in (app.status, app.pane("stats"), app.pane("windows"), app.pane("loss"))
                 for c in drawn(w)]
        plain = [c is None or c.is_default for _, s in cells for c in (s.color, s.bgcolor)]
        assert cells and all(plain)  # (default: the terminal's own, no colour sent)
        assert any(s.bold for _, s in cells)


async def test_among_sixteen_colours_the_panes_use_the_terminals_own():
    """Among 16 colours the hues stay ANSI colours (Textual's truecolour theme would merge red and magenta)."""
    app = make_app(Depth.STANDARD)
    async with app.run_test(size=SMALL) as pilot:
        await pilot_wait(pilot, lambda: app.snapshot is not None)
        assert app.ansi_color
        await pilot.press("4")
        await pilot.pause(0.5)
        bars = [s.color for _, s in drawn(app.query_one(WindowBars)) if s.color is not None]
        assert len({c.name for c in bars}) >= 7 and all(c.is_default or c.number < 16 for c in bars)


# --- 7: what the Tutor said while it was built is logged once ---------------------------------------


async def test_a_warning_said_while_the_tutor_is_built_is_logged_once(cache, tmp_path):
    from test_headless import bad_rows_corpus

    from babyllm.config import load_config
    from babyllm.school.tutor import Tutor

    cfg = load_config("tiny", ["train.steps=2"])
    cfg.data.corpus, cfg.data.cache_dir = str(bad_rows_corpus(tmp_path / "corpus")), str(cache)
    app = CockpitApp(lambda publish, say: Tutor(cfg, tmp_path / "run", publish=publish, say=say),
                     handle_signals=False, depth=Depth.TRUECOLOR)
    async with app.run_test(size=SMALL) as pilot:
        await pilot_wait(pilot, lambda: app.snapshot is not None and app.snapshot.state == "finished")
        text = "\n".join(app.pane("events").lines)
        assert text.count("line 6: not valid JSON") == 1 and text.count("line 10: no 'text' value") == 1, text
        await pilot.press("q", "y")
        await pilot_wait(pilot, lambda: not app.is_running)
    assert app.join_tutor(timeout=20)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))
