"""One-line status bar under the header: state, step, loss, speed; turns into a red banner on an alarm."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from babyllm.calligraphist import format_value
from babyllm.snapshot import Snapshot
from tui.widgets.timing import duration, eta_seconds

STATE_STYLES = {
    "starting": "bold yellow", "running": "bold green", "paused": "bold yellow", "alarm": "bold white on red",
    "stopping": "bold yellow", "stopped": "bold", "finished": "bold cyan", "error": "bold white on red",
}


class StatusBar(Static):
    DEFAULT_CSS = "StatusBar { height: 1; }"

    def show(self, snap: Snapshot | None, note: str = "") -> None:
        self.set_class(snap is not None and snap.state in ("alarm", "error"), "-alarm")
        if snap is None:
            self.update(Text.assemble((" STARTING ", STATE_STYLES["starting"]), " ", (note or "building the Tutor…", "dim")))
            return
        out = Text(no_wrap=True, overflow="ellipsis")
        out.append(f" {snap.state.upper()} ", style=STATE_STYLES.get(snap.state, "bold"))
        if snap.state == "alarm":
            out.append(f" {snap.error or 'NaN/inf: training paused'}  ", style="bold")
            out.append("space", style="bold reverse")
            out.append(" resume  ")
            out.append("r", style="bold reverse")
            out.append(" roll back to last save")
            self.update(out, layout=False)
            return
        if snap.state == "error":
            out.append(f" {snap.error or 'the Tutor stopped with an error'}")
            self.update(out, layout=False)
            return
        out.append(f" step {snap.step:,}")
        if snap.max_steps:
            out.append(f"/{snap.max_steps:,}")
        s = snap.stats
        calli = self.app.calligraphist  # type: ignore[attr-defined]
        if "loss" in s:
            out.append("  loss ", style="dim")
            out.append_text(calli.text("loss", s["loss"]))
        if "val_loss" in s:
            out.append("  val ", style="dim")
            out.append_text(calli.text("val_loss", s["val_loss"]))
        if "tokens_per_s" in s:
            out.append(f"  {format_value('tokens_per_s', s['tokens_per_s'])} tok/s", style="dim")
        left = eta_seconds(snap.step, snap.max_steps, s.get("step_ms", float("nan")))
        if left is not None:
            out.append(f"  ETA {duration(left)}", style="dim")
        if note:
            out.append(f"  {note}", style="italic")
        self.update(out, layout=False)
