"""Signals while a command starts: SIGINT, SIGTERM or SIGHUP before the command handles them itself end it cleanly
(exit 128 + N, no traceback, nothing half-written). They are acted on at the next point where stopping is clean.

A signal is remembered, never raised where the main thread happens to be: Python's own KeyboardInterrupt lands
inside an import or a finalizer, where it is swallowed (the run then trained on) or leaves a module half
imported (numpy, then a RecursionError traceback). An entry point installs a StartupGuard first thing and calls
`check()` where stopping is clean; a command that handles the signals itself (`babyllm train`) replaces it and
takes what it saw (`caught_before`); any other command releases it (Python's defaults again) before it runs.
A second signal exits at once.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterable
from types import FrameType
from typing import Any

STOP_SIGNALS: tuple[int, ...] = tuple(
    s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGHUP")) if s is not None)


class Interrupted(KeyboardInterrupt):
    """A stop signal while starting (a KeyboardInterrupt, so what catches Ctrl-C catches it too)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # as a shell reports a process ended by signal N


def exit_code(e: KeyboardInterrupt) -> int:
    """A command's exit status after `e`: 128 + the signal (130 for Ctrl-C)."""
    return e.exit_code if isinstance(e, Interrupted) else 130


class StartupGuard:
    """While installed (main thread only), a stop signal is remembered in `seen`; check() raises Interrupted for
    it; a second one exits at once."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self._previous: dict[int, Any] = {}

    def __call__(self, signum: int, _frame: FrameType | None) -> None:
        self.seen.append(signum)
        if len(self.seen) > 1:
            second_signal(signum)

    def check(self) -> None:
        """Raise Interrupted if a stop signal came (call it where stopping is clean)."""
        if self.seen:
            raise Interrupted(self.seen[0])

    def install(self) -> StartupGuard:
        if threading.current_thread() is threading.main_thread():
            for s in STOP_SIGNALS:
                self._previous[s] = signal.signal(s, self)
        return self

    def release(self) -> None:
        """Put back the handlers it replaced, where it is still the one installed."""
        for s, handler in self._previous.items():
            if signal.getsignal(s) is self:
                signal.signal(s, handler)
        self._previous = {}


def second_signal(signum: int) -> None:
    """Exit at once (a second signal: the user means it); the last save is intact, saves being atomic."""
    try:
        os.write(2, b"second signal: exiting now (the last save is intact)\n")
    finally:
        os._exit(128 + signum)


def caught_before(replaced: Iterable[Any]) -> int | None:
    """The first stop signal a StartupGuard among `replaced` (the handlers a command's own replaced) saw."""
    for handler in replaced:
        if isinstance(handler, StartupGuard) and handler.seen:
            return handler.seen[0]
    return None
