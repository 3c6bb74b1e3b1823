"""Windows pane: the window weightings and sizes now (bars) and the weightings over steps (plot)."""

from __future__ import annotations

import math

from rich.text import Text
from textual.app import ComposeResult
from textual.geometry import Size
from textual.reactive import var

from babyllm.stats import REGISTRY, WINDOW_SIZE, WINDOW_WEIGHT
from tui.widgets.base import Guarded, PlotPane
from tui.widgets.plotting import Plot, finite, integer_ticks

MAX_POINTS = 400  # per window
# One colour per window, the seven an 8-colour terminal (TERM=xterm) has besides black, so the seven
# lines stay distinct everywhere; "default" is the theme's foreground (light themes too). The bars'
# "#k" labels in the same colours are the plot's legend.
PLOT_COLOURS = ("blue", "cyan", "green", "yellow", "red", "magenta", "default")
TEXT_COLOURS = ("blue", "cyan", "green", "yellow", "red", "magenta", "default")


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


class WindowBars(Guarded):
    """One line per window: its size (tokens) and its weighting as bars."""

    DEFAULT_CSS = "WindowBars { height: auto; }"

    def __init__(self) -> None:
        super().__init__(id="window-bars")
        self.stats: dict[str, float] = {}

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
            colour = TEXT_COLOURS[i % len(TEXT_COLOURS)]
            if i:
                out.append("\n")
            out.append(f"#{i} ", style=f"bold {colour}")
            out.append(f"size {s:6.1f} ", style="dim")
            # log scale: sizes span 1..context
            frac = math.log(max(s, 1.0)) / math.log(max(biggest, 2.0)) if math.isfinite(s) else 0.0
            out.append(bar(frac, size_w), style=colour)
            out.append(f" weight {w:.3f} ", style="dim")
            out.append(bar(w / top, weight_w), style=colour)
        return out


class WindowsPane(PlotPane):
    """The windows' sizes and weightings now (bars) and the weightings over steps (plot)."""

    REDRAW_EVERY = 2.0  # the weightings move slowly; 7 lines are the costliest plot
    NAME = "windows"
    SHORT = "windows"
    TITLE = "windows"

    show_sizes: var[bool] = var(False, init=False)  # the plot: weightings (False) or sizes over steps (the w key)

    def watch_show_sizes(self) -> None:
        self.cockpit.request_redraw(self.NAME)  # on the next tick, as the loss pane's settings

    def compose(self) -> ComposeResult:
        yield WindowBars()
        yield Plot(id="windows-plot")

    def show_snapshot(self) -> None:
        snap = self.snapshot
        if snap is None:
            return
        bars = self.query_one(WindowBars)
        grew = windows_in(snap.stats) != windows_in(bars.stats)
        bars.stats = snap.stats
        bars.refresh(layout=grew)

    def redraw(self) -> None:
        history = self.history
        plot = self.query_one(Plot)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        n = windows_in(self.snapshot.stats) if self.snapshot else 0
        points = min(MAX_POINTS, max(50, plot.size.width))  # 7 lines: plotext's cost grows with points
        stat = WINDOW_SIZE if self.show_sizes else WINDOW_WEIGHT
        drawn: list[int] = []
        for i in range(n):
            steps, values = history.series(REGISTRY.key(stat, i), points) if history else ([], [])
            x, y = finite(steps, values, positive=self.show_sizes)
            if x:
                plt.plot(x, y, color=PLOT_COLOURS[i % len(PLOT_COLOURS)], marker="braille")
                drawn += x[:1] + x[-1:]
        if self.show_sizes and drawn:
            plt.yscale("log")  # sizes span 1 .. the context: a log axis keeps the small ones apart
        integer_ticks(plt, drawn)
        what = "sizes over steps, log" if self.show_sizes else "weightings over steps"
        same = 1 < n <= len(PLOT_COLOURS)  # every line has its own colour, as its bar above
        # (short: plotext drops a title wider than the plot)
        plt.title(f"{what} (#0…#{n - 1} as above; w: {'weights' if self.show_sizes else 'sizes'})" if same else what)
        plt.xlabel("step")
        plot.mark_drawn()
        plot.replot()
