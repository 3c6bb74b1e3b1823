"""Small helpers for the plot panes: smoothing and a PlotextPlot that only rebuilds when told to."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, cast

from rich.color import Color
from rich.text import Text
from textual_plotext import PlotextPlot

from babyllm.calligraphist import Depth, Hue
from tui.widgets.base import Guarded, pane_of


def ema(values: list[float], strength: float) -> list[float]:
    """Exponential moving average; strength 0 = raw, 0.99 = very smooth. NaN/inf points are skipped."""
    if strength <= 0 or not values:
        return list(values)
    out: list[float] = []
    acc = math.nan
    for v in values:
        if math.isfinite(v):
            acc = v if math.isnan(acc) else strength * acc + (1 - strength) * v
        out.append(acc)
    return out


def finite(steps: list[int], values: list[float], positive: bool = False) -> tuple[list[int], list[float]]:
    """Drop NaN/inf points (and non-positive ones for a log axis)."""
    keep = [(s, v) for s, v in zip(steps, values, strict=True) if math.isfinite(v) and (v > 0 or not positive)]
    return [s for s, _ in keep], [v for _, v in keep]


# Below this many cells plotext's axes collide (y labels run into each other, a zero-height canvas
# inverts them): the plot shows a note instead.
MIN_WIDTH = 30
MIN_HEIGHT = 6


def plot_colour(hue: Hue, depth: Depth) -> str | int | tuple[int, int, int]:
    """A hue as plotext takes it, so a plotted line is the very colour Rich gives the same hue: an RGB triple
    (truecolour, 256), the ANSI colour's number among 16 (plotext's own names follow its theme: its "yellow"
    can be bright blue), "default" for the theme's foreground or without colour."""
    colour = Color.parse(hue.at(depth) or "default")
    if colour.triplet is not None:
        return tuple(colour.triplet)  # type: ignore[return-value]
    return "default" if colour.number is None else colour.number


def integer_ticks(plt: Any, steps: Sequence[float], count: int = 5,
                  label: Callable[[int], str] = "{:,}".format) -> None:
    """x axis ticks on round whole numbers (plotext would print 1047.5), each written by `label`
    (thousands separators for steps)."""
    if not steps:
        return
    lo, hi = math.floor(min(steps)), math.ceil(max(steps))
    if hi <= lo:
        plt.xticks([lo], [label(lo)])
        return
    span = (hi - lo) / max(1, count - 1)
    magnitude = 10 ** max(0, len(str(int(span))) - 1)
    stride = max(1, math.ceil(span / magnitude) * magnitude)
    ticks = list(range(math.ceil(lo / stride) * stride, hi + 1, stride))
    plt.xticks(ticks, [label(t) for t in ticks])


class Plot(Guarded, PlotextPlot):
    """A PlotextPlot that caches its last build: re-rendering (scrolling, focus) never re-plots.

    Plots carry no plotext labels (the panes print their own legend): plotext's legend indexes
    each labelled series' visible points and raises IndexError when a series has none on the
    canvas (a log axis after a theme switch did it).
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._cache: tuple[tuple[int, int, str, int], Text] | None = None
        self.version = 0
        self.drawn_size: tuple[int, int] | None = None  # the size the data was last chosen for

    def mark_drawn(self) -> None:
        self.drawn_size = (self.size.width, self.size.height)

    def on_resize(self) -> None:
        """A new size means a new number of points per column: have the pane redraw on the next tick."""
        if self.drawn_size is not None and self.drawn_size != (self.size.width, self.size.height):
            pane = pane_of(self)
            if pane is not None:
                pane.want_redraw()

    def replot(self) -> None:
        self.version += 1
        self.refresh()

    def render(self) -> Text:
        if self.size.width < MIN_WIDTH or self.size.height < MIN_HEIGHT:
            note = "enlarge the terminal to see the plot"
            return Text(note if self.size.width >= len(note) else "enlarge the terminal", style="dim italic")
        key = (self.size.width, self.size.height, self.app.theme, self.version)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, cast(Text, super().render()))  # plotext renders a Text
        return self._cache[1]
