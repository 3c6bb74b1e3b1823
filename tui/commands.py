"""Command palette (ctrl+p): every cockpit action by name (from tui.actions), and each stat's thresholds."""

from __future__ import annotations

from functools import partial
from typing import TYPE_CHECKING

from textual.command import DiscoveryHit, Hit, Hits, Provider

if TYPE_CHECKING:
    from tui.app import CockpitApp


class CockpitCommands(Provider):
    """The app's actions (its mode's rows of the action table, "Show pane …" among them) and "Thresholds of …"."""

    def commands(self) -> list[tuple[str, str, str]]:
        """(name, action, keys) for everything the palette offers: the app's action table, then stats."""
        app: CockpitApp = self.app  # type: ignore[assignment]
        out = app.palette_entries()
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
