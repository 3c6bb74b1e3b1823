"""The recorder: the run's records, events and state, written to its files and published (snapshots, control socket)."""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from babyllm.board import Board, Publish
from babyllm.config import Config
from babyllm.errors import BabyError
from babyllm.events import EventKind
from babyllm.run import mirrors, runfiles
from babyllm.run.writer import RunWriter
from babyllm.school.progress import Progress
from babyllm.snapshot import Event, History, Sample, Say, Snapshot, State, TutorControl
from babyllm.socket.endpoint import Endpoint
from babyllm.system import SystemSampler

METRICS_FLUSH_S = 1.0
SYSTEM_EVERY_S = 5.0  # seconds between the machine's readings in metrics.jsonl (and the trackers)


class Recorder:
    """Every step's stats (the bounded `history`, metrics.jsonl and its mirrors: TensorBoard, W&B, Trackio),
    the samples (samples.jsonl), the machine's readings every SYSTEM_EVERY_S (from `system`), events
    (events.jsonl, debug.log, the Board's recent events), the run's state and its error; Snapshots of
    `fields()` published to the subscriber and, on rank 0 while it trains, the control socket.

    Only rank 0 writes files (the others' logs are never opened). The stall watchdog and alert commands
    report from their own threads, so events, state changes and publishing take `lock`. A failed write
    (a full disk) raises the alarm, naming what is safe."""

    def __init__(self, run_dir: Path, progress: Progress, *, main: bool, publish: Publish | None,
                 publish_every: float, log: Say, system: SystemSampler | None = None) -> None:
        self.run_dir, self.progress, self.main, self.log = run_dir, progress, main, log
        self.system = system  # rank 0's machine (None on the other ranks)
        self.history = History()
        self.board = Board(publish, publish_every, on_error=self._publish_failed)
        self.writer = RunWriter(run_dir, self._log_failed, METRICS_FLUSH_S, mirrors.Mirrors(self._mirror_failed))
        self.header: runfiles.Header | None = None  # as written at this start (the trackers are told it)
        self.clock = time.monotonic  # (for the readings' cadence; a test's own clock)
        self._system_at = -math.inf
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
        self.header = header
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

    def open_metrics(self, mode: str, step: int, discarded: bool, cfg: Config) -> None:
        """metrics.jsonl and samples.jsonl (steps logged after `step` marked discarded) and the mirrors [log]
        switches on (a resumed run's start where the save left off; each says where it logs, in an event)."""
        if not self.main:
            return
        self.writer.open(mode, only=("metrics", "samples"))
        header = dataclasses.asdict(self.header) if self.header is not None else {}
        start = mirrors.Start(self.run_dir, self.run_dir.resolve().name, cfg.log.project, step,
                              {**cfg.to_dict(), "run": {**header, "start_step": step}})
        for where in mirrors.open_mirrors(cfg.log, start, self.writer.mirrors, self._mirror_failed):
            self.event("info", f"logging to {where}")
        if discarded:  # steps logged after the save resumed from are discarded: say so
            self.writer.rollback(step)

    def reopen(self) -> None:
        """After an alarm: reopen a log that failed (once the user has freed space), cutting a torn line."""
        for error in self.writer.reopen() if self.main else ():
            self.event("error", error)

    def close(self) -> None:
        with self.lock:  # (an alert command's thread may still report)
            self.writer.close()

    # --- records, events, state -------------------------------------------------------------------

    def record(self, stats: dict[str, float]) -> None:
        """One step's stats (and, every SYSTEM_EVERY_S, the machine's readings with them)."""
        self.last_stats = stats
        self.history.add(int(stats["step"]), stats)
        readings = None
        if self.system is not None and self.clock() - self._system_at >= SYSTEM_EVERY_S:
            self._system_at = self.clock()
            readings = self.system.read()
        with self.lock:
            self.writer.metrics(stats, readings)

    def write_sample(self, sample: Sample) -> None:
        """A guess-versus-truth sample, to samples.jsonl and the mirrors."""
        with self.lock:
            self.writer.sample(sample)

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

    def event(self, kind: EventKind, message: str, said: bool = False) -> None:
        """Log and publish an event (from the training thread, the stall watchdog or an alert command's thread);
        `said`: the user was told already (Event.said)."""
        with self.lock:
            ev = Event(self.progress.step_count, kind, message, said=said)
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

    def _mirror_failed(self, message: str) -> None:
        """A mirror (TensorBoard, a tracker) failed: it is dropped (one event), training goes on."""
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
