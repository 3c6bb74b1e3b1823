"""The Tutor's control queue: requests from any thread, taken by the training loop between steps."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass
from typing import Literal

from babyllm.snapshot import State

Request = Literal["pause", "resume", "save", "checkpoint", "rollback", "stop"]
AGREED: tuple[Request, ...] = ("pause", "resume", "stop")  # on several ranks: acted on once every rank has heard
PAUSABLE: tuple[State, ...] = ("running",)
WAITING: tuple[State, ...] = ("paused", "alarm")  # the loop waits for requests instead of stepping; resume leaves


class Requests:
    """A queue of control requests that never blocks the caller, and a wake-up for a paused loop."""

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[Request] = queue.SimpleQueue()
        self._wake = threading.Event()

    def put(self, what: Request) -> None:
        self._queue.put(what)
        self._wake.set()

    def take(self) -> list[Request]:
        """Every request queued so far, oldest first."""
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
