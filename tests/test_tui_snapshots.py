"""Screenshots of the cockpit on fixed fake data (no clocks, no randomness in what is rendered).

Update after an intended change with: pytest tests/test_tui_snapshots.py --snapshot-update
"""

from __future__ import annotations

import time

from tui.app import CockpitApp
from tui.fake import FakeTutor
from tui.widgets.events import EventLog
from tui.widgets.plotting import Plot
from tui.widgets.windows import WindowTrends


def fake_app() -> CockpitApp:
    return CockpitApp(lambda publish, say: FakeTutor(publish=publish), handle_signals=False)


async def settled(pilot) -> None:
    """Wait for the fake Tutor's snapshot and for every plot on screen to be drawn at its final size."""
    app = pilot.app

    def waiting_for() -> str:
        """What is not settled yet ("" when nothing is)."""
        plots = [p for p in app.query(Plot) if p.size.width > 0]
        logs = [log for log in app.query(EventLog) if log.size.height > 0]
        if app.snapshot is None or app._plots_dirty or app._panes_dirty:
            return "the snapshot and the panes"
        if any(p.drawn_size != (p.size.width, p.size.height) for p in plots):
            return "the plots at their size"
        if any(t.drawn_cells != t.cells for t in app.query(WindowTrends) if t.size.width > 0):
            return "the windows' trends at their width"
        if any(log.scroll_y < len(log.lines) - log.size.height for log in logs):
            return "the event log's newest lines in view"
        return ""

    def busy() -> bool:
        return bool(waiting_for())

    # Settled means idle for several checks in a row: a pane's first height change resizes the plots
    # beside it one layout pass later, so a single idle check can come too early.
    deadline = time.monotonic() + 15  # (a loaded CI machine)
    idle = 0
    while idle < 4 and time.monotonic() < deadline:
        idle = 0 if busy() else idle + 1
        await pilot.pause(0.05)
    assert not busy(), f"not settled: {waiting_for()}"


def test_main_screen_80x24(snap_compare):
    assert snap_compare(fake_app(), terminal_size=(80, 24), run_before=settled)


def test_loss_pane_80x24(snap_compare):
    async def show_loss(pilot) -> None:
        await settled(pilot)
        await pilot.press("2")
        await pilot.pause(0.1)

    assert snap_compare(fake_app(), terminal_size=(80, 24), run_before=show_loss)


def test_main_screen_160x50(snap_compare):
    assert snap_compare(fake_app(), terminal_size=(160, 50), run_before=settled)
