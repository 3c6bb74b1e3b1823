"""Command palette (ctrl+p): every cockpit action by name (from tui.actions), each stat's thresholds, and
"set KEY VALUE" for the live settings (babyllm.live)."""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Protocol, cast

from textual.command import DiscoveryHit, Hit, Hits, Provider

from babyllm import live
from babyllm.errors import ConfigError
from babyllm.snapshot import Snapshot


class PaletteHost(Protocol):
    """What the palette needs of the app it is opened in (CockpitApp has it): its entries, the newest
    snapshot (the stats and live settings), whether it is a viewer, and the two ways to set a live setting."""

    viewer: bool

    @property
    def snapshot(self) -> Snapshot | None: ...

    def palette_entries(self) -> list[tuple[str, str, str]]: ...

    def live_values(self) -> dict[str, object]: ...

    def set_live(self, items: Sequence[tuple[str, str]]) -> None: ...

    def action_setting_form(self, key: str = "") -> None: ...


class CockpitCommands(Provider):
    """The app's actions (its mode's rows of the action table, "Show pane …" among them) and "Thresholds of …"."""

    @property
    def host(self) -> PaletteHost:
        return cast(PaletteHost, self.app)

    def commands(self) -> list[tuple[str, str, str]]:
        """(name, action, keys) for everything the palette offers: the app's action table, then stats."""
        app = self.host
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
        for hit in self.setting_hits(query):
            yield hit

    def setting_hits(self, query: str) -> list[Hit]:
        """ "set lr 5e-4" (or "set train.lr=5e-4 train.min_lr=5e-5"): one hit that asks the run for it;
        "set" or "set lr": the live settings that match, each opening the form on its key."""
        app = self.host
        words = query.split()
        if app.viewer or not words or words[0].lower() != "set":
            return []
        now = app.live_values()  # (a value asked for and not yet applied: that one)
        rest = words[1:]
        if len(rest) >= 2 or (rest and "=" in rest[0]):
            try:
                items = live.parse_items(rest)
            except ConfigError as e:
                return [Hit(1.0, f"set: {e}", partial(self.app.notify, str(e), severity="error"))]
            shown = " ".join(f"{k}={v} (now {live.shown(now.get(k, '?'))})" for k, v in items)
            return [Hit(1.0, f"Set {shown}", partial(app.set_live, items), help="applied at the next step")]
        typed = rest[0] if rest else ""
        return [Hit(0.9 if typed else 0.5, f"Set {key}… (now {live.shown(now.get(key, '?'))})",
                    partial(app.action_setting_form, key), help="opens the form on this key")
                for key in live.LIVE_KEYS if typed in key]
