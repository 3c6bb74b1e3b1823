"""The recorder: the run's records, events and state, written to its files and published (snapshots, control socket)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from babyllm.board import Board, Publish
from babyllm.errors import BabyError
from babyllm.events import EventKind
from babyllm.run import runfiles, tboard
from babyllm.school.progress import Progress
from babyllm.snapshot import Event, History, Say, Snapshot, State, TutorControl
from babyllm.socket.endpoint import Endpoint

METRICS_FLUSH_S = 1.0


class Recorder:
    """Every step's stats (the bounded `history`, metrics.jsonl and its TensorBoard mirror), events
    (events.jsonl, debug.log, the Board's recent events), the run's state and its error; Snapshots of
    `fields()` published to the subscriber and, on rank 0 while it trains, the control socket.

    Only rank 0 writes files (the others' logs are never opened). The stall watchdog and alert commands
    report from their own threads, so events, state changes and publishing take `lock`. A failed write
    (a full disk) raises the alarm, naming what is safe."""

    def __init__(self, run_dir: Path, progress: Progress, *, main: bool, publish: Publish | None,
                 publish_every: float, log: Say) -> None:
        self.run_dir, self.progress, self.main, self.log = run_dir, progress, main, log
        self.history = History()
        self.board = Board(publish, publish_every, on_error=self._publish_failed)
        self.writer = runfiles.RunWriter(run_dir, self._log_failed, METRICS_FLUSH_S)
        self.lock = threading.RLock()
        self.state: State = "starting"
        self.error: str | None = None  # the one-line reason for "alarm" or "error"
        self.last_stats: dict[str, float] = {}
        self.endpoint: Endpoint | None = None  # the control socket, served by rank 0 while run() trains
        self._fields: Callable[[], dict[str, Any]] | None = None

    # --- the run's files --------------------------------------------------------------------------

    def open_events(self, mode: str) -> None:
        if self.main:
            self.writer.open(mode, only=("events",))

    def write_header(self, header: runfiles.Header) -> None:
        try:
            runfiles.write_header(self.run_dir, header)
        except OSError as e:  # a viewer then shows the config and device as unknown; training is unharmed
            self.log(f"{runfiles.HEADER_FILE}: not written ({e.strerror or e})")

    def replay(self, step: int) -> bool:
        """A resume: History and recent events from the run's logs up to `step`; whether later steps were logged."""
        if not self.main:
            return False
        discarded, events = runfiles.replay_history(self.run_dir, self.history, step)
        self.board.restore(events)
        return discarded

    def open_metrics(self, mode: str, step: int, discarded: bool, tensorboard: bool) -> None:
        """metrics.jsonl (steps logged after `step` marked discarded) and the TensorBoard mirror."""
        if not self.main:
            return
        self.writer.open(mode, only=("metrics",))
        if discarded:  # steps logged after the save resumed from are discarded: say so
            self.writer.rollback(step)
        if tensorboard:  # (a resumed run's file starts where the save left off)
            self.writer.mirror = tboard.EventWriter(self.run_dir, step, self._tboard_failed)

    def reopen(self) -> None:
        """After an alarm: reopen a log that failed (once the user has freed space), cutting a torn line."""
        for error in self.writer.reopen() if self.main else ():
            self.event("error", error)

    def close(self) -> None:
        with self.lock:  # (an alert command's thread may still report)
            self.writer.close()

    # --- records, events, state -------------------------------------------------------------------

    def record(self, stats: dict[str, float]) -> None:
        """One step's stats."""
        self.last_stats = stats
        self.history.add(int(stats["step"]), stats)
        with self.lock:
            self.writer.metrics(stats)

    def before_save(self) -> None:
        """A save is about to be written: the steps recorded so far go onto the disk first, so the log never
        lacks a step that a save (and a resume from it) has."""
        with self.lock:
            self.writer.flush(sync=True)

    def rewind(self, step: int) -> None:
        """A rollback to `step`: the steps after it are dropped (History) and marked discarded (the logs)."""
        self.error = None
        self.history.rewind(step + 1)  # the plots keep only the live branch
        with self.lock:
            self.writer.rollback(step)

    def event(self, kind: EventKind, message: str) -> None:
        """Log and publish an event (from the training thread, the stall watchdog or an alert command's thread)."""
        with self.lock:
            ev = Event(self.progress.step_count, kind, message)
            self.board.add(ev)
            self.log(f"event {kind} step {ev.step}: {message}")
            self.writer.event(ev)
            self.publish(force=True)

    def set_state(self, state: State) -> None:
        with self.lock:
            if state != self.state:
                self.state = state
                self.writer.flush()
                self.publish(force=True)

    def alarm(self, error: str, why: str) -> None:
        """Raise the alarm: `error` is the run's error, the event says it and `why`; the loop waits."""
        self.error = error
        self.event("alarm", f"{error}; {why}")
        self.set_state("alarm")

    def _log_failed(self, name: str, e: OSError) -> None:
        """A log's write failed (a full disk): the writer dropped it; raise the alarm, naming what is safe."""
        p = self.progress
        msg = f"step {p.step_count}: writing {name} failed ({e.strerror or e}); {p.intact()}; training paused"
        self.error = msg
        self.event("alarm", msg)
        if self.state in ("running", "paused", "starting"):
            self.set_state("alarm")

    def _tboard_failed(self, message: str) -> None:
        """The TensorBoard file could not be written: it is dropped (one event), training goes on."""
        self.event("error", message)

    # --- publishing -------------------------------------------------------------------------------

    def start_publishing(self, fields: Callable[[], dict[str, Any]]) -> None:
        """The first snapshot, of `fields()` (the Snapshot's fields; the board adds the recent events)."""
        self._fields = fields
        self.board.offer(fields, force=True)

    def snapshot(self) -> Snapshot:
        assert self.board.current is not None  # published once the run is built (start_publishing)
        return self.board.current

    def publish(self, force: bool = False) -> None:
        """A snapshot if one is due (at most every publish_every seconds) or forced."""
        if self.board.current is None or self._fields is None:  # (not while building: see start_publishing)
            return
        with self.lock:
            if self.board.offer(self._fields, force) and self.endpoint is not None:
                self.endpoint.publish(self.board.current)  # hands it over; never waits on a client

    def _publish_failed(self, e: Exception) -> None:
        self.log(f"publish callback failed: {type(e).__name__}: {e}")

    def serve(self, control: TutorControl, world_size: int) -> None:
        """Rank 0 serves the control socket while it trains; a socket that cannot start is a warning only."""
        if not self.main or self.endpoint is not None:
            return
        try:
            endpoint = Endpoint(self.run_dir, control, world_size=world_size, log=self.log)
        except OSError as e:  # (its wake-up socketpair: e.g. out of file descriptors)
            self.event("error", f"control socket not started ({e.strerror or e}); training goes on without it")
            return
        try:
            endpoint.start()
        except BabyError as e:
            endpoint.close()
            self.event("error", f"{e}; training goes on without it (no babyllm ctl or --attach)")
            return
        self.endpoint = endpoint
        if self.board.current is not None:
            endpoint.publish(self.board.current)

    def unserve(self) -> None:
        endpoint, self.endpoint = self.endpoint, None
        if endpoint is not None:
            endpoint.close()
