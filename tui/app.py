"""CockpitApp: the Textual app that trains babyLLM in a worker thread and shows it live.

The Tutor runs in a plain daemon thread the app owns (so quitting can join it with a timeout). It
publishes Snapshots from its own thread; the app turns each into a coalescing message (a newer one
replaces one still queued), so the UI sees a few per second and the Tutor never waits on the UI.
Pane text is refreshed at most every PANES_EVERY seconds and plots from the downsampled History at
most every pane's REDRAW_EVERY (loss 1 s, windows 2 s), only for panes on screen, and only when
there are new steps: the UI thread's CPU use is what the cockpit costs training. Pace stretches
those intervals when the UI thread uses more than its share of a core (all seven panes on a large
terminal, training on a small CPU).
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
import traceback
from collections import deque
from pathlib import Path
from typing import Any, Callable, Protocol

from textual import on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Container
from textual.css.query import NoMatches
from textual.widgets import Footer, Header, Input, Tab, Tabs

from babyllm.calligraphist import Calligraphist
from babyllm.errors import BabyError
from babyllm.runtime import release_openmp_threads
from babyllm.snapshot import Event, History, Snapshot, TutorControl
from tui.commands import CockpitCommands
from tui.messages import (ChatDone, ChatPiece, SnapshotReady, TutorFailed, TutorFinished, TutorProgress, TutorReady,
                          TutorSaid)
from tui.screens import ConfirmScreen, ErrorScreen, HelpScreen
from tui.widgets import ChatPane, EventsPane, LossPane, SamplePane, StatsPane, StatusBar, TimingPane, WindowsPane
from tui.widgets.base import Pane, PlotPane
from tui.widgets.chat import STILL_ANSWERING
from tui.widgets.status import TokenRate

Publish = Callable[[Snapshot], None]
Say = Callable[[str], None]


class TutorFactory(Protocol):
    """Builds the Tutor (in the worker thread: it can take seconds) wired to the app's callbacks."""

    def __call__(self, publish: Publish, say: Say) -> TutorControl: ...


ChatFactory = Callable[[Any], Any]  # tutor -> an Infer2-like object (.stream, .command, .notices)

# A terminal at least this big shows all panes at once; a smaller one shows one pane and tabs.
WIDE_COLUMNS = 120
WIDE_ROWS = 34
TICK = 0.1  # s between checks for due pane updates and plot redraws (cheap when nothing is due)
PANES_EVERY = 0.4  # s: pane text updates at most ~2.5 times a second
# The UI thread's share of one core that Pace aims for: on a CPU the cores are training's (measured on
# 2 cores: the UI's share costs training about two thirds of it); a GPU run leaves the CPU mostly idle.
UI_BUDGET_CPU = 0.04
UI_BUDGET_GPU = 0.25
SMOOTHING_STEPS = (0.5, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)


class Pace:
    """Stretches the cockpit's update intervals so the UI thread's CPU use stays near a budget.

    Updates cost about in proportion to their rate, so every PERIOD the stretch moves
    (damped, by a geometric mean) towards stretch * used / budget, within [1, MAX_STRETCH].
    """

    MAX_STRETCH = 8.0
    PERIOD = 1.0  # s between measurements

    def __init__(self, budget: float, cpu_clock: Callable[[], float] = time.thread_time,
                 wall_clock: Callable[[], float] = time.monotonic) -> None:
        self.budget = budget
        self.stretch = 1.0
        self._cpu_clock, self._wall_clock = cpu_clock, wall_clock
        self._cpu, self._wall = cpu_clock(), wall_clock()

    def update(self) -> None:
        """Call from the UI thread (the CPU clock is that thread's)."""
        wall = self._wall_clock()
        if wall - self._wall < self.PERIOD:
            return
        cpu = self._cpu_clock()
        used = (cpu - self._cpu) / (wall - self._wall)
        self._cpu, self._wall = cpu, wall
        wanted = self.stretch * used / self.budget
        self.stretch = min(self.MAX_STRETCH, max(1.0, (self.stretch * wanted) ** 0.5))


class CockpitApp(App[int]):
    """The training cockpit. ``tutor_factory`` builds a TutorControl; tests pass a fake one."""

    CSS_PATH = "cockpit.tcss"
    TITLE = "babyllm-tui"
    COMMANDS = App.COMMANDS | {CockpitCommands}
    COMMAND_PALETTE_BINDING = "ctrl+p"
    BINDINGS = [
        Binding("q", "quit", "quit"),
        Binding("space,p", "pause", "pause", key_display="p"),
        Binding("space,p", "resume", "resume", key_display="p"),
        Binding("s", "save", "save"),
        Binding("c", "checkpoint", "ckpt"),
        Binding("r", "rollback", "roll back", show=False),
        Binding("i,ctrl+t", "chat", "chat", key_display="i"),
        Binding("escape", "leave", "leave"),
        Binding("l", "toggle_log", "log", show=False),
        Binding("m", "toggle_smoothing", "smooth", show=False),
        Binding("plus,equals_sign", "smoothing(1)", "smoother", show=False),
        Binding("minus", "smoothing(-1)", "rougher", show=False),
        Binding("left_square_bracket", "cycle_stat(-1)", "prev stat", show=False),
        Binding("right_square_bracket", "cycle_stat(1)", "next stat", show=False),
        *(Binding(str(k), f"show_pane_key({k})", f"pane {k}", show=False) for k in range(8)),
        Binding("question_mark,f1", "help", "help", key_display="?"),
    ]

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
    ) -> None:
        super().__init__()
        if tutor_factory is None and tutor is None:
            raise ValueError("CockpitApp needs a tutor_factory or a tutor")
        self._factory = tutor_factory
        self.tutor: Any = tutor
        self._chat_factory = chat_factory
        self.chat: Any = None
        self.sub_title = subtitle
        self.calligraphist = Calligraphist(window=window)
        self.snapshot: Snapshot | None = None
        self.join_timeout = join_timeout
        self.handle_signals = handle_signals
        self.log_scale = False
        self.smoothing_on = True
        self.smoothing = 0.9
        self.paused = False
        self.quitting = False
        self.terminal_lost = False  # SIGHUP or a dead tty: restoring the terminal may hang, see exit()
        self.active_pane = "stats"
        self.compact = True
        self.note = ""
        self.exit_code = 0
        self.failure: str | None = None
        self._events_seen = 0
        self._last_state = ""
        self._plots_pending: set[str] = set()  # plot panes with new steps not yet drawn
        self._panes_dirty = False
        self._panes_updated = 0.0
        self._stale: set[str] = set()
        self._redrawn: dict[str, float] = {}  # pane -> when its plot was last redrawn
        self.pace = Pace(UI_BUDGET_CPU)
        self.token_rate = TokenRate()
        self._flash_until = 0.0
        self._flash = ""
        self._status_dirty = False
        self._status_shown = 0.0
        self._thread: threading.Thread | None = None
        self._stop_requested = threading.Event()
        self._stop_sent = False
        self._chatting = False
        self._chat_log: Any = None  # babyllm.chat.ChatLog: the cockpit's chats go to the run's chat.log
        self._reply_so_far = ""
        self._failures_logged: set[tuple[str, str, str]] = set()
        self.debug_lines: deque[str] = deque(maxlen=200)  # what went to debug.log from the UI (tests read it)
        # DOM order = key order = the wide grid's placement order (see cockpit.tcss).
        self.panes: list[Pane] = [StatsPane(), LossPane(), ChatPane(), WindowsPane(), TimingPane(), SamplePane(), EventsPane()]

    # -- layout ------------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield Header(icon="◉")
        yield StatusBar(id="status")
        yield Tabs(*(Tab(f"{p.KEY} {p.SHORT}", id=f"tab-{p.NAME}") for p in self.panes), id="tabs")
        with Container(id="panes"):
            yield from self.panes
        yield Footer()

    @property
    def history(self) -> History | None:
        return getattr(self.tutor, "history", None)

    @property
    def main_screen(self) -> Any:
        """The screen the panes are on (dialogs stack above it)."""
        return self.screen_stack[0]

    def pane(self, name: str) -> Pane:
        return next(p for p in self.panes if p.NAME == name)

    def on_mount(self) -> None:
        self._apply_layout(self.size.width, self.size.height)
        self._status_show(None)
        self.set_interval(TICK, self._tick)
        if self.handle_signals:
            self._install_signal_handlers()
            if not self.is_headless and _tty(0):
                self.set_interval(1.0, self._check_terminal)
        self._thread = threading.Thread(target=self._tutor_main, name="tutor", daemon=True)
        release_openmp_threads()  # the UI thread's pool would slow the Tutor's (see babyllm.runtime)
        self._thread.start()

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
            p.set_class(p.NAME == name, "-active")
        tabs = self.query_one("#tabs", Tabs)
        if tabs.active != f"tab-{name}":
            tabs.active = f"tab-{name}"
        self._catch_up()

    def on_visible(self, pane: Pane) -> bool:
        """Is a pane on screen now (so worth updating)?"""
        if self.compact:
            return pane.NAME == self.active_pane
        maximized = self.screen_stack[0].maximized if self.screen_stack else None
        return maximized is None or maximized is pane

    def _catch_up(self) -> None:
        """Bring panes that just came on screen up to date."""
        for p in self.panes:
            if p.NAME in self._stale and self.on_visible(p):
                self._stale.discard(p.NAME)
                p.show_snapshot()
                p.redraw()

    @on(Tabs.TabActivated, "#tabs")
    def _tab_clicked(self, event: Tabs.TabActivated) -> None:
        if event.tab.id and event.tab.id[4:] != self.active_pane:
            self._select(event.tab.id[4:])

    # -- faults ------------------------------------------------------------------------------

    def debug_log(self, text: str) -> None:
        """Append to the run's debug.log (through the Tutor's Counsellor, which owns that file)."""
        self.debug_lines.append(text)
        log = getattr(getattr(self.tutor, "counsellor", None), "log", None)
        if callable(log):
            try:
                log(text)
            except Exception:  # noqa: BLE001 - a full disk must not turn a logged fault into a crash
                pass

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
        self.post_message(SnapshotReady(snapshot))

    def _say(self, text: str) -> None:
        self.post_message(TutorSaid(text))

    def show_progress(self, text: str) -> None:
        """Called from the Tutor's thread while it starts (e.g. preparing a large corpus): shown on the status line."""
        self.post_message(TutorProgress(text))

    def _tutor_main(self) -> None:
        try:
            tutor = self.tutor
            if tutor is None:
                assert self._factory is not None
                tutor = self._factory(self._publish, self._say)
            self.tutor = tutor
            self.post_message(TutorReady(tutor))
            if self._stop_requested.is_set():
                self._send_stop()
            run = getattr(tutor, "run", None)
            result = run() if callable(run) and not self._stop_requested.is_set() else None
            self.post_message(TutorFinished(result))
        except BabyError as e:
            self.exit_code = 2  # a user mistake found late (e.g. an empty corpus): same code as the CLI's
            self.post_message(TutorFailed(str(e)))
        except BaseException as e:  # noqa: BLE001 - shown on the error screen, never a frozen app
            self.post_message(TutorFailed(f"{type(e).__name__}: {e}", traceback.format_exc()))

    def on_tutor_ready(self, message: TutorReady) -> None:
        self.tutor = message.tutor
        if self._stop_requested.is_set():
            return
        self._prime_from_history()
        try:
            snap = self.tutor.snapshot()
        except Exception:  # noqa: BLE001 - a snapshot will come via publish anyway
            snap = None
        if snap is not None:
            self._show(snap)
        self._plots_dirty = True
        if self._chat_factory is not None:
            try:
                self.chat = self._chat_factory(self.tutor)
                run_dir = getattr(self.tutor, "run_dir", None)
                if run_dir is not None:
                    from babyllm.chat import ChatLog
                    from babyllm.runfiles import CHAT_LOG

                    self._chat_log = ChatLog(Path(run_dir) / CHAT_LOG, self._chat_log_failed)
            except Exception as e:  # noqa: BLE001
                self.pane("events").add(Event(self._step(), "error", f"chat unavailable: {e}"))

    def _chat_log_failed(self, message: str) -> None:
        self.pane("events").add(Event(self._step(), "error", message))

    def on_tutor_said(self, message: TutorSaid) -> None:
        if self.snapshot is None:
            self._status_show(None, message.text)
        self.pane("events").add(Event(self._step(), "info", message.text))

    def on_tutor_progress(self, message: TutorProgress) -> None:
        if self.snapshot is None:
            self._status_show(None, message.text)

    def on_tutor_finished(self, message: TutorFinished) -> None:
        if self.tutor is not None:
            try:
                self._show(self.tutor.snapshot())
            except Exception:  # noqa: BLE001
                pass
        if self.quitting:
            self.exit(self.exit_code)
            return
        self.pane("events").add(Event(self._step(), "state", f"training ended: {message.result or 'stopped'}"))
        self.notify(f"Training ended ({message.result or 'stopped'}). The chat still works; q quits.")

    def on_tutor_failed(self, message: TutorFailed) -> None:
        self.failure = message.message
        self.exit_code = self.exit_code or 1
        self.pane("events").add(Event(self._step(), "error", message.message))
        if self.quitting:
            self.exit(self.exit_code)
            return
        self._status_show(self.snapshot, "")
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

    def _show(self, snap: Snapshot) -> None:
        old = self.snapshot
        first = old is None
        changed = old is None or snap.step != old.step
        self.snapshot = snap
        self.token_rate.observe(snap.tokens)
        if changed and snap.stats:
            self.calligraphist.observe(snap.stats)
        if first or (snap.device and snap.device not in self.sub_title):
            self.pace.budget = UI_BUDGET_CPU if (snap.device or "cpu").startswith("cpu") else UI_BUDGET_GPU
            self.sub_title = " · ".join(x for x in (snap.config_name, snap.device, snap.run_dir) if x) or self.sub_title
        self._log_events(snap, announce=not first)
        state_changed = snap.state != self._last_state
        if state_changed:
            self._state_changed(snap)
        if first or state_changed or self._due(self._status_shown, PANES_EVERY):
            self._show_status()
        else:
            self._status_dirty = True  # the tick shows it when due (snapshots can come ~20 a second)
        if changed or first or snap.sample is not (old.sample if old else None):
            self._panes_dirty = True
            self._plots_dirty = True
        if first:
            self._update_panes()

    def _update_panes(self) -> None:
        """Show the latest snapshot in the panes on screen; the others catch up when shown."""
        self._panes_dirty = False
        self._panes_updated = time.monotonic()
        for p in self.panes:
            if self.on_visible(p):
                p.show_snapshot()
            else:
                self._stale.add(p.NAME)

    def _tick(self) -> None:
        """Timer: pane text at most every PANES_EVERY s, plots when due (each pane's REDRAW_EVERY)."""
        self.pace.update()
        if self._status_dirty and self._due(self._status_shown, PANES_EVERY):
            self._show_status()
        if self._panes_dirty and self._due(self._panes_updated, PANES_EVERY):
            self._update_panes()
        self._redraw_plots()

    def _due(self, last: float, every: float) -> bool:
        """Whether `every` seconds (stretched by the pace) have passed since `last` (monotonic)."""
        return time.monotonic() - last >= every * self.pace.stretch - 0.05

    def _show_status(self) -> None:
        self._status_dirty = False
        self._status_shown = time.monotonic()
        flash = self._flash if time.monotonic() < self._flash_until else ""
        self._status_show(self.snapshot, self.note or flash)

    def _status_show(self, snapshot: Snapshot | None, note: str = "") -> None:
        """Update the status line; nothing while the app is being torn down (a late timer finds no widget)."""
        try:
            bar = self.query_one(StatusBar)
        except NoMatches:
            return
        bar.show(snapshot, note)

    def flash(self, text: str, seconds: float = 4.0) -> None:
        """A short confirmation in the status line (a toast would cover a pane's text)."""
        self._flash, self._flash_until = text, time.monotonic() + seconds
        self._show_status()
        self.set_timer(seconds + 0.05, self._show_status)

    def _log_events(self, snap: Snapshot, announce: bool = True) -> None:
        new = snap.event_count - self._events_seen
        if new <= 0:
            return
        events = snap.events[-new:] if new <= len(snap.events) else snap.events
        log = self.pane("events")
        if new > len(snap.events):
            log.add(Event(snap.step, "info", f"({new - len(snap.events)} older events not shown)"))
        for e in events:
            log.add(e)
            if not announce:
                continue
            if e.kind in ("save", "checkpoint"):
                self.flash(f"saved → {_folder(e.message)}", 6)
            elif e.kind == "error" and ("save failed" in e.message or "not written" in e.message):
                self.flash(f"save failed: see the event log ({self.pane('events').KEY})", 10)
        self._events_seen = snap.event_count

    def _state_changed(self, snap: Snapshot) -> None:
        old, self._last_state = self._last_state, snap.state
        was_paused = self.paused
        self.paused = snap.state in ("paused", "alarm")
        if was_paused != self.paused:
            self.token_rate.reset()
            self.refresh_bindings()  # the footer says "p resume" while paused
        if snap.state == "alarm":
            self.bell()
            self.notify(f"NaN alarm at step {snap.step}: {snap.error or 'training paused'}. "
                        "space resumes, r rolls back to the last save.", severity="error", timeout=10)
            if not any(e.kind == "alarm" for e in snap.events[-3:]):
                self.pane("events").add(Event(snap.step, "alarm", snap.error or "NaN/inf: training paused"))
        elif snap.state == "error" and old != "error" and not self.quitting:
            self.failure = snap.error or "the Tutor stopped with an error"
            self.exit_code = self.exit_code or 1
            self.bell()
            self.push_screen(ErrorScreen(self.failure))

    def request_redraw(self, name: str) -> None:
        """Redraw a pane's plot on the next tick, due or not (it was resized)."""
        self._redrawn.pop(name, None)
        self._plots_pending.add(name)

    def _redraw_plots(self) -> None:
        """Redraw the plots on screen that have new steps and are due."""
        if not self._plots_dirty or self.history is None:
            return
        now = time.monotonic()
        due = []
        for p in self.panes:
            if not isinstance(p, PlotPane) or p.NAME not in self._plots_pending:
                continue
            if not self.on_visible(p):
                self._stale.add(p.NAME)
                self._plots_pending.discard(p.NAME)
            elif p.NAME not in self._redrawn or self._due(self._redrawn[p.NAME], p.REDRAW_EVERY):
                due.append(p)
        for p in due:
            self._plots_pending.discard(p.NAME)
            self._redrawn[p.NAME] = now
            p.redraw()

    @property
    def _plots_dirty(self) -> bool:
        return bool(self._plots_pending)

    @_plots_dirty.setter
    def _plots_dirty(self, dirty: bool) -> None:
        if dirty:
            self._plots_pending.update(p.NAME for p in self.panes if isinstance(p, PlotPane))
        else:
            self._plots_pending.clear()

    # -- actions -----------------------------------------------------------------------------

    def _control(self, what: str) -> Any:
        """The Tutor, or None (with a notice) while it is still being built."""
        if self.tutor is None:
            self.notify(f"Still starting: cannot {what} yet.", severity="warning")
        return self.tutor

    def _ui_event(self, text: str) -> None:
        self.pane("events").add(Event(self._step(), "ui", text))

    def action_pause(self) -> None:
        self.action_toggle_pause()

    def action_resume(self) -> None:
        self.action_toggle_pause()

    def action_toggle_pause(self) -> None:
        tutor = self._control("pause")
        if tutor is None or self.quitting:
            return
        if self.paused:
            tutor.resume()
            self.paused = False
            self._ui_event("resume requested")
            self.flash("resuming…")
        else:
            tutor.pause()
            self.paused = True
            self._ui_event("pause requested")
            self.flash("pausing…")
        self.token_rate.reset()
        self.refresh_bindings()

    def action_save(self) -> None:
        tutor = self._control("save")
        if tutor is not None:
            tutor.request_save()
            self._ui_event("save requested")
            self.flash("saving…", 60)

    def action_checkpoint(self) -> None:
        tutor = self._control("checkpoint")
        if tutor is not None:
            tutor.request_checkpoint()
            self._ui_event("checkpoint requested")
            self.flash("checkpointing…", 60)

    def action_rollback(self) -> None:
        if self._control("roll back") is None:
            return
        if self.snapshot is not None and self.snapshot.state == "alarm":
            self._do_rollback(True)
        else:
            self.push_screen(ConfirmScreen(self._rollback_question(), "Roll back", yes_key="ctrl+y"),
                             self._do_rollback)

    def _rollback_question(self) -> str:
        """Name the step a rollback goes back to and how many steps it throws away."""
        saved = getattr(self.tutor, "last_saved_step", None)
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
        elif self.main_screen.maximized is not None and self.main_screen.maximized is not self.pane("chat"):
            self.main_screen.minimize()
            self._catch_up()
        self.query_one("#chat-input", Input).focus()

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
        """However the app ends, the Tutor is told to stop (it saves); the caller joins its thread."""
        self._send_stop()

    def action_leave(self) -> None:
        focused = self.focused
        if isinstance(focused, Input):
            self.set_focus(None)
        elif self.main_screen.maximized is not None:
            self.main_screen.minimize()
            self._catch_up()

    def action_toggle_log(self) -> None:
        self.log_scale = not self.log_scale
        self._replot_loss()

    def action_toggle_smoothing(self) -> None:
        self.smoothing_on = not self.smoothing_on
        self._replot_loss()

    def action_smoothing(self, delta: int) -> None:
        steps = SMOOTHING_STEPS
        i = min(range(len(steps)), key=lambda k: abs(steps[k] - self.smoothing))
        self.smoothing = steps[max(0, min(len(steps) - 1, i + delta))]
        self.smoothing_on = True
        self._replot_loss()

    def _replot_loss(self) -> None:
        # On the next tick, not now: keys can come by the thousand (a paste), a redraw costs ~50 ms.
        if self.on_visible(self.pane("loss")):
            self.request_redraw("loss")
        else:
            self._stale.add("loss")
        state = f"log scale {'on' if self.log_scale else 'off'}, smoothing " + (
            f"{self.smoothing:.2f}" if self.smoothing_on else "off")
        self.flash(f"loss plot: {state}", 2)

    def action_cycle_stat(self, delta: int) -> None:
        self.pane("stats").cycle(delta)  # type: ignore[attr-defined]

    def action_focus_stat(self, name: str) -> None:
        if self.compact:
            self._select("stats")
        self.pane("stats").set_stat(name)  # type: ignore[attr-defined]

    def action_show_pane_key(self, key: int) -> None:
        name = next((p.NAME for p in self.panes if p.KEY == str(key)), "")
        self.action_show_pane(name)

    def action_show_pane(self, name: str) -> None:
        """Compact: switch to the pane. Wide: maximise it (again, or '' restores all panes)."""
        if not name:
            if self.main_screen.maximized is not None:
                self.main_screen.minimize()
                self._catch_up()
            return
        if self.compact:
            self._select(name)
            return
        pane = self.pane(name)
        if self.main_screen.maximized is pane:
            self.main_screen.minimize()
        else:
            self.main_screen.maximize(pane, container=False)
        self._catch_up()
        self.refresh_bindings()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    async def action_quit(self) -> None:
        if self.quitting:
            self.notify("Already stopping: saving and waiting for the Tutor…")
            return
        self.push_screen(ConfirmScreen("Quit? The Tutor saves first, then stops.", "Quit"), self._quit_answer)

    def _quit_answer(self, yes: bool | None) -> None:
        if yes:
            self.begin_shutdown()

    def action_quit_now(self) -> None:
        self.begin_shutdown()

    async def action_help_quit(self) -> None:  # ctrl+c: the same question as q
        await self.action_quit()

    # -- chat --------------------------------------------------------------------------------

    def chat_submit(self, text: str) -> None:
        pane: ChatPane = self.pane("chat")  # type: ignore[assignment]
        if self.chat is None:
            pane.add_line("", "The model is still starting (or chat is unavailable); try again in a moment.", "yellow")
            return
        if text.startswith("/"):
            pane.add_line("you", text, "dim")
            try:
                reply = self.chat.command(text)
            except BabyError as e:
                pane.add_line("", str(e), "red")
            else:
                pane.add_line("", reply, "dim")
            return
        if self._chatting:
            if pane.last_line() != STILL_ANSWERING:  # once: an unbracketed paste submits many lines
                pane.add_line("", STILL_ANSWERING, "yellow")
            return
        pane.add_line("you", text)
        if self._chat_log is not None:
            self._chat_log.write("you", text)
        self._reply_so_far = ""
        pane.start_reply()
        self._chatting = True
        self._stream(text)

    @work(thread=True, group="chat", exit_on_error=False)
    def _stream(self, prompt: str) -> None:
        from textual.worker import get_current_worker

        worker = get_current_worker()
        try:
            for piece in self.chat.stream(prompt):
                if worker.is_cancelled or self.quitting:
                    break
                self.post_message(ChatPiece(piece))
            self.post_message(ChatDone())
        except BabyError as e:
            self.post_message(ChatDone(str(e)))
        except Exception as e:  # noqa: BLE001 - a chat failure must not take the cockpit down
            self.post_message(ChatDone(f"chat failed: {type(e).__name__}: {e}"))

    def on_chat_piece(self, message: ChatPiece) -> None:
        pane: ChatPane = self.pane("chat")  # type: ignore[assignment]
        self._show_chat_notices(pane)  # a trimmed prompt is said before the reply it concerns
        pane.append(message.text)
        self._reply_so_far += message.text

    def on_chat_done(self, message: ChatDone) -> None:
        self._chatting = False
        pane: ChatPane = self.pane("chat")  # type: ignore[assignment]
        self._show_chat_notices(pane)
        pane.end_reply(message.error, hit_limit=bool(getattr(self.chat, "hit_limit", False)) and not message.error)
        if self._chat_log is not None:
            self._chat_log.write("baby", self._reply_so_far)

    def _show_chat_notices(self, pane: ChatPane) -> None:
        notices = getattr(self.chat, "notices", None)
        if notices:
            for n in list(notices):
                pane.add_notice(str(n))
            try:
                notices.clear()
            except AttributeError:
                pass

    # -- stopping ----------------------------------------------------------------------------

    def begin_shutdown(self) -> None:
        """Ask the Tutor to stop (it saves), then exit when its thread ends (or after join_timeout)."""
        if self.quitting:
            return
        self.quitting = True
        self._stop_requested.set()
        self.note = "saving and stopping…"
        self._status_show(self.snapshot, self.note)
        self._ui_event("quit: stop requested (the Tutor saves)")
        self._send_stop()
        if self._thread is None or not self._thread.is_alive():
            self.exit(self.exit_code)
            return
        self.set_timer(self.join_timeout, self._give_up)

    def exit(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        """Exit; with the terminal gone, make sure the process ends even if restoring the terminal hangs.

        By the time the app exits the Tutor has stopped and saved (or the join timed out), so ending
        the process hard a few seconds later loses nothing.
        """
        if self.terminal_lost:
            code = args[0] if args and isinstance(args[0], int) else self.exit_code
            watchdog = threading.Timer(5.0, os._exit, (code,))
            watchdog.daemon = True
            watchdog.start()
        super().exit(*args, **kwargs)

    def _send_stop(self) -> None:
        """Tell the Tutor to stop, once (if it is still being built, the worker stops it when built)."""
        self._stop_requested.set()
        if self.tutor is not None and not self._stop_sent:
            self._stop_sent = True
            try:
                self.tutor.stop()
            except Exception:  # noqa: BLE001
                pass

    def _give_up(self) -> None:
        self.failure = f"the Tutor did not stop within {self.join_timeout:.0f} s"
        self.exit_code = 1
        self.exit(self.exit_code)

    def join_tutor(self, timeout: float | None = None) -> bool:
        """Stop the Tutor and wait for its thread; True when it ended. Safe to call after the app exits."""
        self._send_stop()
        if self._thread is None:
            return True
        self._thread.join(self.join_timeout if timeout is None else timeout)
        return not self._thread.is_alive()

    def _install_signal_handlers(self) -> None:
        """SIGTERM/SIGHUP: save and exit cleanly (handlers run in this, the main, thread's loop)."""
        try:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGHUP):
                loop.add_signal_handler(sig, self._on_signal, sig)
        except (NotImplementedError, RuntimeError, ValueError, AttributeError):
            pass  # not the main thread or no such signal (Windows): quitting by key still saves

    def _on_signal(self, sig: int) -> None:
        self.note = f"{signal.Signals(sig).name}: saving and stopping…"
        self.terminal_lost = self.terminal_lost or sig == signal.SIGHUP
        self.begin_shutdown()

    def _check_terminal(self) -> None:
        """A lost terminal (closed SSH session without SIGHUP) counts as a request to stop."""
        if not self.quitting and not _tty(0):
            self.note = "terminal lost: saving and stopping…"
            self.terminal_lost = True
            self.begin_shutdown()


def _folder(message: str) -> str:
    """The save folder's name in a Tutor's "saved step N to runs/x/save-00000904" event."""
    last = message.split()[-1] if message.split() else message
    return last.rstrip("/").replace("\\", "/").rsplit("/", 1)[-1]


def _tty(fd: int) -> bool:
    """Is fd a terminal that still answers (a hung-up one fails tcgetattr)?"""
    try:
        import termios

        termios.tcgetattr(fd)
        return True
    except Exception:  # noqa: BLE001 - termios.error, OSError, ImportError (Windows)
        return False
