"""Loss pane: train and validation curves with smoothing and log-scale toggles, plus best/last/min."""

from __future__ import annotations

import math

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Static

from babyllm.calligraphist import format_value
from tui.widgets.base import PlotPane, update_static
from tui.widgets.plotting import Plot, ema, finite

MAX_POINTS = 1000


class LossPane(PlotPane):
    KEY = "2"
    NAME = "loss"
    SHORT = "loss"
    TITLE = "loss"

    def compose(self) -> ComposeResult:
        yield Plot(id="loss-plot")
        yield Static(Text("no steps yet", style="dim"), id="loss-info")

    def redraw(self) -> None:
        app = self.cockpit
        history = app.history
        plot = self.query_one(Plot)
        # about two points per column (braille resolution), never more than MAX_POINTS
        points = min(MAX_POINTS, max(100, 2 * plot.size.width))
        steps, train = history.series("loss", points) if history else ([], [])
        vsteps, val = history.series("val_loss", points) if history else ([], [])
        strength = app.smoothing if app.smoothing_on else 0.0
        log = app.log_scale
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        x, y = finite(steps, ema(train, strength), positive=log)
        if x:
            plt.plot(x, y, label="train", color="cyan", marker="braille")
        vx, vy = finite(vsteps, val, positive=log)
        if vx:
            plt.plot(vx, vy, label="val", color="orange", marker="braille")
        plt.yscale("log" if log else "linear")
        plt.xlabel("step")
        plot.mark_drawn()
        plot.replot()
        plot.border_title = None
        self.border_subtitle = f"{'log' if log else 'lin'} · smooth {f'{strength:.2f}' if strength else 'off'}"
        update_static(self.query_one("#loss-info", Static), self.info(steps, train, vsteps, val))

    @staticmethod
    def info(steps: list[int], train: list[float], vsteps: list[int], val: list[float]) -> Text:
        if not train:
            return Text("no steps yet", style="dim")
        text = Text()
        LossPane._describe(text, "train ", "bold cyan", "loss", "min", steps, train)
        if val:
            LossPane._describe(text, "   val ", "bold #ff8c00", "val_loss", "best", vsteps, val)
        return text

    @staticmethod
    def _describe(text: Text, title: str, style: str, stat: str, lowest: str, steps: list[int],
                  values: list[float]) -> None:
        """Append 'title last X  lowest Y @step' for one series (the lowest over its finite values)."""
        text.append(title, style=style)
        text.append(f"last {format_value(stat, values[-1])}")
        finite = [(v, s) for s, v in zip(steps, values) if math.isfinite(v)]
        if finite:
            best, at = min(finite)
            text.append(f"  {lowest} {format_value(stat, best)} @{at}")
