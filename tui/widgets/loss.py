"""Loss pane: train and validation curves with smoothing and log-scale toggles, plus last/lowest.

Validation is shown in bits per byte when the Tutor publishes ``val_bpb`` (on the right-hand axis,
next to the constant ``unigram_bpb`` reference line), else as a loss in nats per token like train.
Other runs picked for comparison (babyllm.run.overlay) are drawn under the current run's curves, dimmer,
each in its own colour (OVERLAY_COLOURS); x is the step or the tokens seen, for every curve alike.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.reactive import var
from textual.widgets import Static

from babyllm.calligraphist import format_value
from babyllm.run.curves import tokens_at
from babyllm.run.overlay import Overlay, ReferenceRun, runs_root
from babyllm.snapshot import thin
from tui.screens import RunPicker
from tui.widgets.base import GuardedStatic, PaneKit, PlotPane, update_static
from tui.widgets.plotting import Plot, ema, finite, integer_ticks

MAX_POINTS = 1000
TRAIN_STYLE, VAL_STYLE, UNIGRAM_STYLE = "bold cyan", "bold #ff8c00", "bold magenta"
SMOOTHING_STEPS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)
# The overlaid runs' colours, in the order picked (then round again): dimmer than the current run's
# bright cyan and orange, and none of them.
OVERLAY_COLOURS: tuple[tuple[int, int, int], ...] = (
    (110, 170, 90), (150, 130, 210), (200, 110, 110), (180, 170, 80), (90, 140, 200), (160, 160, 160))
OVERLAY_POLL = 2.0  # seconds between looks (one stat each) at whether an overlaid run's log grew


def overlay_colour(i: int) -> tuple[int, int, int]:
    return OVERLAY_COLOURS[i % len(OVERLAY_COLOURS)]


@dataclass(frozen=True)
class Drawn:
    """One curve as the last redraw drew it: whose ("" = the current run), which, its points and its y axis."""

    run: str
    curve: str  # train | val | unigram
    x: list[float]
    y: list[float]
    side: str = "left"


class LossPane(PlotPane):
    """Train and validation curves; log scale, smoothing and the x axis are reactive attributes, which its
    actions (tui.actions: they target this pane) change; other runs can be overlaid (the compare picker)."""

    NAME = "loss"
    SHORT = "loss"
    TITLE = "loss"

    log_scale: var[bool] = var(False, init=False)
    smoothing_on: var[bool] = var(True, init=False)
    smoothing: var[float] = var(0.9, init=False)  # the train curve's EMA strength (one of SMOOTHING_STEPS)
    x_tokens: var[bool] = var(False, init=False)  # x is the tokens seen (else the step)

    def __init__(self, key: str, kit: PaneKit) -> None:
        super().__init__(key, kit)
        self.overlay = Overlay()
        self.drawn: list[Drawn] = []  # what the last redraw drew (the tests check it)
        self._reading = False  # a worker is reading overlaid runs' logs

    def _settings_changed(self) -> None:
        self.want_redraw()  # on the next tick, not now

    watch_log_scale = watch_smoothing_on = watch_smoothing = watch_x_tokens = _settings_changed

    def on_mount(self) -> None:
        self.set_interval(OVERLAY_POLL, self.poll_overlay)

    # -- its actions (their keys: tui.actions) ----------------------------------------------------

    def action_toggle_log(self) -> None:
        self.log_scale = not self.log_scale
        self._confirm()

    def action_toggle_smoothing(self) -> None:
        self.smoothing_on = not self.smoothing_on
        self._confirm()

    def action_smoothing(self, delta: int) -> None:
        self.smoother(delta)
        self._confirm()

    def action_toggle_x_axis(self) -> None:
        self.x_tokens = not self.x_tokens
        self._confirm()

    def _confirm(self) -> None:
        self.flash(f"loss plot: {self.settings_text()}", 2)

    def action_pick_runs(self) -> None:
        self.open_picker()

    def open_picker(self) -> None:
        """The runs to compare with (tui.screens.RunPicker): the current run's siblings on this machine."""
        if isinstance(self.app.screen, RunPicker):
            return
        run_dir = self.snapshot.run_dir if self.snapshot else ""  # (this action shows the pane: it is told one)
        picker = RunPicker(runs_root(run_dir), run_dir, [r.run_dir for r in self.overlay.runs], self.kit.keys)
        self.app.push_screen(picker, self._picked)

    def _picked(self, run_dirs: list[Path] | None) -> None:
        if run_dirs is None:
            return
        self.pick(run_dirs)
        names = ", ".join(p.name for p in run_dirs)
        self.flash(f"loss plot: compared with {names}" if names else "loss plot: this run only", 3)

    def pick(self, run_dirs: list[Path]) -> None:
        """Overlay these runs (none: only the current run); they are read in a worker thread."""
        self.overlay.pick(run_dirs)
        self.poll_overlay()
        self._settings_changed()

    def poll_overlay(self) -> None:
        """Read the overlaid runs whose logs changed (never on the UI thread: a log can be large)."""
        stale = self.overlay.stale()
        if stale and not self._reading:
            self._reading = True
            self._read_overlay(stale)

    @work(thread=True, group="overlay", exit_on_error=False)
    def _read_overlay(self, runs: tuple[ReferenceRun, ...]) -> None:
        changed = True
        try:
            changed = Overlay.read(runs)
        finally:
            with contextlib.suppress(RuntimeError):  # the app closed while this read
                self.app.call_from_thread(self._overlay_read, changed)

    def _overlay_read(self, changed: bool) -> None:
        self._reading = False
        if changed:
            self._settings_changed()

    def smoother(self, delta: int) -> None:
        """Smoothing delta steps stronger (negative: weaker) along SMOOTHING_STEPS, and on."""
        steps = SMOOTHING_STEPS
        i = min(range(len(steps)), key=lambda k: abs(steps[k] - self.smoothing))
        self.smoothing = steps[max(0, min(len(steps) - 1, i + delta))]
        self.smoothing_on = True

    def settings_text(self) -> str:
        """The plot's settings in words (the status line confirms a change with it)."""
        return f"log scale {'on' if self.log_scale else 'off'}, smoothing " + (
            f"{self.smoothing:.2f}" if self.smoothing_on else "off") + f", x by {self.x_name}"

    @property
    def x_name(self) -> str:
        return "tokens" if self.x_tokens else "step"

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
        to_x = self._x_axis(history.series("tokens", points) if history and self.x_tokens else None)
        plt = plot.plt
        plt.clear_data()
        plt.clear_figure()
        self.drawn = []
        x, y = finite(steps, ema(train, strength), positive=log)
        vx, vy = finite(vsteps, val, positive=log)
        if bpb and not vx:  # (every bpb point was non-positive on a log axis: nothing for the right side)
            bpb, unigram = False, None
        side = "right" if bpb else "left"
        others = self._draw_overlay(points, strength, bpb)  # first: the current run's curves go on top
        self._curve("", "train", to_x(x), y, "cyan", "left")
        self._curve("", "val", to_x(vx), vy, "orange", side)
        xs = [p for d in self.drawn for p in d.x]
        if unigram is not None and math.isfinite(unigram) and (unigram > 0 or not log) and xs:
            ends = [min(xs), max(xs)]
            self._curve("", "unigram", ends, [unigram, unigram], "magenta", side)
            plt.text("unigram", ends[0], unigram, color="magenta", alignment="left", yside=side)
        for axis in sorted({d.side for d in self.drawn}):  # (plotext cannot scale a log axis with nothing on it)
            plt.yscale("log" if log else "linear", yside=axis)
        if bpb:
            plt.ylabel("nats/token", yside="left")  # type: ignore[call-arg]  # the stub calls it xside
            plt.ylabel("bits/byte", yside="right")  # type: ignore[call-arg]
        integer_ticks(plt, xs, label=self._tick_label)
        plt.xlabel(self.x_name)
        plot.mark_drawn()
        plot.replot()
        plot.border_title = None
        self.border_subtitle = (f"{'log' if log else 'lin'} · train smoothed {f'{strength:.2f}' if strength else 'off'}"
                                + (" · x tokens" if self.x_tokens else ""))
        last = stats.get("loss", train[-1] if train else math.nan)
        if steps and snap is not None and snap.step >= steps[-1]:
            # the plotted points are means of neighbouring steps: the last step itself counts for "min"
            steps, train = [*steps, snap.step], [*train, last]
        legend = self.info(steps, train, last, val_name, vsteps, val, unigram)
        if others.plain:
            legend.append("\n")
            legend.append_text(others)
        update_static(self.query_one("#loss-info", Static), legend)

    def _x_axis(self, tokens: tuple[list[int], list[float]] | None) -> Callable[[list[int]], list[float]]:
        """Steps -> x values: the steps themselves, or the tokens seen at them (from the run's tokens series)."""
        if tokens is None:
            return lambda steps: [float(s) for s in steps]
        return lambda steps: tokens_at(steps, *tokens)

    def _tick_label(self, value: int) -> str:
        return format_value("tokens", value, steady=True) if self.x_tokens else f"{value:,}"

    def _curve(self, run: str, curve: str, x: list[float], y: list[float], colour: str | tuple[int, int, int],
               side: str) -> None:
        if x:
            self.query_one(Plot).plt.plot(x, y, color=colour, marker="braille", yside=side)
            self.drawn.append(Drawn(run, curve, x, y, side))

    def _draw_overlay(self, points: int, strength: float, bpb: bool) -> Text:
        """The overlaid runs' curves (train, and validation in the current run's unit), each thinned to
        the pane's width; returns their legend: each name in its colour, its best validation or its note."""
        legend = Text()
        log = self.log_scale
        for i, run in enumerate(self.overlay.runs):
            colour = overlay_colour(i)
            legend.append("  " if i else "vs ")
            legend.append(f"■ {run.name}", style="rgb({},{},{})".format(*colour))
            c = run.curves
            if c is None:
                note = run.note.removeprefix(f"{run.name}: ") or "reading…"
                legend.append(f" ({note})", style="dim")
                continue
            tx, ty = thin(list(zip(c.steps, c.train, strict=True)), points)
            x, y = finite(tx, ema(ty, strength), positive=log)
            self._curve(run.name, "train", c.x(self.x_name, x), y, colour, "left")
            vals = c.val_bpb if bpb else c.val
            vx, vy = finite(*thin(list(zip(c.val_steps, vals, strict=True)), points), positive=log)
            self._curve(run.name, "val", c.x(self.x_name, vx), vy, colour, "right" if bpb else "left")
            best = min(((v, s) for s, v in zip(c.val_steps, vals, strict=True) if math.isfinite(v)), default=None)
            if best is not None:
                name = "val_bpb" if bpb else "val_loss"
                legend.append(f" best {format_value(name, best[0], steady=True)}{' bpb' if bpb else ''} @{best[1]:,}")
        return legend

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
