"""Timing pane: the Counsellor's per-section breakdown, tokens/s, step time and the ETA."""

from __future__ import annotations

import math

from rich.text import Text
from textual.app import ComposeResult
from textual.geometry import Size

from babyllm.calligraphist import Calligraphist, format_value
from babyllm.durations import duration
from babyllm.snapshot import Snapshot
from babyllm.stats import REGISTRY, TIMING_PREFIX
from tui.widgets.base import GuardedWidget, Pane
from tui.widgets.windows import bar

ORDER = REGISTRY.timings()


def section_names(stats: dict[str, float]) -> list[str]:
    """The Counsellor's sections in training order, then any others."""
    return [n for n in ORDER if n in stats] + sorted(n for n in stats if n.startswith(TIMING_PREFIX) and n not in ORDER)


class TimingView(GuardedWidget):
    """The sections' times as bars, the token rate, the step time and the ETA."""

    DEFAULT_CSS = "TimingView { height: auto; }"

    def __init__(self) -> None:
        super().__init__(id="timing-view")
        self.lines = 1
        self.shown: tuple[Snapshot, float | None] | None = None
        self.calligraphist: Calligraphist | None = None

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return self.lines

    def build(self, snap: Snapshot, rate: float | None, calligraphist: Calligraphist) -> None:
        """Show this snapshot's timings (and the header's mean tokens/s, when known); the text itself is made
        in render(), so the bars always fit the current width."""
        lines = len(section_names(snap.stats)) + 2
        self.shown = (snap, rate)
        self.calligraphist = calligraphist
        self.refresh(layout=lines != self.lines)
        self.lines = lines

    def render(self) -> Text:
        if self.shown is None or self.calligraphist is None:
            return Text("no timings yet", style="dim")
        snap, mean = self.shown
        stats = snap.stats
        calli = self.calligraphist
        names = section_names(stats)
        total = sum(stats[n] for n in names if math.isfinite(stats[n])) or 1.0
        width = max(0, min(40, self.size.width - 28))  # the rest of a line is 28 cells: name, value, share
        out = Text(no_wrap=True, overflow="ellipsis")
        for n in names:
            v = stats[n]
            share = v / total if math.isfinite(v) else 0.0
            out.append(f"{REGISTRY.label(n):<10}", style="dim")
            value = calli.text(n, v)
            out.append(" " * max(0, 7 - value.cell_len))
            out.append_text(value)
            out.append(" ms  ", style="dim")
            out.append(bar(share, width), style="#5575f9")
            out.append(f" {share:4.0%}\n")
        # the header's rate (a 10 s mean), so the two never disagree; the Tutor's one-step figure until then
        out.append("avg tok/s " if mean is not None else "tok/s     ", style="dim")
        if mean is not None:
            out.append(format_value("tokens_per_s", mean))
        else:
            rate = stats.get("tokens_per_s")
            out.append_text(calli.text("tokens_per_s", rate) if rate is not None else Text("?"))
        out.append("   step ", style="dim")
        out.append_text(calli.text("step_ms", stats["step_ms"]) if "step_ms" in stats else Text("?"))
        out.append(" ms", style="dim")
        if "mfu" in stats:  # model FLOPs utilisation: the run's first events say against which peak
            out.append("   MFU ", style="dim")
            out.append_text(calli.text("mfu", stats["mfu"]))
        out.append_text(self._limits(snap))
        return out

    @staticmethod
    def _limits(snap: Snapshot) -> Text:
        """One line: the step limit or the time budget (train.minutes; both where both are set), each with its
        progress, then the ETA to the nearer one."""
        step, limit, left = snap.step, snap.max_steps, snap.seconds_left()
        parts = [f"{step:,}/{limit:,} ({step / limit:.0%})"] if limit else []
        if snap.max_minutes > 0:
            used, budget = snap.stats.get("train_s", 0.0), 60.0 * snap.max_minutes
            parts.append(f"{duration(used)}/{duration(budget)} trained ({used / budget:.0%})")
        label = "limits" if len(parts) == 2 else "budget" if snap.max_minutes > 0 else "steps"
        out = Text(f"\n{label:<10}" + (" · ".join(parts) if parts else f"{step:,} (no limit)"), style="dim")
        out.append_text(Text(f"   ETA {duration(left)}", style="bold") if left is not None else
                        Text("   ETA " + ("?" if parts else "-"), style="dim"))
        return out


class TimingPane(Pane):
    """Shows the latest snapshot's timings."""

    NAME = "timing"
    SHORT = "timing"
    TITLE = "timing"

    def compose(self) -> ComposeResult:
        yield TimingView()

    def show_snapshot(self) -> None:
        snap = self.snapshot
        if snap is None or not snap.stats:
            return
        self.query_one(TimingView).build(snap, self.rate, self.calligraphist)
