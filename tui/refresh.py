"""The refresh scheduler: when panes are told the newest snapshot and when their plots redraw.

Only panes on screen are updated, pane text at most every PANES_EVERY seconds and plots at most every
pane's REDRAW_EVERY (both stretched by the Pace), and only when there are new steps; a pane that comes
on screen is brought up to date at once. The UI thread's CPU is what the cockpit costs training.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from babyllm.snapshot import History, Snapshot
from tui.pace import PANES_EVERY, Pace
from tui.widgets.base import Pane, PlotPane
from tui.widgets.status import TokenRate


class Refresher:
    """Tells panes the snapshot, the token rate and the History at the pace the UI thread can afford:
    what a pane shows is pushed to it, never read from the app."""

    def __init__(self, panes: Sequence[Pane], on_screen: Callable[[Pane], bool], pace: Pace,
                 token_rate: TokenRate) -> None:
        self.panes = panes
        self.on_screen = on_screen
        self.pace = pace
        self.token_rate = token_rate
        self.snapshot: Snapshot | None = None
        self.history: History | None = None
        self.panes_dirty = False  # a snapshot the panes on screen have not been told yet
        self.plots_pending: set[str] = set()  # plot panes with new steps not yet drawn
        self._panes_updated = 0.0
        self._stale: set[str] = set()  # panes off screen that missed an update
        self._redrawn: dict[str, float] = {}  # pane -> when its plot was last redrawn

    @property
    def busy(self) -> bool:
        """Is anything waiting to be shown (tests wait for a settled screen)?"""
        return self.panes_dirty or bool(self.plots_pending)

    def tell_history(self, history: History | None) -> None:
        """The Tutor's (or Watcher's) History, which the plots draw from; every plot is due."""
        self.history = history
        for p in self.panes:
            p.history = history
        self.plots_dirty()

    def new_snapshot(self, snap: Snapshot, first: bool, changed: bool) -> None:
        """Take a snapshot: the panes are told on the next due tick (the first one at once)."""
        self.snapshot = snap
        if changed:
            self.panes_dirty = True
            self.plots_dirty()
        if first:
            self.update_panes()

    def plots_dirty(self) -> None:
        self.plots_pending.update(p.NAME for p in self.panes if isinstance(p, PlotPane))

    def tick(self) -> None:
        """Timer: pane text when due, then the plots that are due."""
        if self.panes_dirty and self.pace.due(self._panes_updated, PANES_EVERY):
            self.update_panes()
        self.redraw_plots()

    def update_panes(self) -> None:
        """Tell the panes on screen the latest snapshot; the others catch up when shown."""
        self.panes_dirty = False
        self._panes_updated = time.monotonic()
        for p in self.panes:
            if self.on_screen(p):
                self._tell(p)
            else:
                self._stale.add(p.NAME)

    def _tell(self, pane: Pane) -> None:
        if self.snapshot is not None and pane.snapshot is not self.snapshot:
            pane.rate = self.token_rate.rate()
            pane.snapshot = self.snapshot  # its watcher shows it

    def catch_up(self) -> None:
        """Bring panes that just came on screen up to date."""
        for p in self.panes:
            if p.NAME in self._stale and self.on_screen(p):
                self._stale.discard(p.NAME)
                self._tell(p)
                p.redraw()

    def request_redraw(self, name: str) -> None:
        """Redraw a pane's plot on the next tick, due or not (it was resized, or its settings changed)."""
        self._redrawn.pop(name, None)
        self.plots_pending.add(name)

    def redraw_plots(self) -> None:
        """Redraw the plots on screen that have new steps and are due."""
        if not self.plots_pending or self.history is None:
            return
        now = time.monotonic()
        due = []
        for p in self.panes:
            if not isinstance(p, PlotPane) or p.NAME not in self.plots_pending:
                continue
            if not self.on_screen(p):
                self._stale.add(p.NAME)
                self.plots_pending.discard(p.NAME)
            elif p.NAME not in self._redrawn or self.pace.due(self._redrawn[p.NAME], p.REDRAW_EVERY):
                due.append(p)
        for p in due:
            self.plots_pending.discard(p.NAME)
            self._redrawn[p.NAME] = now
            self._tell(p)  # the legend under a plot quotes the newest snapshot
            p.redraw()
