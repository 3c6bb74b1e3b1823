"""System pane: the TRAINING process's CPU and memory, the machine's memory and the GPU (babyllm.system).

The readings come in the snapshot, so an attached cockpit shows the training machine's numbers; a
viewer following a run's files has none and says so.
"""

from __future__ import annotations

import math

from rich.text import Text
from textual.app import ComposeResult
from textual.geometry import Size

from babyllm.system import BY_KEY
from tui.widgets.base import GuardedWidget, Pane
from tui.widgets.windows import bar

NO_READINGS = "no system readings: only a live run sends them"  # (a file-following viewer has none)
LABEL = 10  # cells for a line's label
BAR_MAX = 30
BAR_MIN = 3
BAR_STYLE = "#5575f9"

Line = tuple[str, float, str]  # label, bar fraction (nan: a blank bar), the value's text


def _get(readings: dict[str, float], key: str) -> float:
    v = readings.get(key, math.nan)
    return v if math.isfinite(v) else math.nan


def _text(key: str, readings: dict[str, float]) -> str:
    return BY_KEY[key].text(_get(readings, key))


def _of(used: float, total: float) -> float:
    return used / total if total > 0 else math.nan


def system_lines(r: dict[str, float]) -> list[Line]:
    """What the pane shows, one line each: CPU, machine memory, then the GPU's when present."""
    lines: list[Line] = []
    if "cpu_percent" in r or "cpu_cores" in r:
        lines.append((BY_KEY["cpu_percent"].label, _of(_get(r, "cpu_percent"), 100 * _get(r, "cpu_cores")),
                      f"{_text('cpu_percent', r)} of {_text('cpu_cores', r)} {BY_KEY['cpu_cores'].label}"))
    if "mem_total_gib" in r:
        used = _get(r, "mem_total_gib") - _get(r, "mem_available_gib")
        lines.append((BY_KEY["mem_total_gib"].label, _of(used, _get(r, "mem_total_gib")),
                      f"{BY_KEY['mem_total_gib'].number(used)}/{_text('mem_total_gib', r)}"))
    if "gpu_util" in r:  # (NVML) with the temperature and power on the same line
        extra = "".join(f"  {_text(k, r)}" for k in ("gpu_temp_c", "gpu_power_w") if k in r)
        lines.append((BY_KEY["gpu_util"].label, _get(r, "gpu_util") / 100, _text("gpu_util", r) + extra))
    if "gpu_mem_used_gib" in r:
        used, total = _get(r, "gpu_mem_used_gib"), _get(r, "gpu_mem_total_gib")
        allocated = f" ({_text('gpu_mem_allocated_gib', r)} {BY_KEY['gpu_mem_allocated_gib'].label})" \
            if "gpu_mem_allocated_gib" in r else ""
        lines.append((BY_KEY["gpu_mem_used_gib"].label, _of(used, total),
                      f"{BY_KEY['gpu_mem_used_gib'].number(used)}/{_text('gpu_mem_total_gib', r)}{allocated}"))
    return lines


def rss_note(r: dict[str, float]) -> str:
    """The pane's subtitle: this process's resident memory ("" without it)."""
    return f"{BY_KEY['rss_gib'].label} {_text('rss_gib', r)}" if "rss_gib" in r else ""


class SystemView(GuardedWidget):
    """The readings as labelled bars (drawn in render(), so the bars fit the current width)."""

    DEFAULT_CSS = "SystemView { height: auto; }"

    def __init__(self) -> None:
        super().__init__(id="system-view")
        self.lines: list[Line] = []

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return max(1, len(self.lines))

    def build(self, readings: dict[str, float]) -> None:
        lines = system_lines(readings)
        layout = len(lines) != len(self.lines)
        self.lines = lines
        self.refresh(layout=layout)

    def render(self) -> Text:
        if not self.lines:
            return Text(NO_READINGS, style="dim", no_wrap=True, overflow="ellipsis")
        longest = max(len(value) for _, _, value in self.lines)
        width = max(0, min(BAR_MAX, self.size.width - LABEL - longest - 1))
        width = width if width >= BAR_MIN else 0  # too narrow for a bar: the values alone
        out = Text(no_wrap=True, overflow="ellipsis")
        for i, (label, fraction, value) in enumerate(self.lines):
            out.append(f"{label:<{LABEL}}", style="dim")
            if width:
                out.append(bar(fraction, width), style=BAR_STYLE)  # (blank when the fraction is not known)
                out.append(" ")
            out.append(value)
            if i + 1 < len(self.lines):
                out.append("\n")
        return out


class SystemPane(Pane):
    """Shows the latest snapshot's system readings."""

    NAME = "system"
    SHORT = "system"
    TITLE = "system"

    def compose(self) -> ComposeResult:
        yield SystemView()

    def show_snapshot(self) -> None:
        if self.snapshot is not None:
            self.query_one(SystemView).build(self.snapshot.system)
            self.border_subtitle = rss_note(self.snapshot.system)
