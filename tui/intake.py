"""The snapshot intake, a room of CockpitApp (see tui.room): each Snapshot the Tutor publishes becomes what
the cockpit shows: the Calligraphist's bands, the token rate, the event log, alerts, state changes (pause,
a NaN alarm, an error) and the status line's flashes for saves; the refresh scheduler tells the panes."""

from __future__ import annotations

from typing import Any

from babyllm.snapshot import Event, Snapshot
from tui.messages import SnapshotReady
from tui.pace import budget_for
from tui.room import Room
from tui.screens import ErrorScreen


class Intake(Room):
    """Takes each snapshot: shows it, logs its new events, rings for alerts and alarms."""

    _events_seen = 0  # the snapshots' event_count so far
    _last_state = ""

    def on_snapshot_ready(self, message: SnapshotReady) -> None:
        self._show(message.snapshot)

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

    def _log_events(self, snap: Snapshot, announce: bool = True) -> None:
        new = snap.event_count - self._events_seen
        if new <= 0:
            return
        events = snap.events[-new:] if new <= len(snap.events) else snap.events
        log: Any = self.events_pane
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
            self._alarm(snap)
        elif snap.state == "error" and old != "error" and not self.quitting:
            self.failure = snap.error or "the Tutor stopped with an error"
            self.exit_code = self.exit_code or 1
            self.bell()
            self.push_screen(ErrorScreen(self.failure, keys=self.keys))

    def _alarm(self, snap: Snapshot) -> None:
        """A NaN alarm: training paused; a bell, a toast naming the keys that go on, a line in the log."""
        keys = self.keys
        self.bell()
        self.notify(f"NaN alarm at step {snap.step}: {snap.error or 'training paused'}. "
                    f"{keys.first('pause')} resumes, {keys.first('rollback')} rolls back to the last save.",
                    severity="error", timeout=10)
        if not any(e.kind == "alarm" for e in snap.events[-3:]):
            self.events_pane.add(Event(snap.step, "alarm", snap.error or "NaN/inf: training paused"))


def _folder(message: str) -> str:
    """The save folder's name in a Tutor's "saved step N to runs/x/save-00000904" event."""
    last = message.split()[-1] if message.split() else message
    return last.rstrip("/").replace("\\", "/").rsplit("/", 1)[-1]
