"""The control ops (the op table), and the Tutor's control queue: requests from any thread, taken by the
training loop between steps.

`Controls` is the op table: each row is an `Op` (the request a client sends, what it does, how several
ranks take it) and the TutorControl method named by its attribute. The Tutor, the follower and RemoteTutor
implement the methods through it; the endpoint dispatches, `babyllm ctl` and RemoteTutor send, and the help
is written, from OPS.
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Protocol, overload

from babyllm.snapshot import State

Request = Literal["pause", "resume", "save", "checkpoint", "rollback", "stop", "set"]  # OPS' names
Change = tuple[tuple[str, Any], ...]  # a "set" request's checked (key, value) pairs, applied together (babyllm.live)
PAUSABLE: tuple[State, ...] = ("running",)
WAITING: tuple[State, ...] = ("paused", "alarm")  # the loop waits for requests instead of stepping; resume leaves
DEFAULT_BY = "cockpit"  # who asked, when the caller does not say (the cockpit's keys call without it)


class Ask(Protocol):
    """A control method bound to its control: asks for the op on behalf of `by`, and returns at once."""

    def __call__(self, by: str = ...) -> None: ...


@dataclass(frozen=True)
class Op:
    """One control op. In Controls' body it is also the TutorControl method its attribute names (`method`),
    which hands the op to the control's ``_request``."""

    name: Request  # what a client sends (babyllm.socket.wire) and `babyllm ctl` takes
    does: str  # one line of help
    agreed: bool = False  # several ranks: a vote, acted on once every rank has heard (the Tutor's _vote)
    one_rank: bool = False  # refused when training on several ranks (refusal says why)
    method: str = ""  # the TutorControl method (in Controls: its attribute's name)

    def __set_name__(self, owner: type, name: str) -> None:
        object.__setattr__(self, "method", name)

    def __call__(self, control: Controls, by: str = DEFAULT_BY) -> None:
        control._request(self.name, by)

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> Op: ...

    @overload
    def __get__(self, obj: Controls, owner: type | None = None) -> Ask: ...

    def __get__(self, obj: Controls | None, owner: type | None = None) -> Op | Ask:
        return self if obj is None else functools.partial(self, obj)  # (a method, bound as functions are)


class Controls:
    """The op table: TutorControl's control methods, one row each, handing their op to ``_request`` (one
    place for the Tutor's queue, a remote cockpit's sends and a viewer's refusals); each returns at once."""

    pause = Op("pause", "pause training between steps", agreed=True)
    resume = Op("resume", "resume training (also after a NaN alarm)", agreed=True)
    request_save = Op("save", "save now (the rolling save a resume starts from)")
    request_checkpoint = Op("checkpoint", "checkpoint now (a step-numbered save that is kept)")
    rollback = Op("rollback", "roll back to the last save, then pause", one_rank=True)
    stop = Op("stop", "save, then stop training", agreed=True)

    def _request(self, what: Request, by: str) -> None:
        raise NotImplementedError


# Live settings (babyllm.live): LiveSettings.set_settings, which takes the settings as well as who asked;
# on several ranks rank 0 sends its changes to every rank, applied at the same step.
SET = Op("set", "change live settings mid-run (KEY=VALUE ...)", method="set_settings")
CONTROL_OPS: tuple[Op, ...] = tuple(v for v in vars(Controls).values() if isinstance(v, Op))
OPS: tuple[Op, ...] = (*CONTROL_OPS, SET)
OP: Mapping[str, Op] = MappingProxyType({op.name: op for op in OPS})
AGREED: tuple[Request, ...] = tuple(op.name for op in OPS if op.agreed)


def refusal(what: Request, world_size: int) -> str | None:
    """Why a run on `world_size` ranks cannot do `what` (None: it can); the Tutor and the socket say the same."""
    if OP[what].one_rank and world_size > 1:
        return f"{what} is not available when training on several ranks"
    return None


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
