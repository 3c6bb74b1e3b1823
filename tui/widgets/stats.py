"""Stats pane: the Calligraphist's banded grid, the band legend and the focused stat's thresholds."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from babyllm.calligraphist import BANDS, format_value
from babyllm.snapshot import Snapshot
from babyllm.stats import HIGHER, LOWER, NEUTRAL
from tui.widgets.base import GuardedStatic, Pane, PaneKit, update_static

ARROWS = {LOWER: "≤", HIGHER: "≥"}


class StatsPane(Pane):
    """Every stat, banded by the Calligraphist, and the thresholds of the focused one (its cycle_stat and
    focus_stat actions move it)."""

    NAME = "stats"
    SHORT = "stats"
    UPDATES = ("cycle", "set_stat")
    TITLE = "stats"

    def __init__(self, key: str, kit: PaneKit) -> None:
        super().__init__(key, kit)
        self.focus_stat = "loss"

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="stats-scroll"):
            yield GuardedStatic(Text("waiting for the first step…", style="dim"), id="stats-grid")
        yield GuardedStatic(id="stats-bands")

    def on_mount(self) -> None:
        keys = self.kit.keys
        self.border_subtitle = f"{keys.first('cycle_stat(-1)')} {keys.first('cycle_stat(1)')} stat"
        self.query_one("#stats-bands", Static).update(self.bands_text())

    def show_snapshot(self) -> None:
        snap = self.snapshot
        if snap is None or not snap.stats:
            return
        # A layout pass of the whole screen costs ~50 ms at 200x50, so the grid asks for one only when
        # its line count changes (values widening can change how many cells fit a row).
        grid_widget = self.query_one("#stats-grid", Static)
        grid = self.calligraphist.grid(snap.stats)
        update_static(grid_widget, grid, key=grid.line_count(grid_widget.content_region.width))
        update_static(self.query_one("#stats-bands", Static), self.bands_text())

    # -- its actions (their keys: tui.actions) ----------------------------------------------------

    def action_cycle_stat(self, delta: int) -> None:
        self.cycle(delta)

    def action_focus_stat(self, name: str) -> None:
        self.set_stat(name)

    def cycle(self, delta: int) -> None:
        """Focus the next/previous stat (whose band thresholds are shown)."""
        snap = self.snapshot
        # the grid's order
        names = sorted(snap.stats, key=self.calligraphist.registry.order) if snap and snap.stats else []
        if not names:
            return
        i = names.index(self.focus_stat) if self.focus_stat in names else -delta
        self.set_stat(names[(i + delta) % len(names)])

    def set_stat(self, name: str) -> None:
        self.focus_stat = name
        update_static(self.query_one("#stats-bands", Static), self.bands_text())

    def bands_text(self) -> Group:
        """The legend, with each band's threshold for the focused stat when it has them."""
        calli = self.calligraphist
        name = self.focus_stat
        snap = self.snapshot
        value = snap.stats.get(name) if snap else None
        head = Text.assemble((f"{calli.registry.label(name)} ", "bold"))
        try:
            thresholds = dict(calli.bands[name])
        except KeyError:
            thresholds = {}
        if value is not None:
            band = calli.band(name, value)
            head.append_text(calli.text(name, value))
            head.append(f"  {band or 'not banded'}", style=calli.style(band) if band else "dim")
        if not thresholds:
            why = ("  (neutral: no bands)" if calli.direction(name) == NEUTRAL
                   else f"  (banded after {calli.min_history} varying values)")
            head.append(why, style="dim")
            return Group(head, calli.legend(), *overrides_lines(snap))
        arrow = ARROWS.get(calli.direction(name), "")
        body = Text()
        for i, band in enumerate(BANDS):
            if band not in thresholds:
                continue
            if i:
                body.append("  ")
            body.append(band, style=calli.style(band))
            threshold = format_value(name, thresholds[band], steady=True, registry=calli.registry)
            body.append(f" {arrow}{threshold}", style="dim")
        return Group(head, body, *overrides_lines(snap))


def overrides_lines(snap: Snapshot | None) -> list[Text]:
    """The settings changed mid-run (babyllm.live), which now differ from the run's config file."""
    if snap is None or not snap.overrides:
        return []
    line = Text("set mid-run: ", style="bold yellow")
    line.append("  ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in snap.overrides.items()),
                style="yellow")
    return [line]
