"""Small helpers for the plot panes: smoothing and a PlotextPlot that only rebuilds when told to."""

from __future__ import annotations

import math

from rich.text import Text
from textual_plotext import PlotextPlot


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
    keep = [(s, v) for s, v in zip(steps, values) if math.isfinite(v) and (v > 0 or not positive)]
    return [s for s, _ in keep], [v for _, v in keep]


class Plot(PlotextPlot):
    """A PlotextPlot that caches its last build: re-rendering (scrolling, focus) never re-plots."""

    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(**kwargs)
        self._cache: tuple[tuple[int, int, str, int], Text] | None = None
        self.version = 0
        self.drawn_size: tuple[int, int] | None = None  # the size the data was last chosen for

    def mark_drawn(self) -> None:
        self.drawn_size = (self.size.width, self.size.height)

    def on_resize(self) -> None:
        """A new size means a new number of points per column: have the pane redraw on the next tick."""
        if self.drawn_size is not None and self.drawn_size != (self.size.width, self.size.height):
            pane = next((a for a in self.ancestors if getattr(a, "NAME", None)), None)
            if pane is not None:
                self.app.request_redraw(pane.NAME)  # type: ignore[attr-defined]

    def replot(self) -> None:
        self.version += 1
        self.refresh()

    def render(self) -> Text:  # type: ignore[override]
        key = (self.size.width, self.size.height, self.app.theme, self.version)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, super().render())  # type: ignore[arg-type]
        return self._cache[1]
