"""The snapshot intake, a room of CockpitApp (see tui.room): each Snapshot the Tutor publishes becomes what
the cockpit shows: the Calligraphist's bands, the token rate, the event log, alerts, state changes (pause,
a NaN alarm, an error) and the status line's flashes for saves; the refresh scheduler tells the panes."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import PurePath

from babyllm.events import EventKind
from babyllm.run.runfiles import RESUMABLE_KINDS, save_name
from babyllm.snapshot import Event, Snapshot
from tui.messages import SnapshotReady
from tui.pace import budget_for
from tui.room import Room
from tui.screens import ErrorScreen

SAVED_FLASH_S = 6.0
SAVE_FAILED_FLASH_S = 10.0
SAVE_ERROR: EventKind = "save_error"


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
        self.asked.seen(snap)
        if self.viewer and not self.quitting:
            self.status.about = str(getattr(self.tutor, "note", "") or "")  # what the Watcher makes of the run
        self.token_rate.observe(snap.tokens)
        if changed and snap.stats:
            self.calligraphist.observe(snap.stats)
        if first or (snap.device and snap.device not in self.sub_title):
            self.pace.budget = budget_for(snap.device)
            self.sub_title = " · ".join(x for x in (snap.config_name, snap.device, snap.run_dir) if x) or self.sub_title
        new = self._log_events(snap, announce=not first)
        self._save_news(snap, new)
        state_changed = snap.state != self._last_state
        if state_changed:
            self._state_changed(snap)
        self.status.tell(snap, at_once=first or state_changed)
        new_sample = snap.sample is not (old.sample if old else None)
        self.refresher.new_snapshot(snap, first, changed or new_sample)

    def _log_events(self, snap: Snapshot, announce: bool = True) -> list[Event]:
        """Put the snapshot's new events in the log (an alert among them rings); returns them."""
        new = snap.event_count - self._events_seen
        if new <= 0:
            return []
        events = list(snap.events[-new:] if new <= len(snap.events) else snap.events)
        log = self.events_pane
        if new > len(snap.events):
            log.add(Event(snap.step, "info", f"({new - len(snap.events)} older events not shown)"))
        for e in events:
            log.add(e)
            if announce and e.kind == "alert":
                self._alert(e.message)
        self._events_seen = snap.event_count
        return events if announce else []

    def _save_news(self, snap: Snapshot, new: Sequence[Event]) -> None:
        """Flash a save's outcome from the new events' kinds, never from their text: each save_error is a save,
        checkpoint (or nan weights' refusal) not written, flashed every time (the same failure twice flashes
        twice); a save or checkpoint event is one written, shown by the folder the snapshot names."""
        kinds = [e.kind for e in new if e.kind in (SAVE_ERROR, *RESUMABLE_KINDS)]
        if not kinds:
            return
        if kinds[-1] == SAVE_ERROR:
            self.status.flash(f"save failed: see the event log ({self.events_pane.key})", SAVE_FAILED_FLASH_S)
        else:
            saved = [e for e in new if e.kind in RESUMABLE_KINDS]
            self.status.flash(f"saved → {self._folder(snap, saved[-1])}", SAVED_FLASH_S)

    @staticmethod
    def _folder(snap: Snapshot, event: Event) -> str:
        """The folder a save event wrote: the snapshot's last_save_path, or (a viewer's Watcher has no path)
        the name the run's files give a save of that kind and step."""
        if snap.last_save_path and snap.last_save_step == event.step:
            return PurePath(snap.last_save_path.replace("\\", "/")).name
        return save_name(event.kind, event.step)

    def _alert(self, text: str) -> None:
        """An alert (babyllm.school.alerts): a bell and the status banner until dismissed or a resume."""
        self.bell()  # (no toast: the banner says it, and a toast would cover the panes, the chat input too)
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
