"""Windows pane: the window weightings and sizes now (bars) and, below them, one of three views (the w key):
the weightings over steps, the sizes over steps (plots), or the memories' per-neuron gates as histograms."""

from __future__ import annotations

import math

from rich.text import Text
from textual.app import ComposeResult
from textual.geometry import Size
from textual.reactive import var

from babyllm.snapshot import Snapshot
from babyllm.stats import GATE_BINS, MEMORIES, MEMORY_GATE, MEMORY_SOURCES, REGISTRY, WINDOW_SIZE, WINDOW_WEIGHT
from tui.widgets.base import GuardedWidget, PlotPane
from tui.widgets.plotting import Plot, finite, integer_ticks

MAX_POINTS = 400  # per window
# One colour per window, the seven an 8-colour terminal (TERM=xterm) has besides black, so the seven
# lines stay distinct everywhere; "default" is the theme's foreground (light themes too). The bars'
# "#k" labels in the same colours are the plot's legend.
PLOT_COLOURS = ("blue", "cyan", "green", "yellow", "red", "magenta", "default")
TEXT_COLOURS = ("blue", "cyan", "green", "yellow", "red", "magenta", "default")
VIEWS = ("weightings", "sizes", "gates")  # what the w key cycles through, below the bars
VIEW_TEXT = {"weightings": "weightings over steps", "sizes": "sizes over steps",
             "gates": "memory gate histograms"}
# The memories' sources (babyllm.stats.MEMORY_SOURCES, the model's order), each with its colour.
GATE_COLOURS = ("blue", "cyan", "green", "magenta")
GATE_SOURCES = tuple(zip(MEMORY_SOURCES, GATE_COLOURS, strict=True))
SPARKS = "▁▂▃▄▅▆▇█"


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
        self.query_one(Plot).display = not gates
        hist = self.query_one(GateHistograms)
        hist.display = gates
        if gates:
            hist.snapshot = self.snapshot
            hist.refresh(layout=True)
        self._fit()
        self.want_redraw()  # on the next tick, as the loss pane's settings

    def on_resize(self) -> None:
        self._fit()

    def _fit(self) -> None:
        """The gates view in a pane too short for the bars and the histograms (the wide grid's least
        height) shows the histograms alone: they are what the user asked to see."""
        bars = self.query_one(WindowBars)
        size = self.content_size
        need = (max(1, windows_in(bars.stats)) + 1  # (its margin)
                + self.query_one(GateHistograms).get_content_height(size, size, size.width))
        bars.display = self.view != "gates" or size.height >= need

    def compose(self) -> ComposeResult:
        yield WindowBars()
        yield Plot(id="windows-plot")
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

    def redraw(self) -> None:
        if self.view == "gates":
            return  # (text, shown with each snapshot)
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
        shown = f"{self.view_key}: {'gates' if self.show_sizes else 'sizes'}"
        plt.title(f"{what} (#0…#{n - 1} as above; {shown})" if same else what)
        plt.xlabel("step")
        plot.mark_drawn()
        plot.replot()
