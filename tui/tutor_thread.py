"""The Tutor's thread: built and run in a daemon thread the app owns, told to stop once, joined with a
timeout; plus the signals and terminal checks that turn a lost session into a clean, saving stop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import threading
import traceback
from collections.abc import Callable
from typing import Any, Protocol

from textual.message import Message

from babyllm.errors import BabyError
from babyllm.model.runtime import release_openmp_threads
from babyllm.snapshot import Publish, Say, Snapshot, State, TutorControl
from tui.messages import SnapshotReady, TutorFailed, TutorFinished, TutorReady, TutorSaid

Post = Callable[[Message], Any]


class TutorFactory(Protocol):
    """Builds the Tutor (in the worker thread: it can take seconds) wired to the app's callbacks."""

    def __call__(self, publish: Publish, say: Say) -> TutorControl: ...


class TutorThread:
    """Builds (unless given one) and runs the Tutor in a daemon thread; reports by posting messages.

    Quitting can join the thread with a timeout, and a stop asked for while the Tutor is still being
    built is sent as soon as it exists.
    """

    def __init__(self, post: Post, factory: TutorFactory | None = None, tutor: TutorControl | None = None) -> None:
        if factory is None and tutor is None:
            raise ValueError("CockpitApp needs a tutor_factory or a tutor")
        self._post = post
        self._factory = factory
        self.tutor: Any = tutor
        self.stop_requested = threading.Event()
        self._stop_sent = False
        self._thread: threading.Thread | None = None
        self._said: Say | None = None  # once detached: where the Tutor's words go (the UI is gone)
        self.result: State | None = None  # what run() returned
        self.failed: TutorFailed | None = None

    def publish(self, snapshot: Snapshot) -> None:
        """Called from the Tutor's thread: queue a coalescing message, never block."""
        self._send(SnapshotReady(snapshot))

    def say(self, text: str) -> None:
        if self._said is not None:
            self._said(text)
        else:
            self._send(TutorSaid(text))

    def _send(self, message: Message) -> None:
        if self._said is None:  # detached: nobody reads the messages
            self._post(message)

    def detach(self, say: Say) -> None:
        """The UI has gone: drop snapshots, send what the Tutor says to ``say``; the Tutor trains on."""
        self._said = say

    def debug_log(self, text: str) -> None:
        """A line for the run's debug.log, through the Tutor (nothing while it is still being built)."""
        if self.tutor is not None:
            with contextlib.suppress(Exception):  # a full disk must not stop a detach
                self.tutor.debug_log(text)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._main, name="tutor", daemon=True)
        release_openmp_threads()  # the UI thread's pool would slow the Tutor's (see babyllm.model.runtime)
        self._thread.start()

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _main(self) -> None:
        try:
            tutor = self.tutor
            if tutor is None:
                assert self._factory is not None
                tutor = self._factory(self.publish, self.say)
            self.tutor = tutor
            self._post(TutorReady(tutor))
            if self.stop_requested.is_set():
                self.stop()
            run = getattr(tutor, "run", None)
            self.result = run() if callable(run) and not self.stop_requested.is_set() else None
            self._send(TutorFinished(self.result))
        except BabyError as e:
            # a user mistake found late (e.g. an empty corpus): the same exit code as the CLI's
            self._fail(TutorFailed(str(e), exit_code=2))
        except BaseException as e:  # noqa: BLE001 - shown on the error screen, never a frozen app
            self._fail(TutorFailed(f"{type(e).__name__}: {e}", traceback.format_exc()))

    def _fail(self, message: TutorFailed) -> None:
        self.failed = message
        if self._said is not None and message.details:
            self.debug_log(message.details)
        self._send(message)

    def outcome(self) -> tuple[int, str]:
        """Once the thread has ended: the exit code a headless run gives, and a line saying how it ended."""
        if self.failed is not None:
            return self.failed.exit_code, f"error: {self.failed.message}"
        snap = None
        with contextlib.suppress(Exception):
            snap = self.tutor.snapshot() if self.tutor is not None else None
        where = f" at step {snap.step}" if snap is not None else ""
        saved = f"; last save {snap.last_save_path}" if snap is not None and snap.last_save_path else ""
        if snap is not None and snap.last_save_error:
            return 1, f"{self.result or 'stopped'}{where}; save failed: {snap.last_save_error}"
        code = 0 if self.result in ("finished", "stopped", None) else 1
        return code, f"training {self.result or 'stopped'}{where}{saved}"

    def stop(self, by: str | None = None) -> None:
        """Tell the Tutor to stop, once (if it is still being built, the thread stops it when built);
        ``by`` names who asked (the Tutor's default: the cockpit)."""
        self.stop_requested.set()
        if self.tutor is not None and not self._stop_sent:
            self._stop_sent = True
            with contextlib.suppress(Exception):  # stopping is best effort; the join timeout is the backstop
                self.tutor.stop(**({"by": by} if by else {}))

    def wait(self, timeout: float) -> None:
        """Wait up to ``timeout`` for the thread to end (without asking it to stop)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def join(self, timeout: float) -> bool:
        """Stop the Tutor and wait for its thread; True when it ended. Safe to call after the app exits."""
        self.stop()
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()


def install_signal_handlers(on_signal: Callable[[int], None]) -> None:
    """SIGTERM/SIGHUP: save and exit cleanly (handlers run in this, the main, thread's loop)."""
    try:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(sig, on_signal, sig)
    except (NotImplementedError, RuntimeError, ValueError, AttributeError):
        pass  # not the main thread or no such signal (Windows): quitting by key still saves


def end_process_later(code: int, seconds: float = 5.0) -> None:
    """End the process with ``code`` after ``seconds`` unless it ended by then: restoring a terminal that
    is gone can hang, and by now the Tutor has stopped and saved (or its join timed out)."""
    watchdog = threading.Timer(seconds, os._exit, (code,))
    watchdog.daemon = True
    watchdog.start()


def tty(fd: int) -> bool:
    """Is fd a terminal that still answers (a hung-up one fails tcgetattr)?"""
    try:
        import termios

        termios.tcgetattr(fd)
        return True
    except Exception:  # noqa: BLE001 - termios.error, OSError, ImportError (Windows)
        return False
