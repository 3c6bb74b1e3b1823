"""Guess-versus-truth pane: the latest Sample, each position's guess under the true next token."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult

from babyllm.snapshot import Sample
from tui.widgets.base import GuardedWidget, Pane

HIT = "bold green"
MISS = "red"


def visible(token: str) -> str:
    """Make whitespace tokens visible and one line tall."""
    return token.replace(" ", "·").replace("\n", "↵").replace("\t", "→").replace("\r", "") or "∅"


class SampleView(GuardedWidget):
    """The sample's text, then truth over guess token by token, wrapped to the width."""

    DEFAULT_CSS = "SampleView { height: 1fr; }"

    def __init__(self) -> None:
        super().__init__(id="sample-view")
        self.sample: Sample | None = None

    def render(self) -> Text:
        s = self.sample
        if s is None:
            return Text("no sample yet (one comes every train.sample_every steps)", style="dim")
        matches = s.matches
        hits = sum(matches)
        total = max(len(matches), 1)
        out = Text()
        out.append(f"step {s.step}: ", style="bold")
        out.append(f"{hits}/{len(matches)} guessed right ({hits / total:.0%})")
        out.append("   truth", style="bold")
        out.append(" / ")
        out.append("guess", style=HIT)
        out.append(" (")
        out.append("miss", style=MISS + " underline")
        out.append(")\n")
        width = max(20, self.size.width)
        flat = s.context.replace("\n", "↵")
        if len(flat) > width - 6:
            flat = "…" + flat[-(width - 7):]
        out.append("text  ", style="dim")
        out.append(flat + "\n", style="italic")
        label_w = 6
        truth_line, guess_line, used = Text("truth ", style="dim"), Text("guess ", style="dim"), label_w
        rows: list[Text] = []
        for g, t, ok in zip(s.guesses, s.truths, matches, strict=False):  # a damaged sample may be ragged
            tv, gv = visible(t), visible(g)
            w = max(len(tv), len(gv))
            if used + w + 1 > width and used > label_w:
                rows += [truth_line, guess_line, Text("")]
                truth_line, guess_line, used = Text("truth ", style="dim"), Text("guess ", style="dim"), label_w
            truth_line.append(tv.ljust(w) + " ")
            guess_line.append(gv.ljust(w), style=HIT if ok else MISS + " underline")
            guess_line.append(" ")
            used += w + 1
        rows += [truth_line, guess_line]
        for r in rows:
            r.no_wrap = True
            r.overflow = "crop"
        out.append(Text("\n").join(rows))
        return out


class SamplePane(Pane):
    """Shows the latest snapshot's Sample (a new one comes every train.sample_every steps)."""

    NAME = "sample"
    SHORT = "sample"
    TITLE = "guess vs truth"

    def compose(self) -> ComposeResult:
        yield SampleView()

    def show_snapshot(self) -> None:
        snap = self.snapshot
        view = self.query_one(SampleView)
        if snap is not None and snap.sample is not view.sample:
            view.sample = snap.sample
            view.refresh()
