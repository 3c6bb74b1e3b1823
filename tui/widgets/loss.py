"""Loss pane: train and validation curves with smoothing and log-scale toggles, plus last/lowest.

Validation is shown in bits per byte when the Tutor publishes ``val_bpb`` (on the right-hand axis,
next to the constant ``unigram_bpb`` reference line), else as a loss in nats per token like train.
"""

from __future__ import annotations

import math

from rich.text import Text
from textual.app import ComposeResult
from textual.reactive import var
from textual.widgets import Static

from babyllm.calligraphist import format_value
from tui.widgets.base import GuardedStatic, PlotPane, update_static
from tui.widgets.plotting import Plot, ema, finite, integer_ticks

MAX_POINTS = 1000
TRAIN_STYLE, VAL_STYLE, UNIGRAM_STYLE = "bold cyan", "bold #ff8c00", "bold magenta"
SMOOTHING_STEPS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)


class LossPane(PlotPane):
    """Train and validation curves; log scale and smoothing are reactive attributes (the l, m, + and - keys)."""

    NAME = "loss"
    SHORT = "loss"
    TITLE = "loss"

    log_scale: var[bool] = var(False, init=False)
    smoothing_on: var[bool] = var(True, init=False)
    smoothing: var[float] = var(0.9, init=False)  # the train curve's EMA strength (one of SMOOTHING_STEPS)

    def _settings_changed(self) -> None:
        # On the next tick, not now: keys can come by the thousand (a paste), a redraw costs ~50 ms.
        self.cockpit.request_redraw(self.NAME)

    watch_log_scale = watch_smoothing_on = watch_smoothing = _settings_changed

    def smoother(self, delta: int) -> None:
        """Smoothing delta steps stronger (negative: weaker) along SMOOTHING_STEPS, and on."""
        steps = SMOOTHING_STEPS
        i = min(range(len(steps)), key=lambda k: abs(steps[k] - self.smoothing))
        self.smoothing = steps[max(0, min(len(steps) - 1, i + delta))]
        self.smoothing_on = True

    def settings_text(self) -> str:
        """The plot's settings in words (the status line confirms a change with it)."""
        return f"log scale {'on' if self.log_scale else 'off'}, smoothing " + (
            f"{self.smoothing:.2f}" if self.smoothing_on else "off")

    def compose(self) -> ComposeResult:
        yield Plot(id="loss-plot")
        yield GuardedStatic(Text("no steps yet", style="dim"), id="loss-info")

    def redraw(self) -> None:
        history = self.history
        snap = self.snapshot
        plot = self.query_one(Plot)
        # about two points per column (braille resolution), never more than MAX_POINTS
        points = min(MAX_POINTS, max(100, 2 * plot.size.width))
        steps, train = history.series("loss", points) if history else ([], [])
        # bits per byte on the right once a validation has given one (a series of only nan so far would
        # leave the right axis without data, and plotext cannot scale an empty log axis)
        vsteps, val = history.series("val_bpb", points) if history else ([], [])
        bpb = any(math.isfinite(v) for v in val)
        val_name = "val_bpb" if bpb else "val_loss"
        if not bpb:
            vsteps, val = history.series(val_name, points) if history else ([], [])
        stats = snap.stats if snap else {}
        unigram = stats.get("unigram_bpb") if bpb else None
        strength = self.smoothing if self.smoothing_on else 0.0
        log = self.log_scale
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        x, y = finite(steps, ema(train, strength), positive=log)
        if x:
            plt.plot(x, y, color="cyan", marker="braille")
        side = "right" if bpb else "left"
        vx, vy = finite(vsteps, val, positive=log)
        if bpb and not vx:  # (every bpb point was non-positive on a log axis: nothing for the right side)
            bpb, side, unigram = False, "left", None
        if vx:
            plt.plot(vx, vy, color="orange", marker="braille", yside=side)
        if unigram is not None and math.isfinite(unigram) and (unigram > 0 or not log) and (x or vx):
            ends = [min(x + vx), max(x + vx)]
            plt.plot(ends, [unigram, unigram], color="magenta", marker="braille", yside=side)
            plt.text("unigram", ends[0], unigram, color="magenta", alignment="left", yside=side)
        plt.yscale("log" if log else "linear", yside="left")
        if bpb:
            plt.yscale("log" if log else "linear", yside="right")
            plt.ylabel("nats/token", yside="left")  # type: ignore[call-arg]  # the stub calls it xside
            plt.ylabel("bits/byte", yside="right")  # type: ignore[call-arg]
        integer_ticks(plt, x + vx)
        plt.xlabel("step")
        plot.mark_drawn()
        plot.replot()
        plot.border_title = None
        self.border_subtitle = f"{'log' if log else 'lin'} · train smoothed {f'{strength:.2f}' if strength else 'off'}"
        last = stats.get("loss", train[-1] if train else math.nan)
        if steps and snap is not None and snap.step >= steps[-1]:
            # the plotted points are means of neighbouring steps: the last step itself counts for "min"
            steps, train = [*steps, snap.step], [*train, last]
        update_static(self.query_one("#loss-info", Static),
                      self.info(steps, train, last, val_name, vsteps, val, unigram))

    @staticmethod
    def info(steps: list[int], train: list[float], last: float, val_name: str, vsteps: list[int],
             val: list[float], unigram: float | None = None) -> Text:
        """The legend with the numbers: train's last step and lowest, validation's last and best."""
        if not train:
            return Text("no steps yet", style="dim")
        text = Text()
        text.append("train ", style=TRAIN_STYLE)
        text.append(f"last {format_value('loss', last, steady=True)}")
        LossPane._lowest(text, "loss", "min", steps, train)
        if val:
            text.append("   val ", style=VAL_STYLE)
            unit = " bpb" if val_name == "val_bpb" else ""
            text.append(f"{format_value(val_name, val[-1], steady=True)}{unit}")
            LossPane._lowest(text, val_name, "best", vsteps, val)
        if unigram is not None and math.isfinite(unigram):
            text.append("   unigram ", style=UNIGRAM_STYLE)
            text.append(f"{format_value('unigram_bpb', unigram, steady=True)} bpb")
        return text

    @staticmethod
    def _lowest(text: Text, stat: str, word: str, steps: list[int], values: list[float]) -> None:
        """Append '  word Y @step' (the lowest finite point of the plotted series)."""
        finite_points = [(v, s) for s, v in zip(steps, values, strict=True) if math.isfinite(v)]
        if finite_points:
            best, at = min(finite_points)
            text.append(f"  {word} {format_value(stat, best, steady=True)} @{at:,}")
