"""The cockpit's one list of panes: each pane's number key and its place in the wide grid.

A new pane is its module and one line in PANES: the tabs, the number keys, the help's "1 … N", the
palette's "Show pane" entries and the wide grid's CSS all follow from this list.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tui.widgets import ChatPane, EventsPane, LossPane, SamplePane, StatsPane, SystemPane, TimingPane, WindowsPane
from tui.widgets.base import Pane


@dataclass(frozen=True)
class PaneSlot:
    """A pane class, its number key and how many rows and columns of the wide grid it spans.

    The grid is filled in PANES order, left to right, top to bottom (Textual's grid has no explicit
    placement), so a pane's place follows from the spans of those before it.
    """

    pane: type[Pane]
    key: str
    rows: int = 1
    columns: int = 1


# The wide grid (a terminal of at least WIDE_COLUMNS x WIDE_ROWS):
#   stats  | loss    | chat
#   stats  | windows | chat
#   timing | sample  | log
#   timing | sample  | system
PANES: tuple[PaneSlot, ...] = (
    PaneSlot(StatsPane, "1", rows=2),
    PaneSlot(LossPane, "2"),
    PaneSlot(ChatPane, "3", rows=2),
    PaneSlot(WindowsPane, "4"),
    PaneSlot(TimingPane, "5", rows=2),
    PaneSlot(SamplePane, "6", rows=2),
    PaneSlot(EventsPane, "7"),
    PaneSlot(SystemPane, "8"),
)
GRID_COLUMNS = ("2fr", "3fr", "2fr")
# The last two rows are short: timings, the sample, the log and the system readings are lines of text
# (the system pane's four lines and its border fill its row; the log shows its newest four). The first
# row gets a little more than the second: at the wide layout's least height (tui.app.WIDE_ROWS) that is
# just enough for the loss plot (its rows, legend and border) and all seven window bars.
GRID_ROWS = ("10fr", "9fr", "6", "6")
EXTRA_ROW = "9fr"  # rows that panes beyond the twelve cells add: as tall as the second


def grid_rows_needed(panes: Sequence[PaneSlot], columns: int = len(GRID_COLUMNS)) -> int:
    """How many rows the grid needs to place the panes in order (each pane in the first free cell)."""
    taken: set[tuple[int, int]] = set()
    row = col = 0
    for p in panes:
        while (row, col) in taken:
            row, col = (row + 1, 0) if col + 1 >= columns else (row, col + 1)
        taken |= {(row + r, col + c) for r in range(p.rows) for c in range(min(p.columns, columns - col))}
    return max((r for r, _ in taken), default=-1) + 1


def grid_css(panes: Sequence[PaneSlot]) -> str:
    """The wide layout's CSS (the compact one, one pane at a time, is in cockpit.tcss)."""
    rows = grid_rows_needed(panes)
    heights = [*GRID_ROWS[:rows], *[EXTRA_ROW] * max(0, rows - len(GRID_ROWS))]
    out = [f"#panes.-wide {{ layout: grid; grid-size: {len(GRID_COLUMNS)} {rows}; "
           f"grid-columns: {' '.join(GRID_COLUMNS)}; grid-rows: {' '.join(heights)}; }}"]
    for p in panes:
        if p.rows > 1 or p.columns > 1:
            out.append(f"#panes.-wide > #{p.pane.NAME} {{ row-span: {p.rows}; column-span: {p.columns}; }}")
    return "\n".join(out)
