"""The views, a room of CockpitApp (see tui.room): which panes are on screen. Below WIDE_COLUMNS x WIDE_ROWS one
pane at a time, chosen by the tabs or its number key; from there up all of them in the wide grid, where a
number key maximises one (the header and the status line stay: the step and the loss are always in view)."""

from __future__ import annotations

from typing import Any

from textual import on
from textual.notifications import Notify
from textual.widgets import Input, Tabs

from tui.room import Room
from tui.widgets.base import Pane

# A terminal at least this big shows all panes at once; a smaller one shows one pane and tabs.
WIDE_COLUMNS = 120
WIDE_ROWS = 34
# Toasts shown at once (the newest; tui/cockpit.tcss puts them at the top right): more would reach down to
# the chat input at the bottom of an 80x24 terminal.
MAX_TOASTS = 2


class Views(Room):
    """The compact and the wide layout, the active pane, maximising and leaving."""

    # What a maximised pane leaves on screen besides itself (Textual's default keeps only the footer).
    ALLOW_IN_MAXIMIZED_VIEW = "#top, Footer"  # (#top: the header and the status line, docked)

    def _on_notify(self, event: Notify) -> None:
        """Keep the newest MAX_TOASTS (Textual has no public cap: its own handler, then its own removal)."""
        super()._on_notify(event)
        for old in list(self._notifications)[:-MAX_TOASTS]:
            self._unnotify(old)

    @property
    def main_screen(self) -> Any:
        """The screen the panes are on (dialogs stack above it)."""
        return self.screen_stack[0]

    def on_resize(self, event: Any) -> None:
        self._apply_layout(event.size.width, event.size.height)

    def _apply_layout(self, width: int, height: int) -> None:
        compact = width < WIDE_COLUMNS or height < WIDE_ROWS
        first = not self.query_one("#panes").has_class("-compact", "-wide")
        if compact == self.compact and not first:
            return
        self.compact = compact
        panes = self.query_one("#panes")
        panes.set_class(compact, "-compact")
        panes.set_class(not compact, "-wide")
        self.query_one("#tabs").display = compact
        if compact and self.main_screen.maximized is not None:
            self.main_screen.minimize()
        self._select(self.active_pane)

    def _select(self, name: str) -> None:
        """Make a pane the active one (the one shown in compact mode)."""
        self.active_pane = name
        for p in self.panes:
            p.set_class(name == p.NAME, "-active")
        tabs = self.query_one("#tabs", Tabs)
        if tabs.active != f"tab-{name}":
            tabs.active = f"tab-{name}"
        self.refresher.catch_up()

    def on_visible(self, pane: Pane) -> bool:
        """Is a pane on screen now (so worth updating)?"""
        if self.compact:
            return self.active_pane == pane.NAME
        maximized = self.screen_stack[0].maximized if self.screen_stack else None
        return maximized is None or maximized is pane

    @on(Tabs.TabActivated, "#tabs")
    def _tab_clicked(self, event: Tabs.TabActivated) -> None:
        if event.tab.id and event.tab.id[4:] != self.active_pane:
            self._select(event.tab.id[4:])

    def action_chat(self) -> None:
        if self.compact:
            self._select("chat")
        elif self.main_screen.maximized is not None and self.main_screen.maximized is not self.chat_pane:
            self.main_screen.minimize()
            self.refresher.catch_up()
        self.query_one("#chat-input", Input).focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Escape (leave) only shows, and only acts, when there is something to leave."""
        if action == "leave":
            if not self.screen_stack:
                return False
            return isinstance(self.focused, Input) or self.main_screen.maximized is not None
        return super().check_action(action, parameters)

    def action_leave(self) -> None:
        focused = self.focused
        if isinstance(focused, Input):
            self.set_focus(None)
        elif self.main_screen.maximized is not None:
            self.main_screen.minimize()
            self.refresher.catch_up()

    def action_show_pane(self, name: str) -> None:
        """Compact: switch to the pane. Wide: maximise it (again, or '' restores all panes)."""
        if not name:
            if self.main_screen.maximized is not None:
                self.main_screen.minimize()
                self.refresher.catch_up()
            return
        if self.compact:
            self._select(name)
            return
        pane = self.pane(name)
        if self.main_screen.maximized is pane:
            self.main_screen.minimize()
        else:
            self.main_screen.maximize(pane, container=False)
        self.refresher.catch_up()
        self.refresh_bindings()

