"""Windows pane: the window weightings and sizes now (bars) and, below them, one of three views (the w key):
the weightings over steps, the sizes over steps (plots, or a sparkline per window where a plot is too short),
or the memories' per-neuron gates as histograms."""

from __future__ import annotations

import math

from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.geometry import Size
from textual.reactive import var

from babyllm.calligraphist import Depth, Hue
from babyllm.snapshot import History, Snapshot
from babyllm.stats import GATE_BINS, MEMORIES, MEMORY_GATE, MEMORY_SOURCES, REGISTRY, WINDOW_SIZE, WINDOW_WEIGHT
from tui.widgets.base import GuardedWidget, PlotPane, pane_of
from tui.widgets.plotting import Plot, finite, integer_ticks, plot_colour

MAX_POINTS = 400  # per window
# One colour per window index: the bars, the plot's lines and the trends all take theirs from here, so the
# bars' "#k" labels are the legend of each. Seven apart at every depth (Hue: mid-luminance hexes that read on
# dark and light themes; seven different ANSI colours among 16, "default" the theme's foreground).
WINDOW_HUES: tuple[Hue, ...] = tuple(Hue(h, a) for h, a in (
    ("#4e79a7", "blue"), ("#f28e2b", "yellow"), ("#59a14f", "green"), ("#e15759", "red"), ("#b07aa1", "magenta"),
    ("#76b7b2", "cyan"), ("#9c755f", "default")))
WINDOW_MARKERS = "•x+o*#%"  # without colour (NO_COLOR), the plot's lines differ by their marks instead
# The plot keeps the lines apart only with two rows per window (and its axes, title and step label);
# a shorter space shows one sparkline per window instead (WindowTrends).
PLOT_ROWS_PER_WINDOW, PLOT_FRAME_ROWS = 2, 5
VIEWS = ("weightings", "sizes", "gates")  # what the w key cycles through, below the bars
VIEW_TEXT = {"weightings": "weightings over steps", "sizes": "sizes over steps",
             "gates": "memory gate histograms"}
# The memories' sources (babyllm.stats.MEMORY_SOURCES, the model's order), each with its colour.
GATE_COLOURS = ("blue", "cyan", "green", "magenta")
GATE_SOURCES = tuple(zip(MEMORY_SOURCES, GATE_COLOURS, strict=True))
SPARKS = "▁▂▃▄▅▆▇█"


def window_hue(i: int) -> Hue:
    return WINDOW_HUES[i % len(WINDOW_HUES)]


def windows_in(stats: dict[str, float]) -> int:
    """How many windows the stats describe (their weightings are numbered 0..n-1)."""
    return len(REGISTRY.indices(WINDOW_WEIGHT, stats))


def bar(fraction: float, width: int) -> str:
    """A bar of eighth-blocks, fraction 0..1 of width cells."""
    if not math.isfinite(fraction) or width <= 0:
        return " " * max(width, 0)
    eighths = round(max(0.0, min(1.0, fraction)) * width * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")).ljust(width)


class WindowBars(GuardedWidget):
    """One line per window: its size (tokens) and its weighting as bars."""

    DEFAULT_CSS = "WindowBars { height: auto; }"

    def __init__(self, depth: Depth) -> None:
        super().__init__(id="window-bars")
        self.stats: dict[str, float] = {}
        self.depth = depth

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return max(1, windows_in(self.stats))

    def render(self) -> Text:
        n = windows_in(self.stats)
        if not n:
            return Text("no window stats yet", style="dim")
        weights = [self.stats.get(REGISTRY.key(WINDOW_WEIGHT, i), math.nan) for i in range(n)]
        sizes = [self.stats.get(REGISTRY.key(WINDOW_SIZE, i), math.nan) for i in range(n)]
        top = max((w for w in weights if math.isfinite(w)), default=1.0) or 1.0
        biggest = max((s for s in sizes if math.isfinite(s)), default=1.0)
        # "#0 size  2.0 ▕██   ▏ weight 0.143 ▕█████▏": split what is left between the two bars.
        room = max(4, self.size.width - 31)
        size_w, weight_w = max(2, room // 3), max(2, room - room // 3)
        out = Text(no_wrap=True, overflow="ellipsis")
        for i, (w, s) in enumerate(zip(weights, sizes, strict=True)):
            colour = window_hue(i).style(self.depth)
            if i:
                out.append("\n")
            out.append(f"#{i} ", style=colour + Style(bold=True))
            out.append(f"size {s:6.1f} ", style="dim")
            # log scale: sizes span 1..context
            frac = math.log(max(s, 1.0)) / math.log(max(biggest, 2.0)) if math.isfinite(s) else 0.0
            out.append(bar(frac, size_w), style=colour)
            out.append(f" weight {w:.3f} ", style="dim")
            out.append(bar(w / top, weight_w), style=colour)
        return out


def trend_levels(values: list[float], log: bool) -> tuple[list[int], float, float]:
    """A series' points as sparkline levels 0..7 between its own lowest and highest point (a log scale for
    the sizes), and those two; -1 for a point that cannot be drawn (nan, or not positive on a log scale)."""
    def usable(v: float) -> bool:
        return math.isfinite(v) and (v > 0 or not log)

    scaled = [math.log(v) if log else v for v in values if usable(v)]
    if not scaled:
        return [-1] * len(values), math.nan, math.nan
    lo, hi = min(scaled), max(scaled)
    span = hi - lo or 1.0
    levels = [round(7 * ((math.log(v) if log else v) - lo) / span) if usable(v) else -1 for v in values]
    return levels, (math.exp(lo) if log else lo), (math.exp(hi) if log else hi)


class WindowTrends(GuardedWidget):
    """The weightings (or sizes) over steps as one sparkline per window, in its window's colour, each between
    its own lowest and highest value (shown, with the latest): where the plot would be too short to keep
    seven lines apart (80x24, the wide grid)."""

    DEFAULT_CSS = "WindowTrends { height: auto; }"
    VALUES = len(" 0.099 0.080…0.220")  # the latest value and the row's range

    def __init__(self, depth: Depth) -> None:
        super().__init__(id="window-trends")
        self.depth = depth
        self.series: list[list[float]] = []  # per window, oldest first (as many points as there are cells)
        self.log_scale = False
        self.drawn_cells = 0  # the width the series were thinned for

    def on_resize(self) -> None:
        """Another width, another number of points: have the pane take them on the next tick."""
        if self.cells != self.drawn_cells:
            pane = pane_of(self)
            if pane is not None:
                pane.want_redraw()

    @property
    def cells(self) -> int:
        """The sparkline's width: the row less its "#k " and its numbers."""
        return max(4, self.size.width - len("#0 ") - self.VALUES)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return max(1, len(self.series))

    def render(self) -> Text:
        if not self.series:
            return Text("no steps yet", style="dim")
        fmt = "{:.1f}" if self.log_scale else "{:.3f}"
        lines = []
        for i, values in enumerate(self.series):
            values = values[-self.cells:]
            levels, lo, hi = trend_levels(values, self.log_scale)
            colour = window_hue(i).style(self.depth)
            line = Text(f"#{i} ", style=colour + Style(bold=True))
            line.append("".join(SPARKS[v] if v >= 0 else " " for v in levels).rjust(self.cells), style=colour)
            last = next((v for v in reversed(values) if math.isfinite(v)), math.nan)
            if math.isfinite(last):
                line.append(f" {fmt.format(last)}")
                line.append(f" {fmt.format(lo)}…{fmt.format(hi)}", style="dim")
            lines.append(line)
        for line in lines:
            line.truncate(max(1, self.size.width), overflow="ellipsis")
        return Text("\n").join(lines)


def spark_levels(counts: tuple[int, ...]) -> list[int]:
    """Each bin's height in eighths of its histogram's fullest bin: 0 only for an empty bin, else 1..8."""
    top = max(counts, default=0)
    return [0 if c <= 0 or top <= 0 else max(1, round(8 * c / top)) for c in counts]


LABEL_CELLS, MEAN_CELLS, GAP_CELLS = len("m1 short "), len(" 0.250"), len("  ")


def gate_layout(width: int) -> tuple[int, bool]:
    """(columns, whether the means fit): the two memories side by side with their means where that fits,
    else side by side without them (the stats pane has them), else one under the other."""
    two = len(MEMORIES)
    if width >= two * (LABEL_CELLS + GATE_BINS + MEAN_CELLS) + GAP_CELLS:
        return two, True
    if width >= two * (LABEL_CELLS + GATE_BINS) + GAP_CELLS:
        return two, False
    return 1, True


class GateHistograms(GuardedWidget):
    """The memories' per-neuron gates, one histogram per source over [0, 1], with each source's mean."""

    DEFAULT_CSS = "GateHistograms { height: auto; }"

    def __init__(self, view_key: str) -> None:
        super().__init__(id="gate-hist")
        self.snapshot: Snapshot | None = None
        self.view_key = view_key  # the key that shows the next view (the pane's toggle_window_plot)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return 1 + len(MEMORIES) * len(GATE_SOURCES) // gate_layout(width)[0]

    def render(self) -> Text:
        snap = self.snapshot
        hist = snap.gate_hist if snap is not None else {}
        stats = snap.stats if snap is not None else {}
        columns, means = gate_layout(self.size.width)
        room = self.size.width // columns - LABEL_CELLS - (MEAN_CELLS if means else 0) - GAP_CELLS
        cells = max(1, room // GATE_BINS)  # each bin this many cells wide
        back = f" ({self.view_key}: weightings)"
        head = (f"gates per neuron, {GATE_BINS} bins over 0…1{', mean' if means else ''}{back}" if hist
                else "gate means (their histograms come from a live or attached run)")
        lines = [Text(head, style="dim")]
        rows = [(m, src, colour) for m in MEMORIES for src, colour in GATE_SOURCES]
        per_column = len(rows) // columns
        for r in range(per_column):
            line = Text()
            for c in range(columns):
                m, src, colour = rows[c * per_column + r]
                key = MEMORY_GATE.format(memory=m, source=src)
                line.append(f"{'  ' if c else ''}m{m[3:]} {src:<5} ", style=f"bold {colour}")
                for level in spark_levels(hist.get(key, ())):
                    line.append((SPARKS[level - 1] if level else "·") * cells, style=colour if level else "dim")
                mean = stats.get(key, math.nan)
                if means:
                    line.append(f" {mean:.3f}" if math.isfinite(mean) else " —", style="dim")
            lines.append(line)
        for line in lines:  # (one line each: a long one is cut, never wrapped into the next)
            line.truncate(max(1, self.size.width), overflow="ellipsis")
        return Text("\n").join(lines)


class WindowsPane(PlotPane):
    """The windows' sizes and weightings now (bars), and one of VIEWS below them (its toggle_window_plot)."""

    REDRAW_EVERY = 2.0  # the weightings move slowly; 7 lines are the costliest plot
    NAME = "windows"
    SHORT = "windows"
    TITLE = "windows"

    view: var[str] = var(VIEWS[0], init=False)  # one of VIEWS

    @property
    def show_sizes(self) -> bool:
        return self.view == "sizes"

    @property
    def view_key(self) -> str:
        return self.kit.keys.first("toggle_window_plot")

    def action_toggle_window_plot(self) -> None:
        self.flash(f"windows: {self.next_view()}", 2)

    def next_view(self) -> str:
        """Show the next of VIEWS; its description (the status line confirms the change with it)."""
        self.view = VIEWS[(VIEWS.index(self.view) + 1) % len(VIEWS)]
        return VIEW_TEXT[self.view]

    def watch_view(self) -> None:
        gates = self.view == "gates"
        hist = self.query_one(GateHistograms)
        hist.display = gates
        if gates:
            hist.snapshot = self.snapshot
            hist.refresh(layout=True)
        self._fit()
        self.want_redraw()  # on the next tick, as the loss pane's settings

    def on_resize(self) -> None:
        self._fit()

    @property
    def trends_shown(self) -> bool:
        return bool(self.query_one(WindowTrends).display)

    def _fit(self) -> None:
        """What fits below the bars: the plot where it has two rows per window, else the trends (80x24, the
        wide grid); the gates view in a pane too short for the bars and the histograms (the wide grid's least
        height) shows the histograms alone: they are what the user asked to see."""
        bars = self.query_one(WindowBars)
        size = self.content_size
        n = max(1, windows_in(bars.stats))
        gates = self.view == "gates"
        need = n + 1 + self.query_one(GateHistograms).get_content_height(size, size, size.width)  # (+1: its margin)
        bars.display = not gates or size.height >= need
        below = size.height - (n + 1)
        trends = not gates and below < PLOT_FRAME_ROWS + PLOT_ROWS_PER_WINDOW * n
        if trends != self.trends_shown or gates:
            self.border_subtitle = ""
        was = self.trends_shown
        self.query_one(WindowTrends).display = trends
        self.query_one(Plot).display = not gates and not trends
        if trends != was:
            self.want_redraw()

    def compose(self) -> ComposeResult:
        depth = self.calligraphist.depth
        yield WindowBars(depth)
        yield Plot(id="windows-plot")
        trends = WindowTrends(depth)
        trends.display = False
        yield trends
        hist = GateHistograms(self.view_key)
        hist.display = False
        yield hist

    def show_snapshot(self) -> None:
        snap = self.snapshot
        if snap is None:
            return
        bars = self.query_one(WindowBars)
        grew = windows_in(snap.stats) != windows_in(bars.stats)
        bars.stats = snap.stats
        bars.refresh(layout=grew)
        if grew:
            self._fit()
        if self.view == "gates":
            hist = self.query_one(GateHistograms)
            hist.snapshot = snap
            hist.refresh()

    def _what(self, n: int) -> str:
        """The view's title: what it shows, that the colours are the bars', and the key to the next view."""
        what = "sizes over steps, log" if self.show_sizes else "weightings over steps"
        same = 1 < n <= len(WINDOW_HUES)  # every line has its own colour, as its bar above
        # (short: plotext drops a title wider than the plot)
        shown = f"{self.view_key}: {'gates' if self.show_sizes else 'sizes'}"
        return f"{what} (#0…#{n - 1} as above; {shown})" if same else f"{what} ({shown})"

    def redraw(self) -> None:
        if self.view == "gates":
            return  # (text, shown with each snapshot)
        n = windows_in(self.snapshot.stats) if self.snapshot else 0
        stat = WINDOW_SIZE if self.show_sizes else WINDOW_WEIGHT
        if self.trends_shown:
            trends = self.query_one(WindowTrends)
            trends.series = [series(self.history, REGISTRY.key(stat, i), trends.cells) for i in range(n)]
            trends.log_scale, trends.drawn_cells = self.show_sizes, trends.cells
            trends.refresh(layout=True)
            self.border_subtitle = self._what(n)  # (no room for a title line)
            return
        self.border_subtitle = ""
        plot = self.query_one(Plot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        points = min(MAX_POINTS, max(50, plot.size.width))  # 7 lines: plotext's cost grows with points
        depth = self.calligraphist.depth
        drawn: list[int] = []
        for i in range(n):
            steps, values = self.history.series(REGISTRY.key(stat, i), points) if self.history else ([], [])
            x, y = finite(steps, values, positive=self.show_sizes)
            if x:
                marker = "braille" if depth is not Depth.NONE else WINDOW_MARKERS[i % len(WINDOW_MARKERS)]
                plt.plot(x, y, color=plot_colour(window_hue(i), depth), marker=marker)
                drawn += x[:1] + x[-1:]
        if self.show_sizes and drawn:
            plt.yscale("log")  # sizes span 1 .. the context: a log axis keeps the small ones apart
        integer_ticks(plt, drawn)
        plt.title(self._what(n))
        plt.xlabel("step")
        plot.mark_drawn()
        plot.replot()


def series(history: History | None, name: str, cells: int) -> list[float]:
    """A stat's values over steps for a sparkline of `cells` cells (one point a cell at most)."""
    return history.series(name, cells)[1] if history is not None else []
