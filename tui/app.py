"""CockpitApp: the Textual app that trains babyLLM in a worker thread and shows it live.

The Tutor runs in a thread the app owns (tui.tutor_thread). It publishes Snapshots from its own thread;
the app turns each into a coalescing message (a newer one replaces one still queued), so the UI sees a
few per second and the Tutor never waits on the UI. The refresh scheduler (tui.refresh) tells the panes
on screen what to show at a pace the UI thread can afford (tui.pace). The keys come from one table of
actions (tui.actions), the panes from one list (tui.panes). With ``viewer=True`` the same app views a
run trained by another process (``babyllm-tui --watch``, see tui.watch): the training controls are not
in its keys, help or palette, and it refuses them if they come anyway.
"""

from __future__ import annotations

import contextlib
import signal
import time
import traceback
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from textual import on
from textual.app import App, ComposeResult
from textual.containers import Container
from textual.widgets import Footer, Header, Input, Tab, Tabs

from babyllm import live
from babyllm.calligraphist import Calligraphist
from babyllm.config import TuiConfig
from babyllm.errors import ConfigError
from babyllm.events import EventKind
from babyllm.live import LR
from babyllm.run.runfiles import SCREENSHOTS
from babyllm.snapshot import Event, History, LiveSettings, Snapshot, TutorControl
from babyllm.stats import REGISTRY, Registry
from tui import actions as table
from tui.actions import ACTIONS, VIEWER_INTRO, Action
from tui.commands import CockpitCommands
from tui.detach import Detacher
from tui.messages import SnapshotReady, TutorFailed, TutorFinished, TutorProgress, TutorReady, TutorSaid
from tui.pace import TICK, UI_BUDGET_CPU, Pace, budget_for
from tui.panes import PANES, PaneSlot, grid_css
from tui.refresh import Refresher
from tui.screens import VIEWER_CHAT_HELP, AttachedQuitScreen, ConfirmScreen, ErrorScreen, HelpScreen, SettingScreen
from tui.tutor_thread import TutorFactory, TutorThread, end_process_later, install_signal_handlers, tty
from tui.widgets.base import Pane
from tui.widgets.chat import ChatPane
from tui.widgets.loss import LossPane
from tui.widgets.stats import StatsPane
from tui.widgets.status import StatusBar, TokenRate
from tui.widgets.windows import WindowsPane

__all__ = ["ChatFactory", "CockpitApp", "Pace", "TutorFactory"]

ChatFactory = Callable[[Any], Any]  # tutor -> an Infer2-like object (.stream, .command, .notices)

# A terminal at least this big shows all panes at once; a smaller one shows one pane and tabs.
WIDE_COLUMNS = 120
WIDE_ROWS = 34
VIEWER_REFUSAL = "viewer: training is controlled by the training process"
VIEWER_CHAT_NOTE = ("viewer: the first message loads the run's newest save on the CPU here; "
                    "/reload (or r) takes a newer one.")


class CockpitApp(App[int]):
    """The training cockpit (or, with ``viewer=True``, a viewer). ``tutor_factory`` builds a TutorControl;
    tests pass a fake one, and may pass their own ``actions`` table and ``panes`` list."""

    CSS_PATH = "cockpit.tcss"
    TITLE = "babyllm-tui"
    COMMANDS = App.COMMANDS | {CockpitCommands}
    COMMAND_PALETTE_BINDING = "ctrl+p"

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
    ) -> None:
        super().__init__()
        self.viewer = viewer
        self.actions, self.pane_slots = tuple(actions), tuple(panes)
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
        self.calligraphist = Calligraphist(window=window, registry=registry)
        self.snapshot: Snapshot | None = None
        self.join_timeout = join_timeout
        self.handle_signals = handle_signals
        self.paused = False
        self.quitting = False
        self.terminal_lost = False  # SIGHUP or a dead tty: restoring the terminal may hang, see exit()
        self.on_hangup = on_hangup  # [tui] on_hangup: "detach" or "stop"
        self.detacher = detacher  # leaves a hung-up terminal (None: the caller does, e.g. tests)
        self.detached = ""  # why the UI closed with the Tutor still training ("" = it did not)
        self.attached = attached  # the Tutor trains in another process (--attach): q asks detach or stop
        self.active_pane = "stats"
        self.compact = True
        self.exit_code = 0
        self.failure: str | None = None
        self._events_seen = 0
        self._last_state = ""
        self.pace = Pace(UI_BUDGET_CPU)
        self.token_rate = TokenRate()
        self._failures_logged: set[tuple[str, str, str]] = set()
        self.debug_lines: deque[str] = deque(maxlen=200)  # what went to debug.log from the UI (tests read it)
        # DOM order = the wide grid's placement order (see tui.panes)
        self.panes: list[Pane] = [s.pane(s.key, self.calligraphist) for s in self.pane_slots]
        self.refresher = Refresher(self.panes, self.on_visible, self.pace)
        self.status = StatusBar(self.calligraphist, self.token_rate, self.pace, id="status")
        self.status.alert_key = table.keys_of(self.actions, "dismiss_alert")

    @property
    def tutor(self) -> Any:
        """The Tutor (a Watcher in a viewer), or None while it is still being built."""
        return self._tutor_thread.tutor

    @property
    def tutor_thread(self) -> TutorThread:
        return self._tutor_thread

    @property
    def history(self) -> History | None:
        return getattr(self.tutor, "history", None)

    # The snapshot tests wait for these to settle.
    @property
    def _plots_dirty(self) -> bool:
        return bool(self.refresher.plots_pending)

    @property
    def _panes_dirty(self) -> bool:
        return self.refresher.panes_dirty

    # -- layout ------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header(icon="◉")
        yield self.status
        yield Tabs(*(Tab(f"{p.key} {p.SHORT}", id=f"tab-{p.NAME}") for p in self.panes), id="tabs")
        with Container(id="panes"):
            yield from self.panes
        yield Footer()

    @property
    def main_screen(self) -> Any:
        """The screen the panes are on (dialogs stack above it)."""
        return self.screen_stack[0]

    def pane(self, name: str) -> Pane:
        return next(p for p in self.panes if name == p.NAME)

    @property
    def chat_pane(self) -> ChatPane:
        return self.pane("chat")  # type: ignore[return-value]

    def on_mount(self) -> None:
        self._apply_layout(self.size.width, self.size.height)
        self.status.show(None)
        self.set_interval(TICK, self._tick)
        if self.handle_signals:
            install_signal_handlers(self._on_signal)
            if not self.is_headless and tty(0):
                self.set_interval(1.0, self._check_terminal)
        if self.viewer:
            self.chat_pane.add_line("", VIEWER_CHAT_NOTE, "dim")
            self.pane("sample").border_subtitle = "viewer: samples are not in the run's files"
        self._tutor_thread.start()

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

    def request_redraw(self, name: str) -> None:
        """Redraw a pane's plot on the next tick, due or not (it was resized, its settings changed)."""
        self.refresher.request_redraw(name)

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
        if self.snapshot is None:
            self.status.show(None, message.text)
        self._event("info", message.text)

    def on_tutor_progress(self, message: TutorProgress) -> None:
        if self.snapshot is None:
            self.status.show(None, message.text)

    def on_tutor_finished(self, message: TutorFinished) -> None:
        if self.tutor is not None:
            with contextlib.suppress(Exception):  # the last snapshot is a nicety; ending matters
                self._show(self.tutor.snapshot())
        if self.quitting:
            self.exit(self.exit_code)
            return
        self._event("state", f"training ended: {message.result or 'stopped'}")
        if self.attached:  # the model lives in the run's process, which is gone: nothing left to chat with
            self.notify(f"The run ended ({message.result or 'stopped'}); its plots stay here. q quits.")
        else:
            self.notify(f"Training ended ({message.result or 'stopped'}). The chat still works; q quits.")

    def on_tutor_failed(self, message: TutorFailed) -> None:
        self.failure = message.message
        self.exit_code = self.exit_code or message.exit_code
        self._event("error", message.message)
        if self.quitting:
            self.exit(self.exit_code)
            return
        self.status.show(self.snapshot, "")
        self.bell()
        self.push_screen(ErrorScreen(message.message, message.details))

    # -- snapshots ---------------------------------------------------------------------------

    def _prime_from_history(self) -> None:
        """A resumed run (or a watched one) already has history: fill the bands' windows from it, so they
        are not empty until a window's worth of new steps (the plots read the History directly)."""
        history = self.history
        if history is None or self.snapshot is not None:
            return
        try:
            rows = history.rows(self.calligraphist.window)
        except Exception:  # noqa: BLE001 - priming is a nicety; the snapshots fill the windows anyway
            return
        for row in rows[:-1]:  # the last row comes again with the first snapshot
            self.calligraphist.observe(row)

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        self._show(message.snapshot)

    def _step(self) -> int:
        return self.snapshot.step if self.snapshot else 0

    def _event(self, kind: EventKind, text: str) -> None:
        self.pane("events").add(Event(self._step(), kind, text))  # type: ignore[attr-defined]

    def _show(self, snap: Snapshot) -> None:
        old = self.snapshot
        first = old is None
        changed = old is None or snap.step != old.step
        self.snapshot = snap
        if self.viewer and not self.quitting:
            self.status.note = str(getattr(self.tutor, "note", "") or "")  # what the Watcher makes of the run
        self.token_rate.observe(snap.tokens)
        if changed and snap.stats:
            self.calligraphist.observe(snap.stats)
        if first or (snap.device and snap.device not in self.sub_title):
            self.pace.budget = budget_for(snap.device)
            self.sub_title = " · ".join(x for x in (snap.config_name, snap.device, snap.run_dir) if x) or self.sub_title
        self._log_events(snap, announce=not first)
        state_changed = snap.state != self._last_state
        if state_changed:
            self._state_changed(snap)
        self.status.tell(snap, at_once=first or state_changed)
        new_sample = snap.sample is not (old.sample if old else None)
        self.refresher.new_snapshot(snap, first, changed or new_sample)

    def _tick(self) -> None:
        """Timer: the status line when due, then whatever the refresh scheduler finds due."""
        self.pace.update()
        self.status.tick()
        self.refresher.tick()

    def _log_events(self, snap: Snapshot, announce: bool = True) -> None:
        new = snap.event_count - self._events_seen
        if new <= 0:
            return
        events = snap.events[-new:] if new <= len(snap.events) else snap.events
        log: Any = self.pane("events")
        if new > len(snap.events):
            log.add(Event(snap.step, "info", f"({new - len(snap.events)} older events not shown)"))
        for e in events:
            log.add(e)
            if not announce:
                continue
            if e.kind == "alert":
                self._alert(e.message)
            elif e.kind in ("save", "checkpoint"):
                self.status.flash(f"saved → {_folder(e.message)}", 6)
            elif e.kind == "error" and ("save failed" in e.message or "not written" in e.message):
                self.status.flash(f"save failed: see the event log ({log.key})", 10)
        self._events_seen = snap.event_count

    def _alert(self, text: str) -> None:
        """An alert (babyllm.school.alerts): a bell, a toast, and the status banner until dismissed or a resume."""
        self.bell()
        self.notify(text, title="alert", severity="warning", timeout=10)
        self.status.alert = text
        self.status.refresh_line()

    def action_dismiss_alert(self) -> None:
        self.status.alert = ""
        self.status.refresh_line()

    def _state_changed(self, snap: Snapshot) -> None:
        old, self._last_state = self._last_state, snap.state
        was_paused = self.paused
        self.paused = snap.state in ("paused", "alarm")
        if was_paused and snap.state == "running":
            self.status.alert = ""  # resumed: the alert that paused it has been seen
        if was_paused != self.paused:
            self.token_rate.reset()
            self.refresh_bindings()  # the footer says "p resume" while paused
        if snap.state == "alarm":
            self.bell()
            self.notify(f"NaN alarm at step {snap.step}: {snap.error or 'training paused'}. "
                        "space resumes, r rolls back to the last save.", severity="error", timeout=10)
            if not any(e.kind == "alarm" for e in snap.events[-3:]):
                self.pane("events").add(Event(snap.step, "alarm", snap.error or "NaN/inf: training paused"))  # type: ignore[attr-defined]
        elif snap.state == "error" and old != "error" and not self.quitting:
            self.failure = snap.error or "the Tutor stopped with an error"
            self.exit_code = self.exit_code or 1
            self.bell()
            self.push_screen(ErrorScreen(self.failure))

    # -- actions (their keys, help and palette entries: tui.actions) -------------------------

    def palette_entries(self) -> list[tuple[str, str, str]]:
        """(name, action, keys) of this cockpit's palette (its mode's rows, then the panes)."""
        return table.palette_entries(self.actions, self.pane_slots, self.viewer)

    def _control(self, what: str, request: str) -> Any:
        """The Tutor to send a training control to; None, with a notice, while it is still being built,
        and always in a viewer (the Watcher's ``request`` method only records the refusal)."""
        if self.viewer:
            if self.tutor is not None:
                getattr(self.tutor, request)()
            self.notify(f"{VIEWER_REFUSAL}: cannot {what} from here.", severity="warning")
            return None
        if self.tutor is None:
            self.notify(f"Still starting: cannot {what} yet.", severity="warning")
        return self.tutor

    def _ui_event(self, text: str) -> None:
        self._event("ui", text)

    def action_pause(self) -> None:
        self.action_toggle_pause()

    def action_resume(self) -> None:
        self.action_toggle_pause()

    def action_toggle_pause(self) -> None:
        tutor = self._control("pause or resume", "pause")
        if tutor is None or self.quitting:
            return
        if self.paused:
            tutor.resume()
            self.paused = False
            self._ui_event("resume requested")
            self.status.flash("resuming…")
        else:
            tutor.pause()
            self.paused = True
            self._ui_event("pause requested")
            self.status.flash("pausing…")
        self.token_rate.reset()
        self.refresh_bindings()

    def action_save(self) -> None:
        tutor = self._control("save", "request_save")
        if tutor is not None:
            tutor.request_save()
            self._ui_event("save requested")
            self.status.flash("saving…", 60)

    def action_checkpoint(self) -> None:
        tutor = self._control("checkpoint", "request_checkpoint")
        if tutor is not None:
            tutor.request_checkpoint()
            self._ui_event("checkpoint requested")
            self.status.flash("checkpointing…", 60)

    def action_screenshot_svg(self) -> None:
        """An SVG of the screen as it is now, with its colours (to look at after an SSH session)."""
        snap = self.snapshot
        step = snap.step if snap is not None else 0
        # a viewer writes nothing into the run directory (another process owns it)
        folder = Path.cwd() if self.viewer or snap is None or not snap.run_dir else Path(snap.run_dir) / SCREENSHOTS
        name = f"cockpit-{step:08d}-{time.strftime('%Y%m%d-%H%M%S')}.svg"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            saved = self.save_screenshot(name, str(folder))
        except OSError as e:
            self.notify(f"screenshot not saved: {folder}: {e.strerror or e}", severity="error")
            return
        self._ui_event(f"screenshot saved: {saved}")
        self.status.flash(f"screenshot → {saved}", 10)

    def action_scale_lr(self, factor: float) -> None:
        """Ask the run for train.lr times `factor` (a live setting: babyllm.live)."""
        old = self.snapshot.settings.get(LR) if self.snapshot is not None else None
        if self._live_settings("change the learning rate") is None:
            return
        if not isinstance(old, int | float):
            self.notify(f"This run does not say its {LR}: use babyllm ctl RUN set {LR}=...", severity="warning")
            return
        self.set_live([(LR, repr(float(old) * factor))])

    def action_setting_form(self, key: str = "") -> None:
        """The small form: a live setting's key and new value (also reached by typing "set lr 5e-4" in the palette)."""
        if self._live_settings("change settings") is not None:
            settings = dict(self.snapshot.settings) if self.snapshot is not None else {}
            self.push_screen(SettingScreen(settings, key),
                             lambda answer: self.set_live([answer]) if answer is not None else None)

    def set_live(self, items: Sequence[tuple[str, str]]) -> None:
        """Ask the run for live settings ((key, text after --set KEY=) pairs, applied together): an event,
        or the one-line reason none is applied."""
        tutor = self._live_settings("change settings")
        if tutor is None:
            return
        try:
            resolved = [(live.resolve(key), text) for key, text in items]
            tutor.set_settings(resolved)
        except ConfigError as e:
            self.notify(str(e), severity="error")
            return
        asked = " ".join(f"{key}={text}" for key, text in resolved)
        self._ui_event(f"set {asked} requested")
        self.status.flash(f"set {asked}…")

    def _live_settings(self, what: str) -> LiveSettings | None:
        """The run's live-settings control, or None after saying why this cockpit cannot `what`."""
        tutor = self.tutor
        if self.viewer:
            self.notify(f"{VIEWER_REFUSAL}: cannot {what} from here.", severity="warning")
        elif tutor is None or self.snapshot is None:
            self.notify(f"Still starting: cannot {what} yet.", severity="warning")
        elif not isinstance(tutor, LiveSettings):
            self.notify(f"This run cannot {what} from here (babyllm ctl RUN set KEY=VALUE).", severity="warning")
        else:
            return tutor
        return None

    def action_rollback(self) -> None:
        if self._control("roll back", "rollback") is None:
            return
        if self.snapshot is not None and self.snapshot.state == "alarm":
            self._do_rollback(True)
        else:
            self.push_screen(ConfirmScreen(self._rollback_question(), "Roll back", yes_key="ctrl+y"),
                             self._do_rollback)

    def _rollback_question(self) -> str:
        """Name the step a rollback goes back to and how many steps it throws away."""
        saved = self.snapshot.last_save_step if self.snapshot is not None else None
        if not isinstance(saved, int):
            return "Roll back to the last save? Training since then is lost."
        lost = max(0, self._step() - saved)
        return (f"Roll back to step {saved:,} (the last save)? The {lost:,} steps since then are lost. "
                "ctrl+y rolls back, n or esc keeps training.")

    def _do_rollback(self, yes: bool | None) -> None:
        if yes and self.tutor is not None:
            self.tutor.rollback()
            self._ui_event("roll back requested")
            self.notify("Rolling back to the last save…")

    def action_chat(self) -> None:
        if self.compact:
            self._select("chat")
        elif self.main_screen.maximized is not None and self.main_screen.maximized is not self.chat_pane:
            self.main_screen.minimize()
            self.refresher.catch_up()
        self.query_one("#chat-input", Input).focus()

    def action_reload(self) -> None:
        """A viewer's r: the chat loads the newest save at the next message."""
        if self.chat is None:
            self.notify("Still starting.", severity="warning")
            return
        self.notify(self.chat_pane.reload(), timeout=3)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Escape (leave) only shows, and only acts, when there is something to leave."""
        if action in ("pause", "resume"):
            return (action == "resume") == self.paused
        if action == "leave":
            if not self.screen_stack:
                return False
            return isinstance(self.focused, Input) or self.main_screen.maximized is not None
        return True

    def on_unmount(self) -> None:
        """However the app ends (but by a detach), the Tutor is told to stop (it saves); the caller joins it."""
        if not self.detached and not self.attached:  # (an attached cockpit stops the run only when asked to)
            self._tutor_thread.stop()

    def action_leave(self) -> None:
        focused = self.focused
        if isinstance(focused, Input):
            self.set_focus(None)
        elif self.main_screen.maximized is not None:
            self.main_screen.minimize()
            self.refresher.catch_up()

    @property
    def _loss(self) -> LossPane:
        return self.pane("loss")  # type: ignore[return-value]

    def action_toggle_log(self) -> None:
        self._loss.log_scale = not self._loss.log_scale
        self.status.flash(f"loss plot: {self._loss.settings_text()}", 2)

    def action_pick_runs(self) -> None:
        if self.compact:
            self._select("loss")
        self._loss.open_picker()

    def action_toggle_x_axis(self) -> None:
        self._loss.x_tokens = not self._loss.x_tokens
        self.status.flash(f"loss plot: {self._loss.settings_text()}", 2)

    def action_toggle_window_plot(self) -> None:
        pane: WindowsPane = self.pane("windows")  # type: ignore[assignment]
        self.status.flash(f"windows: {pane.next_view()}", 2)

    def action_toggle_smoothing(self) -> None:
        self._loss.smoothing_on = not self._loss.smoothing_on
        self.status.flash(f"loss plot: {self._loss.settings_text()}", 2)

    def action_smoothing(self, delta: int) -> None:
        self._loss.smoother(delta)
        self.status.flash(f"loss plot: {self._loss.settings_text()}", 2)

    @property
    def _stats(self) -> StatsPane:
        return self.pane("stats")  # type: ignore[return-value]

    def action_cycle_stat(self, delta: int) -> None:
        self._stats.cycle(delta)

    def action_focus_stat(self, name: str) -> None:
        if self.compact:
            self._select("stats")
        self._stats.set_stat(name)

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

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        rows = table.help_rows(self.actions, self.pane_slots, self.viewer)
        if self.viewer:
            self.push_screen(HelpScreen(rows, title=f"{self.title} keys", intro=VIEWER_INTRO, chat=VIEWER_CHAT_HELP))
        else:
            self.push_screen(HelpScreen(rows, title=f"{self.title} keys"))

    async def action_quit(self) -> None:
        self._ask_quit()

    def action_help_quit(self) -> None:  # ctrl+c: the same question as q
        self._ask_quit()

    def _ask_quit(self) -> None:
        if self.viewer:  # nothing to save: the training goes on without us
            self.begin_shutdown()
            return
        if self.quitting:
            self.notify("Already stopping: saving and waiting for the Tutor…")
            return
        if self.attached:
            if not self._tutor_thread.alive:  # the run has ended (or the connection is lost): nothing to ask
                self.detach("q")
                return
            self.push_screen(AttachedQuitScreen(), self._attached_quit_answer)
            return
        self.push_screen(ConfirmScreen("Quit? The Tutor saves first, then stops.", "Quit"), self._quit_answer)

    def _attached_quit_answer(self, choice: str | None) -> None:
        if choice == "detach":
            self.detach("q: detach")
        elif choice == "stop":
            self.begin_shutdown()

    def _quit_answer(self, yes: bool | None) -> None:
        if yes:
            self.begin_shutdown()

    def action_quit_now(self) -> None:
        self.begin_shutdown()

    def action_detach(self) -> None:
        """d: the UI closes, the Tutor trains on (the caller takes the process off the terminal)."""
        self.detach("d key")

    def detach(self, why: str) -> None:
        if self.viewer:
            self.notify("viewer: q leaves the viewer; the training goes on without it.", severity="warning")
            return
        if self.quitting or self.detached:
            if self.quitting:
                self.notify("Already stopping: saving and waiting for the Tutor…")
            return
        self.detached = why
        self.chat_pane.stop_streaming()
        self._ui_event(f"detach ({why}): training carries on")
        self.exit(self.exit_code)

    # -- stopping ----------------------------------------------------------------------------

    def begin_shutdown(self) -> None:
        """Ask the Tutor to stop (it saves), then exit when its thread ends (or after join_timeout).
        A viewer has nothing to save: it stops watching and exits at once (the caller joins the thread)."""
        if self.quitting:
            return
        self.quitting = True
        self.chat_pane.stop_streaming()
        if self.viewer:
            self._tutor_thread.stop()
            self.exit(self.exit_code)
            return
        self.status.note = "saving and stopping…"
        self.status.refresh_line()
        self._ui_event("quit: stop requested (the Tutor saves)")
        self._tutor_thread.stop()
        if not self._tutor_thread.alive:
            self.exit(self.exit_code)
            return
        self.set_timer(self.join_timeout, self._give_up)

    def exit(self, *args: Any, **kwargs: Any) -> None:
        """Exit; with the terminal gone, make sure the process ends even if restoring the terminal hangs.

        By the time the app exits the Tutor has stopped and saved (or the join timed out), so ending
        the process hard a few seconds later loses nothing.
        """
        if self.terminal_lost and not self.detached:
            end_process_later(args[0] if args and isinstance(args[0], int) else self.exit_code)
        super().exit(*args, **kwargs)

    def _give_up(self) -> None:
        self.failure = f"the Tutor did not stop within {self.join_timeout:.0f} s"
        self.exit_code = 1
        self.exit(self.exit_code)

    def join_tutor(self, timeout: float | None = None) -> bool:
        """Stop the Tutor and wait for its thread; True when it ended. Safe to call after the app exits."""
        return self._tutor_thread.join(self.join_timeout if timeout is None else timeout)

    def _on_signal(self, sig: int) -> None:
        if sig == signal.SIGHUP:
            self.hang_up("SIGHUP")
            return
        if self.attached:  # the run is not this process's to stop: a signal only ends the cockpit
            self.detach(signal.Signals(sig).name)
            return
        self.status.note = f"{signal.Signals(sig).name}: saving and stopping…"
        self.begin_shutdown()

    def _check_terminal(self) -> None:
        """A lost terminal (closed SSH session without SIGHUP) counts as a hang-up."""
        if not self.quitting and not self.detached and not tty(0):
            self.hang_up("terminal lost")

    def hang_up(self, why: str) -> None:
        """The terminal is gone: detach (nothing more is written to it) or save and stop, as on_hangup says."""
        if (self.on_hangup == "detach" or self.attached) and not self.viewer and not self.quitting:
            if self.detacher is not None and not self.detached:
                self.detacher.hung_up(self._tutor_thread)  # first, before the UI tears down
            self.detach(why)
            return
        self.status.note = f"{why}: saving and stopping…"
        self.terminal_lost = True
        self.begin_shutdown()


def _folder(message: str) -> str:
    """The save folder's name in a Tutor's "saved step N to runs/x/save-00000904" event."""
    last = message.split()[-1] if message.split() else message
    return last.rstrip("/").replace("\\", "/").rsplit("/", 1)[-1]
