"""Detach: the run outlives the terminal (the d key, or SIGHUP with ``[tui] on_hangup = "detach"``).

The Tutor trains in a thread of the cockpit's process, and torch and threads make a fork after start-up
unsafe, so `babyllm-tui` forks first (``launch``, before torch is imported or a thread started): the
child runs the cockpit on the same terminal, the parent only waits. On detach the UI closes, the child
leaves the terminal (fds 0/1/2 to /dev/null and the run's debug log, a session of its own, SIGHUP
ignored) and tells the parent through a pipe; the parent prints one line and exits 0, so the shell's
prompt comes back (as tmux's detach) while the child trains on, headless, serving the run's control
socket as any training process does. Without a detach the parent exits with the child's exit code.

After a hang-up the terminal is dead: /dev/null goes over fds 0/1/2 at once, before the UI tears down,
so nothing writes to the dead tty (or blocks on it).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from babyllm.run.runfiles import DEBUG_LOG
from babyllm.snapshot import Say

if TYPE_CHECKING:  # the launcher forks before torch (which tutor_thread brings) is imported
    from tui.tutor_thread import TutorThread

# A signal the kernel sent (si_code > 0: a tty's ^C, a hang-up) reached the child's process group too;
# one another process sent the parent alone (si_code <= 0: kill, sigqueue) is passed on to the child.
PARENT_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
DETACHED_IGNORES = (signal.SIGHUP, signal.SIGTTOU, signal.SIGTTIN)
HANGUP_GRACE_S = 10.0  # after a hang-up, how long the UI may take to close before the run goes on without it


def detached_line(run_dir: str, pid: int) -> str:
    """What the launcher prints when its child detaches."""
    return (f"detached: {Path(run_dir).name} trains on as pid {pid}; attach with babyllm-tui --attach {run_dir}; "
            f"stop with babyllm ctl {run_dir} stop")


# --- the launcher (parent side) -------------------------------------------------------------------


def launch(child: Callable[[Notifier | None], int]) -> int:
    """Fork; the child runs ``child(notifier)`` and its return value is its exit code; the parent waits.

    Call it before torch is imported and before any thread starts. Where there is no fork (Windows)
    the cockpit runs in this process and a detach closes the UI without giving the prompt back.
    """
    if not hasattr(os, "fork"):
        return child(None)
    read_end, write_end = os.pipe()
    old_mask = signal.pthread_sigmask(signal.SIG_BLOCK, PARENT_SIGNALS)  # (no signal lost between fork and wait)
    try:
        pid = os.fork()
    except OSError:  # no process to spare: the cockpit runs here (a detach then keeps the terminal)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        for fd in (read_end, write_end):
            os.close(fd)
        return child(None)
    if pid == 0:
        os.close(read_end)
        signal.pthread_sigmask(signal.SIG_SETMASK, old_mask)
        return child(Notifier(write_end))
    os.close(write_end)
    return _wait(pid, read_end)


def _wait(pid: int, read_end: int) -> int:
    """The parent: forward signals sent to it alone, print the detach line, or return the child's code."""
    buffer, reading = b"", True
    while True:
        if reading and select.select([read_end], [], [], 0.1)[0]:
            chunk = os.read(read_end, 4096)
            buffer += chunk
            reading = bool(chunk)
            if b"\n" in buffer:
                _say_detached(buffer.split(b"\n", 1)[0])
                return 0
        elif not reading:
            time.sleep(0.1)
        info = signal.sigtimedwait(PARENT_SIGNALS, 0)
        if info is not None and info.si_code <= 0 and info.si_pid != pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, info.si_signo)
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            code = os.waitstatus_to_exitcode(status)
            return code if code >= 0 else 128 - code  # killed by signal N: 128 + N, as a shell says


def _say_detached(line: bytes) -> None:
    try:
        news = json.loads(line)
        text = detached_line(str(news["run_dir"]), int(news["pid"]))
    except (ValueError, KeyError, TypeError):
        text = "detached: the run trains on"
    with contextlib.suppress(OSError):  # the terminal may be gone (a hang-up): the child trains on regardless
        print(text, flush=True)


class Notifier:
    """The child's end of the launcher's pipe: one line when it detaches."""

    def __init__(self, fd: int) -> None:
        self.fd: int | None = fd

    def detached(self, run_dir: Path) -> None:
        if self.fd is None:
            return
        with contextlib.suppress(OSError):  # the parent died with the terminal: nobody to tell
            os.write(self.fd, json.dumps({"pid": os.getpid(), "run_dir": str(run_dir)}).encode() + b"\n")
        self.close()

    def close(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.close(self.fd)
            self.fd = None


# --- the child: leaving the terminal --------------------------------------------------------------


def silence_terminal() -> None:
    """/dev/null over fds 0, 1 and 2, so that nothing (the UI's last frames included) writes to a dead tty."""
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        os.close(null)


def leave_terminal(log: Path) -> None:
    """Fds 0 from /dev/null, 1 and 2 appended to ``log``; a session of its own; SIGHUP, SIGTTOU, SIGTTIN ignored."""
    for sig in DETACHED_IGNORES:
        signal.signal(sig, signal.SIG_IGN)
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    with contextlib.suppress(OSError):
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
    try:
        out = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError:  # an unwritable run directory: the output is lost, the training is not
        out = os.open(os.devnull, os.O_WRONLY)
    os.dup2(out, 1)
    os.dup2(out, 2)
    os.close(out)
    with contextlib.suppress(OSError):  # already a session leader (run without the launcher)
        os.setsid()


class Detacher:
    """How the cockpit's process goes on without its terminal; one per cockpit, used at most once.

    ``hung_up`` runs in the UI (a SIGHUP): the terminal is silenced and, should the UI not close within
    HANGUP_GRACE_S, a watchdog carries on in its place. ``carry_on`` runs once the UI has closed: the
    process leaves the terminal, tells the launcher, and waits for the Tutor, stopping it (it saves) on
    SIGTERM or SIGINT; it returns the process's exit code.
    """

    def __init__(self, run_dir: Path, notifier: Notifier | None = None,
                 silence: Callable[[], None] = silence_terminal,
                 leave: Callable[[Path], None] = leave_terminal, grace_s: float = HANGUP_GRACE_S) -> None:
        self.run_dir = Path(run_dir)
        self.grace_s = grace_s
        self.notifier = notifier
        self._silence, self._leave = silence, leave
        self._claimed = threading.Lock()
        self._watchdog: threading.Timer | None = None

    @property
    def log(self) -> Path:
        return self.run_dir / DEBUG_LOG

    def hung_up(self, thread: TutorThread) -> None:
        self._silence()
        self._watchdog = threading.Timer(self.grace_s, self._ui_stuck, (thread,))
        self._watchdog.daemon = True
        self._watchdog.start()

    def _ui_stuck(self, thread: TutorThread) -> None:
        """The UI did not close (its writer was stuck on the dead tty): train on from this thread, then end."""
        if self._claimed.acquire(blocking=False):
            thread.debug_log("babyllm-tui: the UI did not close after the hang-up; training carries on without it")
            self._leave_and_tell(thread)
            os._exit(self._wait(thread))

    def carry_on(self, thread: TutorThread, *, handle_signals: bool = True) -> int:
        if not self._claimed.acquire(blocking=False):  # the watchdog has it: it ends the process
            threading.Event().wait()
        if self._watchdog is not None:
            self._watchdog.cancel()
        self._leave_and_tell(thread)
        if handle_signals:
            _stop_on_signals(thread)
        return self._wait(thread)

    def _leave_and_tell(self, thread: TutorThread) -> None:
        thread.detach(self._debug(thread))
        self._leave(self.log)
        if self.notifier is not None:
            self.notifier.detached(self.run_dir)
        print(f"babyllm-tui: detached (pid {os.getpid()}); training carries on", file=sys.stderr, flush=True)

    @staticmethod
    def _debug(thread: TutorThread) -> Say:
        return lambda text: thread.debug_log(f"babyllm-tui (detached): {text}")

    @staticmethod
    def _wait(thread: TutorThread) -> int:
        while thread.alive:
            thread.wait(0.2)  # (short, so that signal handlers run in this, the main, thread)
        code, line = thread.outcome()
        with contextlib.suppress(OSError, ValueError):
            print(f"babyllm-tui (detached): {line}", file=sys.stderr, flush=True)
        return code


def _stop_on_signals(thread: TutorThread) -> None:
    """SIGTERM/SIGINT: the Tutor saves and stops; a second one ends the process at once (the save is intact)."""
    seen: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        seen.append(signum)
        if len(seen) > 1:
            os._exit(128 + signum)
        thread.stop(by=f"{signal.Signals(signum).name} to the detached babyllm-tui (pid {os.getpid()})")

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
