"""Steering: the request queue, the ranks' votes, live setting changes, the alerts and the stall watchdog."""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from typing import Any

import torch

from babyllm import live
from babyllm.config import Config, validate
from babyllm.control import AGREED, PAUSABLE, WAITING, Change, Request, Requests, Votes, refusal
from babyllm.errors import ConfigError
from babyllm.events import EventKind
from babyllm.school import distributed
from babyllm.school.alerts import Alert, Alerts, Commands
from babyllm.school.progress import Progress
from babyllm.snapshot import State

IDLE_WAIT_S = 0.1  # a waiting loop's turn: it wakes at once for a request
ALERT_REQUESTS: dict[str, Request] = {"pause": "pause", "stop": "stop"}  # alerts.action -> its request


class Steering:
    """What steers a run from outside its step: requests from any thread (each returns at once, acted on
    between steps by `take_requests`), the ranks' votes on them, live changes, and rank 0's alerts.

    It acts on the run through the callbacks it is handed (the recorder's state and events, the Tutor's
    resume, save and rollback, the engine's `reconfigure` after a train.* change). The stall watchdog is
    its one thread: a stuck step cannot notice itself, so the watchdog reads the loop's beat."""

    def __init__(self, cfg: Config, progress: Progress, *, main: bool, world_size: int, device: torch.device,
                 state: Callable[[], State], set_state: Callable[[State], None],
                 event: Callable[[EventKind, str], None], resume: Callable[[], None],
                 save: Callable[[str], object], rollback: Callable[[], None],
                 reconfigure: Callable[[bool], None]) -> None:
        self.cfg, self.progress, self.world_size, self.device = cfg, progress, world_size, device
        self.state, self.set_state, self.event = state, set_state, event
        self.resume, self.save, self.rollback, self.reconfigure = resume, save, rollback, reconfigure
        self.requests = Requests()
        self.votes = Votes()  # several ranks: requests are acted on once every rank has heard them
        self.changes: dict[str, tuple[Any, Any]] = {}  # live changes: key -> (the run's config value, now)
        self.stopping = False
        # Rank 0 judges the alerts (a pause goes through the vote); the watchdog reads `beat`.
        self.alerts = Alerts(cfg.alerts) if main else None
        self.commands = Commands()  # alerts.command's runs (killed at the run's end: stop_watchdog)
        self.beat: float | None = None  # when the loop last finished a step (None: none yet this run)
        self._watchdog_stop = threading.Event()

    # --- requests, between steps ------------------------------------------------------------------

    def take_requests(self) -> None:
        """Act on every request queued since the last turn, oldest first."""
        self.act(self.requests.take())

    def act(self, requests: list[tuple[Request, str, Change | None]]) -> None:
        """Act on requests taken from the queue, oldest first."""
        for what, by, setting in requests:
            if what == "set" and setting is not None:
                self._change(setting, by)
                continue
            refused = refusal(what, self.world_size)
            self.event("error" if refused else "info",
                       f"{what} requested by {by}" + (f": refused ({refused})" if refused else ""))
            if refused:
                continue
            if self.world_size > 1 and what in AGREED:
                self._vote(what)
            elif what == "pause" and self.state() in PAUSABLE:
                self.set_state("paused")
            elif what == "resume" and self.state() in WAITING:
                self.resume()
            elif what in ("save", "checkpoint"):
                self.save(what)
            elif what == "rollback":
                self.rollback()
            elif what == "stop":
                self.stopping = True

    def idle(self) -> None:
        """One turn of a waiting loop (paused, or the alarm is up): sleep until a request comes (or a moment
        passes); on several ranks, agree on stop and resume. No stall while waiting: the clock starts again."""
        if self.beat is not None:
            self.beat = time.monotonic()
        self.requests.wait(IDLE_WAIT_S)
        if self.world_size > 1:
            self._heartbeat()

    def stepped(self) -> None:
        """The loop finished a step (the watchdog's beat)."""
        self.beat = time.monotonic()

    # --- several ranks: votes ---------------------------------------------------------------------

    def _vote(self, what: Request) -> None:
        """A request acted on once every rank agrees (ballot, _heartbeat). A vote that does not apply now
        is dropped, as one rank would ignore it: a stale pause or resume must not fire later."""
        votes = self.votes
        if what == "stop":
            votes.stop = True
        elif what == "pause" and self.state() in PAUSABLE:
            votes.pause = True
        elif what == "resume" and votes.pause:
            votes.pause = False  # not sent yet: resuming cancels it
        elif what == "resume" and self.state() in WAITING:
            votes.resume = True

    def ballot(self) -> list[float]:
        """This rank's votes for the step's all-reduce: stop, pause, changes to send (a pause is sent once)."""
        votes = self.votes
        flags = [float(votes.stop), float(votes.pause), float(bool(votes.settings))]
        votes.pause = False
        return flags

    def tally(self, agreed: list[bool]) -> None:
        """Whether any rank voted for each (ballot's order): acted on after the step, by every rank alike."""
        stop_any, pause_any, settings_any = agreed
        self.stopping = self.stopping or stop_any
        self.votes.pause_agreed = pause_any
        self.votes.settings_agreed = settings_any

    def settle(self) -> None:
        """After a step: the live changes the ranks agreed on in it, applied on every rank."""
        if self.votes.settings_agreed:  # (every rank saw the flag in this step's all-reduce)
            self._agree_settings()

    def pause_if_agreed(self) -> None:
        """After a step: the pause the ranks agreed on in it (every rank pauses at the same step)."""
        if self.votes.pause_agreed:
            self.votes.pause_agreed = False
            self.set_state("paused")

    def _heartbeat(self) -> None:
        """While waiting on several ranks: agree on stop and resume requests (one tiny all-reduce)."""
        votes = self.votes
        stop, resume, settings = distributed.any_rank([votes.stop, votes.resume, bool(votes.settings)], self.device)
        votes.resume = False
        if settings:
            self._agree_settings()
        if stop:
            self.stopping = True
        elif resume:
            self.resume()

    # --- live changes -----------------------------------------------------------------------------

    def _change(self, change: Change, by: str) -> None:
        """A live change: applied now on one rank; on several, sent by rank 0 after the next step (settle)."""
        if self.world_size > 1:
            self.votes.settings.append((change, by))
        else:
            self._apply_change(change, by)

    def _agree_settings(self) -> None:
        """Several ranks, at a step boundary every rank reaches: rank 0 sends its queued changes; all apply them."""
        votes = self.votes
        votes.settings_agreed = False
        pending = distributed.share(lambda: [([list(kv) for kv in c], by) for c, by in votes.settings])
        votes.settings.clear()
        for change, by in pending:
            self._apply_change(tuple((key, value) for key, value in change), by)

    def _apply_change(self, change: Change, by: str) -> None:
        """Apply a change's settings together, or none of them (each is one event)."""
        trial = copy.deepcopy(self.cfg)  # checked again: an earlier change may have moved a bound (min_lr <= lr)
        for key, value in change:
            live.put(trial, key, value)
        try:
            validate(trial, where="set " + " ".join(key for key, _ in change))
        except ConfigError as e:
            self.event("error", f"{e} (requested by {by}; not applied)")
            return
        for key, value in change:
            old = live.get(self.cfg, key)
            live.put(self.cfg, key, value)
            was = self.changes.pop(key, (old, None))[0]
            if value != was:
                self.changes[key] = (was, value)
            self.event("info", f"set {key} {live.shown(old)} -> {live.shown(value)} by {by}")
        train = [key for key, _ in change if key.startswith("train.")]
        if train:
            self.reconfigure(any(key in live.SCHEDULE for key in train))

    def saved_changes(self) -> dict[str, Any]:
        """The live changes as a save's meta keeps them ("live")."""
        return {k: {"was": was, "now": now} for k, (was, now) in self.changes.items()}

    def restore_changes(self, saved: Any) -> None:
        """A resumed save's live changes that the config still has (a --set on resume replaces one)."""
        self.changes = {}
        for key, change in (saved if isinstance(saved, dict) else {}).items():
            if key in live.LIVE_KEYS and isinstance(change, dict) and live.get(self.cfg, key) == change.get("now"):
                self.changes[key] = (change.get("was"), change["now"])

    # --- alerts and the stall watchdog ------------------------------------------------------------

    def judge_step(self, step: int, stats: dict[str, float]) -> None:
        for alert in self.alerts.step(step, stats) if self.alerts is not None else ():
            self._raise_alert(alert)

    def judge_validation(self, step: int, val_loss: float, train_loss: float) -> None:
        """`train_loss` (the recent training loss) is for the overfitting alert."""
        for alert in self.alerts.validation(step, val_loss, train_loss) if self.alerts is not None else ():
            self._raise_alert(alert)

    def _raise_alert(self, alert: Alert) -> None:
        """An alert's event; the configured command (in the background) and action: a pause, or a stop that saves
        and ends the run like early stopping (through the request queue, so on several ranks the vote: every rank
        acts at the same step)."""
        a = self.cfg.alerts
        self.event("alert", alert.message)
        if a.command.strip():
            self.commands.run(a.command, alert.message, a.command_timeout, lambda why: self.event("error", why))
        what = ALERT_REQUESTS.get(a.action)  # ("none": nothing)
        if what is not None:
            self.requests.put(what, f"alert ({alert.rule})")

    def start_watchdog(self) -> threading.Thread | None:
        """Rank 0's stall watchdog, when the stall rule is on (stop_watchdog ends it)."""
        if self.alerts is None or "stall" not in self.alerts.rules:
            return None
        self._watchdog_stop.clear()
        thread = threading.Thread(target=self._watch_stalls, name="stall-watchdog", daemon=True)
        thread.start()
        return thread

    def stop_watchdog(self, thread: threading.Thread | None) -> None:
        """The run ends: the watchdog stops, and alert commands still running are given a moment, then killed
        with whatever they forked."""
        self._watchdog_stop.set()
        if thread is not None:
            thread.join()
        self.commands.close()

    def _watch_stalls(self) -> None:
        assert self.alerts is not None
        every = min(1.0, self.cfg.alerts.stall_seconds / 4)
        while not self._watchdog_stop.wait(every):
            beat = self.beat  # (watched only while running: not paused, waiting, stopping or before a step)
            watched = beat is not None and self.state() == "running" and not self.stopping
            seconds = time.monotonic() - beat if beat is not None and watched else None
            for alert in self.alerts.clock(self.progress.step_count, seconds):
                self._raise_alert(alert)
