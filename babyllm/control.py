"""The Tutor's control queue: requests from any thread, taken by the training loop between steps."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

from babyllm.snapshot import State

Request = Literal["pause", "resume", "save", "checkpoint", "rollback", "stop", "set"]
Change = tuple[tuple[str, Any], ...]  # a "set" request's checked (key, value) pairs, applied together (babyllm.live)
AGREED: tuple[Request, ...] = ("pause", "resume", "stop")  # on several ranks: acted on once every rank has heard
PAUSABLE: tuple[State, ...] = ("running",)
WAITING: tuple[State, ...] = ("paused", "alarm")  # the loop waits for requests instead of stepping; resume leaves
DEFAULT_BY = "cockpit"  # who asked, when the caller does not say (the cockpit's keys call without it)


def refusal(what: Request, world_size: int) -> str | None:
    """Why a run on `world_size` ranks cannot do `what` (None: it can); the Tutor and the socket say the same."""
    if what == "rollback" and world_size > 1:
        return "rollback is not available when training on several ranks"
    return None


class Controls:
    """TutorControl's six control methods, each handing its Request to ``_request`` (one place for the
    Tutor's queue, a remote cockpit's sends and a viewer's refusals); each returns at once."""

    def _request(self, what: Request, by: str) -> None:
        raise NotImplementedError

    def pause(self, by: str = DEFAULT_BY) -> None:
        self._request("pause", by)

    def resume(self, by: str = DEFAULT_BY) -> None:
        self._request("resume", by)

    def request_save(self, by: str = DEFAULT_BY) -> None:
        self._request("save", by)

    def request_checkpoint(self, by: str = DEFAULT_BY) -> None:
        self._request("checkpoint", by)

    def rollback(self, by: str = DEFAULT_BY) -> None:
        self._request("rollback", by)

    def stop(self, by: str = DEFAULT_BY) -> None:
        self._request("stop", by)


class Requests:
    """Control requests (what, who asked, and a "set" request's change), queued without blocking the caller;
    a wake-up for a paused loop. One queue keeps their order: a set then a save saves the new setting."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[tuple[Request, str, Change | None]] = queue.SimpleQueue()
        self._wake = threading.Event()

    def put(self, what: Request, by: str = DEFAULT_BY, change: Change | None = None) -> None:
        self._queue.put((what, by, change))
        self._wake.set()

    def take(self) -> list[tuple[Request, str, Change | None]]:
        """Every request queued so far, oldest first, each with who asked (and the change, for "set")."""
        out = []
        while True:
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                return out

    def wait(self, timeout: float) -> None:
        """Sleep until a request arrives or `timeout` passes (a paused loop's idle)."""
        self._wake.wait(timeout)
        self._wake.clear()


@dataclass
class Votes:
    """Several ranks: this rank's pending stop/pause/resume requests, summed across ranks at each step."""

    stop: bool = False
    pause: bool = False
    resume: bool = False
    pause_agreed: bool = False  # every rank pauses after this step
    settings: list[tuple[Change, str]] = field(default_factory=list)  # rank 0's pending changes, with who asked
    settings_agreed: bool = False  # rank 0 sends its changes after this step; every rank applies them
