"""CockpitApp: the Textual app that trains babyLLM in a worker thread and shows it live.

The Tutor runs in a thread the app owns (tui.tutor_thread). It publishes Snapshots from its own thread;
the app turns each into a coalescing message (a newer one replaces one still queued), so the UI sees a
few per second and the Tutor never waits on the UI. The refresh scheduler (tui.refresh) tells the panes
on screen what to show at a pace the UI thread can afford (tui.pace). The keys come from one table of
actions (tui.actions), the panes from one list (tui.panes). With ``viewer=True`` the same app views a
run trained by another process (``babyllm-tui --watch``, see tui.watch): the training controls are not
in its keys, help or palette, and it refuses them if they come anyway.

This module is the layout and the messages; the rest of the app is in its rooms (tui.room): the snapshot
intake (tui.intake), the training controls (tui.controls) and the lifecycle (tui.lifecycle). A pane's
actions are the pane's own: the app runs an action on the pane its row in the table targets.
"""

from __future__ import annotations

import contextlib
import os
import traceback
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from textual.actions import ActionParseResult
from textual.actions import parse as parse_action
from textual.app import App, ComposeResult, SystemCommand
from textual.containers import Container, Vertical
from textual.dom import DOMNode
from textual.filter import LineFilter, Monochrome, NoColor
from textual.screen import Screen
from textual.widgets import Footer, Header, Tab, Tabs

from babyllm.calligraphist import Calligraphist, Depth, colour_depth
from babyllm.config import TuiConfig
from babyllm.snapshot import Snapshot, TutorControl
from babyllm.stats import REGISTRY, Registry
from tui import actions as table
from tui.actions import ACTIONS, PALETTE_KEY, VIEWER_INTRO, Action
from tui.asked import Asked
from tui.commands import CockpitCommands
from tui.controls import Controls
from tui.detach import Detacher
from tui.intake import Intake
from tui.keys import Keys
from tui.lifecycle import Lifecycle
from tui.messages import Flash, RedrawWanted, TutorFailed, TutorFinished, TutorProgress, TutorReady, TutorSaid
from tui.pace import TICK, UI_BUDGET_CPU, Pace
from tui.panes import PANES, PaneSlot, grid_css
from tui.refresh import Refresher
from tui.screens import VIEWER_CHAT_HELP, ErrorScreen, HelpScreen
from tui.tutor_thread import TutorFactory, TutorThread, install_signal_handlers, tty
from tui.views import WIDE_COLUMNS, WIDE_ROWS, Views
from tui.widgets.base import Pane, PaneKit
from tui.widgets.status import StatusBar, TokenRate

__all__ = ["WIDE_COLUMNS", "WIDE_ROWS", "ChatFactory", "CockpitApp", "Pace", "TutorFactory"]

ChatFactory = Callable[[Any], Any]  # tutor -> an Infer2-like object (.stream, .command, .notices)

VIEWER_CHAT_NOTE = ("viewer: the first message loads the run's newest save on the CPU here; "
                    "/reload (or {reload}) takes a newer one.")


class CockpitApp(Intake, Controls, Lifecycle, Views):
    """The training cockpit (or, with ``viewer=True``, a viewer). ``tutor_factory`` builds a TutorControl;
    tests pass a fake one, and may pass their own ``actions`` table and ``panes`` list."""

    CSS_PATH = "cockpit.tcss"
    TITLE = "babyllm-tui"
    COMMANDS = App.COMMANDS | {CockpitCommands}
    COMMAND_PALETTE_BINDING = PALETTE_KEY

    def __init__(
        self,
        tutor_factory: TutorFactory | None = None,
        *,
        tutor: TutorControl | None = None,
        chat_factory: ChatFactory | None = None,
        subtitle: str = "",
        window: int = 100,
        join_timeout: float = 120.0,
        handle_signals: bool = True,
        viewer: bool = False,
        actions: Sequence[Action] = ACTIONS,
        panes: Sequence[PaneSlot] = PANES,
        registry: Registry = REGISTRY,
        on_hangup: str = TuiConfig.on_hangup,
        detacher: Detacher | None = None,
        attached: bool = False,
        depth: Depth | None = None,
    ) -> None:
        depth = colour_depth(os.environ) if depth is None else depth  # (tests pass theirs)
        # Among 16 colours or none, ANSI colours stay ANSI: the panes' hues were picked for the terminal's
        # own 16 (babyllm.calligraphist.Hue), and Textual would otherwise map them through its truecolour theme.
        super().__init__(ansi_color=True if depth in (Depth.NONE, Depth.STANDARD) else None)
        self.viewer = viewer
        self.actions, self.pane_slots = tuple(actions), tuple(panes)
        self.keys = Keys(self.actions)
        self.targets = table.targets(self.actions)  # the panes' actions: action name -> its row
        # Bound per instance, not in BINDINGS (a class attribute): they follow this app's tables and mode.
        for b in table.bindings(self.actions, self.pane_slots, viewer):
            self._bindings.bind(b.key, b.action, b.description, show=b.show, key_display=b.key_display)
        self.CSS = grid_css(self.pane_slots)  # type: ignore[misc]  # the wide grid follows the panes list
        if viewer:
            self.title = f"{self.TITLE} viewer"
        self._tutor_thread = TutorThread(self.post_message, tutor_factory, tutor)
        self._chat_factory = chat_factory
        self.chat: Any = None
        self.sub_title = subtitle
        self.calligraphist = Calligraphist(window=window, registry=registry, depth=depth)
        self._no_colour = NoColor()
        self.snapshot = None
        self.asked = Asked()
        self.join_timeout = join_timeout
        self.handle_signals = handle_signals
        self.paused = False
        self.quitting = False
        self.terminal_lost = False
        self.on_hangup = on_hangup
        self.detacher = detacher
        self.detached = ""
        self.attached = attached  # (q then asks: detach or stop the run)
        self.active_pane = "stats"
        self.compact = True
        self.exit_code = 0
        self.failure = None
        self.pace = Pace(UI_BUDGET_CPU)
        self.token_rate = TokenRate()
        self._failures_logged: set[tuple[str, str, str]] = set()
        self._said_while_building: list[str] = []  # (see on_tutor_said)
        self.debug_lines: deque[str] = deque(maxlen=200)  # what went to debug.log from the UI (tests read it)
        kit = PaneKit(self.calligraphist, self.keys, self.pane_failed)
        # DOM order = the wide grid's placement order (see tui.panes)
        self.panes = [s.pane(s.key, kit) for s in self.pane_slots]
        self.refresher = Refresher(self.panes, self.on_visible, self.pace, self.token_rate)
        self.status = StatusBar(self.calligraphist, self.token_rate, self.pace, self.keys, id="status")

    # The snapshot tests wait for these to settle.
    @property
    def _plots_dirty(self) -> bool:
        return bool(self.refresher.plots_pending)

    @property
    def _panes_dirty(self) -> bool:
        return self.refresher.panes_dirty

    # -- layout ------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        with Vertical(id="top"):
            yield Header(icon="◉")
            yield self.status
        yield Tabs(*(Tab(f"{p.key} {p.SHORT}", id=f"tab-{p.NAME}") for p in self.panes), id="tabs")
        with Container(id="panes"):
            yield from self.panes
        yield Footer()

    def on_mount(self) -> None:
        self._apply_layout(self.size.width, self.size.height)
        self.status.show(None)
        self.set_interval(TICK, self._tick)
        if self.handle_signals:
            install_signal_handlers(self._on_signal)
            if not self.is_headless and tty(0):
                self.set_interval(1.0, self._check_terminal)
        if self.viewer:
            self.chat_pane.add_line("", VIEWER_CHAT_NOTE.format(reload=self.keys.first("reload")), "dim")
            self.pane("sample").border_subtitle = "viewer: samples are not in the run's files"
        self._tutor_thread.start()

    def on_redraw_wanted(self, message: RedrawWanted) -> None:
        self.refresher.request_redraw(message.pane)

    def on_flash(self, message: Flash) -> None:
        self.status.flash(message.text, message.seconds)

    def _tick(self) -> None:
        """Timer: the status line when due, then whatever the refresh scheduler finds due."""
        self.pace.update()
        self.status.tick()
        self.refresher.tick()

    def get_line_filters(self) -> list[LineFilter]:
        """No colour at all when the terminal has none (NO_COLOR, TERM=dumb): Textual itself would still
        send truecolour greys for NO_COLOR, and colours for a dumb TERM."""
        filters = list(super().get_line_filters())
        if self.calligraphist.depth is Depth.NONE:
            filters = [f for f in filters if not isinstance(f, Monochrome | NoColor)] + [self._no_colour]
        return filters

    # -- faults ------------------------------------------------------------------------------

    def debug_log(self, text: str) -> None:
        """Append to the run's debug.log (through the Tutor, which owns that file)."""
        self.debug_lines.append(text)
        if self.tutor is not None:
            with contextlib.suppress(Exception):  # a full disk must not turn a logged fault into a crash
                self.tutor.debug_log(text)

    def pane_failed(self, name: str, what: str, error: BaseException) -> None:
        """A pane failed to update or draw: its traceback goes to debug.log once, training carries on."""
        key = (name, what, f"{type(error).__name__}: {error}")
        if key in self._failures_logged:
            return
        self._failures_logged.add(key)
        details = "".join(traceback.format_exception(error))
        self.debug_log(f"cockpit: pane {name}: {what} failed (the app carries on):\n{details}")

    # -- the Tutor thread --------------------------------------------------------------------

    def _publish(self, snapshot: Snapshot) -> None:
        """Called from the Tutor's thread: queue a coalescing message, never block."""
        self._tutor_thread.publish(snapshot)

    def show_progress(self, text: str) -> None:
        """Called from the Tutor's thread while it starts (e.g. preparing a large corpus): shown on the status line."""
        self.post_message(TutorProgress(text))

    def on_tutor_ready(self, message: TutorReady) -> None:
        if self._tutor_thread.stop_requested.is_set():
            return
        self._prime_from_history()
        self.refresher.tell_history(self.history)
        try:
            snap = self.tutor.snapshot()
        except Exception:  # noqa: BLE001 - a snapshot will come via publish anyway
            snap = None
        if snap is not None:
            self._show(snap)
        if self._chat_factory is not None:
            self._connect_chat()

    def _connect_chat(self) -> None:
        """Build the chat on the Tutor's model and hand it to the chat pane, with the run's chat.log."""
        assert self._chat_factory is not None
        try:
            self.chat = self._chat_factory(self.tutor)
            chat_log = None
            run_dir = self.tutor.snapshot().run_dir if self.tutor is not None else ""
            if run_dir and Path(run_dir).is_dir():  # (the fake Tutor's demo run has no directory)
                from babyllm.run.chatlog import ChatLog
                from babyllm.run.runfiles import CHAT_LOG

                chat_log = ChatLog(Path(run_dir) / CHAT_LOG, self._chat_log_failed)
            self.chat_pane.connect(self.chat, chat_log)
        except Exception as e:  # noqa: BLE001 - the cockpit trains on without a chat
            self._event("error", f"chat unavailable: {e}")

    def _chat_log_failed(self, message: str) -> None:
        self._event("error", message)

    def on_tutor_said(self, message: TutorSaid) -> None:
        """A line for the user. While the Tutor is being built (a corpus's bad rows) it is only shown: the
        Tutor's events say it again, and the log takes it from them (or, if the building fails, from here)."""
        if self.snapshot is None:
            self.status.starting = message.text
            self.status.refresh_line()
            self._said_while_building.append(message.text)
            return
        self._event("info", message.text)

    def on_tutor_progress(self, message: TutorProgress) -> None:
        if self.snapshot is None:
            self.status.starting = message.text
            self.status.refresh_line()

    def on_tutor_finished(self, message: TutorFinished) -> None:
        if self.tutor is not None:
            with contextlib.suppress(Exception):  # the last snapshot is a nicety; ending matters
                self._show(self.tutor.snapshot())
        if self.quitting:
            self.exit(self.exit_code)
            return
        self._event("state", f"training ended: {message.result or 'stopped'}")
        how, quits = message.result or "stopped", self.keys.first("quit")
        if self.attached:  # the model lives in the run's process, which is gone: nothing left to chat with
            self.notify(f"The run ended ({how}); its plots stay here. {quits} quits.")
        else:
            self.notify(f"Training ended ({how}). The chat still works; {quits} quits.")

    def on_tutor_failed(self, message: TutorFailed) -> None:
        for text in self._said_while_building if self.snapshot is None else ():
            self._event("info", text)
        self.failure = message.message
        self.exit_code = self.exit_code or message.exit_code
        self._event("error", message.message)
        if self.quitting:
            self.exit(self.exit_code)
            return
        self.status.show(self.snapshot, "")
        self.bell()
        self.push_screen(ErrorScreen(message.message, message.details, keys=self.keys))

    # -- actions (their keys, help and palette entries: tui.actions) -------------------------

    async def run_action(self, action: str | ActionParseResult, default_namespace: DOMNode | None = None,
                         namespaces: Mapping[str, DOMNode] | None = None) -> bool:
        """A pane's action (its row in the table names the pane) runs on that pane; any other as Textual
        runs it (a key's, the palette's, the footer's alike)."""
        if default_namespace is None or default_namespace is self:
            default_namespace = self._target(action) or default_namespace
        return await super().run_action(action, default_namespace, namespaces)

    def _target(self, action: str | ActionParseResult) -> Pane | None:
        """The pane an action of the app's own runs on (shown first, when its row says so), or None."""
        destination, name, _ = parse_action(action) if isinstance(action, str) else action
        row = self.targets.get(name) if not destination else None
        if row is None:
            return None
        if row.show_target and self.compact:
            self._select(row.target)
        return self.pane(row.target)

    def palette_entries(self) -> list[tuple[str, str, str]]:
        """(name, action, keys) of this cockpit's palette (its mode's rows, then the panes)."""
        return table.palette_entries(self.actions, self.pane_slots, self.viewer)

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        """Of Textual's own palette entries only the themes: its Quit, Keys, Maximize and Screenshot would sit
        beside the cockpit's own (which save first, say the keys, keep the header, write into the run)."""
        yield from (c for c in super().get_system_commands(screen) if c.callback == self.action_change_theme)

    def action_reload(self) -> None:
        """A viewer's r: the chat loads the newest save at the next message."""
        if self.chat is None:
            self.notify("Still starting.", severity="warning")
            return
        self.notify(self.chat_pane.reload(), timeout=3)

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        rows = table.help_rows(self.actions, self.pane_slots, self.viewer)
        title = f"{self.title} keys"
        if self.viewer:
            self.push_screen(HelpScreen(rows, keys=self.keys, title=title, intro=VIEWER_INTRO, chat=VIEWER_CHAT_HELP))
        else:
            self.push_screen(HelpScreen(rows, keys=self.keys, title=title))
