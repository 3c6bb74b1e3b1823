"""Command palette (ctrl+p): every cockpit action by name."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from tui.app import CockpitApp


class CockpitCommands(Provider):
    """Actions of the cockpit, plus "Show pane …" and "Thresholds of …" entries."""

    def commands(self) -> list[tuple[str, str, str]]:
        """(name, action, help) for everything the palette offers."""
        app: CockpitApp = self.app  # type: ignore[assignment]
        out = [
            ("Pause / resume training", "toggle_pause", "space / p"),
            ("Save now", "save", "s"),
            ("Checkpoint", "checkpoint", "c"),
            ("Roll back to the last save", "rollback", "r"),
            ("Chat with the model", "chat", "i"),
            ("Loss plot: toggle log scale", "toggle_log", "l"),
            ("Loss plot: toggle smoothing", "toggle_smoothing", "m"),
            ("Loss plot: stronger smoothing", "smoothing(1)", "+"),
            ("Loss plot: weaker smoothing", "smoothing(-1)", "-"),
            ("Show all panes", "show_pane('')", "0"),
            ("Help: keys", "help", "? / f1"),
            ("Quit (saves first)", "quit", "q"),
        ]
        for pane in app.panes:
            out.append((f"Show pane: {pane.TITLE}", f"show_pane('{pane.NAME}')", pane.KEY))
        snap = app.snapshot
        for name in (snap.stats if snap else ()):
            out.append((f"Thresholds of {name}", f"focus_stat('{name}')", "stats pane"))
        return out

    async def discover(self) -> Hits:
        for name, action, help_text in self.commands():
            if name.startswith("Thresholds of "):
                continue
            yield DiscoveryHit(name, partial(self.app.run_action, action), help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, action, help_text in self.commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), partial(self.app.run_action, action), help=help_text)
