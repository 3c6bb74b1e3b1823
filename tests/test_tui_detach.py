"""Detach: the d key and a hang-up hand the running Tutor over to headless mode in the same process.

Pilot tests of the app's side (the UI closes, the Tutor is not stopped), the [tui] on_hangup config,
the launcher (a subprocess: it forks), Detacher.carry_on on a fake Tutor, and an end-to-end test: the
real `babyllm-tui` on a pty, d pressed (or the terminal closed), the shell's prompt back, training on,
then SIGTERM saves and the process exits 0.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import pty
import select
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest
from runhelpers import kill_trainer, pilot_wait
from test_tui import SMALL, make_app, started

from babyllm.config import load_config
from babyllm.errors import ConfigError
from babyllm.run.runfiles import DEBUG_LOG, METRICS_FILE, latest_step
from tui.detach import Detacher, Notifier, detached_line
from tui.fake import FakeTutor
from tui.tutor_thread import TutorThread

ROOT = Path(__file__).resolve().parents[1]


# --- the app ---------------------------------------------------------------------------------------


async def test_d_closes_the_ui_and_leaves_the_tutor_training():
    app, made = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        await pilot.press("d")
        await pilot_wait(pilot, lambda: not app.is_running)
    assert app.detached == "d key"
    assert "stop" not in made["tutor"].calls and app.tutor_thread.alive  # still training
    assert app.join_tutor(timeout=2)  # (the test stops it)


async def test_a_viewer_has_no_detach():
    app, made = make_app(viewer=True)
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        await pilot.press("d")
        await pilot.pause(0.1)
        assert app.is_running and not app.detached
    app.join_tutor(timeout=2)


class Recorder(Detacher):
    """A Detacher that records instead of touching this process's fds."""

    def __init__(self, run_dir: Path) -> None:
        self.silenced = 0
        super().__init__(run_dir, silence=self._count)

    def _count(self) -> None:
        self.silenced += 1


async def test_a_hang_up_detaches_after_silencing_the_terminal(tmp_path):
    detacher = Recorder(tmp_path)
    app, made = make_app(on_hangup="detach", detacher=detacher)
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        app.hang_up("SIGHUP")
        await pilot_wait(pilot, lambda: not app.is_running)
    assert detacher.silenced == 1 and app.detached == "SIGHUP"
    assert "stop" not in made["tutor"].calls and app.tutor_thread.alive
    assert detacher._watchdog is not None
    detacher._watchdog.cancel()  # (carry_on would; the UI closed in time)
    assert app.join_tutor(timeout=2)


async def test_on_hangup_stop_saves_and_stops_as_before(tmp_path, monkeypatch):
    ended: list[int] = []
    monkeypatch.setattr("tui.lifecycle.end_process_later", ended.append)  # (it would end pytest a few seconds later)
    detacher = Recorder(tmp_path)
    app, made = make_app(on_hangup="stop", detacher=detacher)
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        app.hang_up("SIGHUP")
        await pilot_wait(pilot, lambda: not app.is_running)
    assert detacher.silenced == 0 and not app.detached
    assert made["tutor"].calls == ["stop"] and ended == [0]  # the process ends even if the dead tty hangs
    assert app.join_tutor(timeout=2)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
async def test_a_signal_to_an_attached_cockpit_only_ends_the_cockpit(tmp_path, sig):
    detacher = Recorder(tmp_path)
    app, made = make_app(attached=True, on_hangup="stop", detacher=detacher)  # (on_hangup is the trainer's)
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        app._on_signal(sig)
        await pilot_wait(pilot, lambda: not app.is_running)
    assert app.detached == sig.name and "stop" not in made["tutor"].calls
    assert detacher.silenced == (sig == signal.SIGHUP)  # a hung-up terminal gets nothing more
    if detacher._watchdog is not None:
        detacher._watchdog.cancel()
    made["tutor"].stop()


async def test_q_still_asks_saves_and_stops():
    app, made = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        await pilot.press("q", "y")
        await pilot_wait(pilot, lambda: not app.is_running)
    assert not app.detached and made["tutor"].calls == ["stop"]


# --- config ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["detach", "stop"])
def test_on_hangup_takes_detach_or_stop(value):
    assert load_config("tiny", [f"tui.on_hangup={value}"]).tui.on_hangup == value


def test_on_hangup_defaults_to_detach():
    assert load_config("tiny").tui.on_hangup == "detach"


def test_a_bad_on_hangup_is_one_line_naming_the_key(tmp_path):
    with pytest.raises(ConfigError) as e:
        load_config("tiny", ["tui.on_hangup=quit"])
    assert "tui.on_hangup = 'quit'" in str(e.value) and "detach" in str(e.value) and "\n" not in str(e.value)
    config = tmp_path / "c.toml"
    config.write_text('[tui]\non_hangup = 3\n')
    with pytest.raises(ConfigError, match="c.toml: tui.on_hangup = 3: expected str"):
        load_config(config)


# --- carrying on without the UI --------------------------------------------------------------------


def test_carry_on_tells_the_launcher_and_waits_for_the_tutor(tmp_path):
    tutor = FakeTutor()
    thread = TutorThread(lambda message: None, tutor=tutor)
    thread.start()
    read_end, write_end = os.pipe()
    left: list[Path] = []
    detacher = Detacher(tmp_path / "run", Notifier(write_end), leave=left.append)
    threading.Timer(0.3, tutor.stop).start()  # as SIGTERM would (handle_signals=False: pytest owns them)
    assert detacher.carry_on(thread, handle_signals=False) == 0
    assert left == [tmp_path / "run" / DEBUG_LOG]
    news = json.loads(os.read(read_end, 4096))
    assert news == {"pid": os.getpid(), "run_dir": str(tmp_path / "run")}
    assert os.read(read_end, 10) == b""  # the notifier closed its end
    os.close(read_end)
    assert "babyllm ctl" in detached_line(news["run_dir"], news["pid"])


def test_after_a_detach_the_tutor_says_to_the_debug_log():
    tutor = FakeTutor()
    posted: list = []
    thread = TutorThread(posted.append, tutor=tutor)
    thread.detach(lambda text: tutor.debug_log(f"said: {text}"))
    thread.say("hello")
    thread.publish(tutor.snapshot())
    assert posted == [] and tutor.debug_lines == ["said: hello"]


# --- the launcher (forks: in a subprocess) ---------------------------------------------------------


def launcher(body: str, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    code = f"import os, sys, time, signal\nfrom tui.detach import launch\n{body}"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def test_the_launcher_exits_with_the_childs_code():
    done = launcher("sys.exit(launch(lambda notifier: 3))")
    assert done.returncode == 3


def test_the_launcher_returns_when_the_child_detaches(tmp_path):
    flag = tmp_path / "child-went-on"
    done = launcher(f"""
def child(notifier):
    from pathlib import Path
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1), os.dup2(null, 2)  # (as a detach does: else the test's pipes wait for this process)
    notifier.detached(Path("/runs/demo"))
    time.sleep(1.0)
    Path({str(flag)!r}).write_text("yes")
    os._exit(0)
sys.exit(launch(child))
""")
    assert done.returncode == 0 and not flag.exists()  # back before the child finished
    assert done.stdout.startswith("detached: demo trains on as pid ")
    assert "babyllm-tui --attach /runs/demo" in done.stdout
    deadline = time.monotonic() + 10
    while not flag.exists():
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_the_launcher_passes_a_sigterm_on_to_its_child(tmp_path):
    ready = tmp_path / "ready"
    done = launcher(f"""
def child(notifier):
    open({str(ready)!r}, "w").close()
    got = []
    signal.signal(signal.SIGTERM, lambda s, f: got.append(s))
    while not got:
        time.sleep(0.05)
    return 7
parent = os.getpid()
if os.fork() == 0:  # another process that signals the launcher alone, once its child runs
    while not os.path.exists({str(ready)!r}):
        time.sleep(0.05)
    os.kill(parent, signal.SIGTERM)
    os._exit(0)
sys.exit(launch(child))
""")
    assert done.returncode == 7, done.stderr


# --- end to end: the real babyllm-tui on a pty -----------------------------------------------------


PR_SET_CHILD_SUBREAPER = 36


@contextlib.contextmanager
def subreaper():
    """Orphans (the detached cockpit, once its launcher exits) become this process's children, so the
    test can wait for one and read its exit code."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) != 0:
        pytest.skip("prctl(PR_SET_CHILD_SUBREAPER) not available")
    try:
        yield
    finally:
        libc.prctl(PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
        with contextlib.suppress(ChildProcessError):  # the orphaned launcher, if the shell died first
            while os.waitpid(-1, os.WNOHANG)[0]:
                pass


class Terminal:
    """A shell on a pty running one command line; its output is drained continuously (as a terminal would)."""

    def __init__(self, command: str, cwd: Path) -> None:
        self.pid, self.fd = pty.fork()
        if self.pid == 0:
            os.chdir(cwd)
            os.execvp("sh", ["sh", "-c", command])
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))  # an 80x24 terminal
        self.text = ""

    def read(self, seconds: float = 0.1) -> None:
        with contextlib.suppress(OSError):
            while select.select([self.fd], [], [], seconds)[0]:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    return
                self.text += chunk.decode("utf-8", "replace")
                seconds = 0

    def until(self, condition, timeout: float = 60.0, what: str = "") -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"never {what}; output tail:\n{self.text[-2000:]}"
            self.read()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)


def metrics_lines(run_dir: Path) -> int:
    path = run_dir / METRICS_FILE
    return len(path.read_text().splitlines()) if path.exists() else 0


def wait_exit(pid: int, timeout: float = 60.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        assert time.monotonic() < deadline, f"pid {pid} did not exit"
        time.sleep(0.1)


def cockpit_command(tmp_path: Path, run_dir: Path, marker: str) -> str:
    exe = Path(sys.executable).with_name("babyllm-tui")
    cache = json.dumps(str(tmp_path / "cache"))
    # the shipped corpus (the default), a tiny config, no periodic saves: a save proves SIGTERM's
    return (f"'{exe}' --config tiny --run-dir '{run_dir}' --set data.cache_dir='{cache}' "
            f"--set train.save_every=0; echo {marker}$?; sleep 30")


def trains_on(run_dir: Path) -> None:
    before = metrics_lines(run_dir)
    deadline = time.monotonic() + 30
    while metrics_lines(run_dir) <= before + 10:
        assert time.monotonic() < deadline, "training did not advance after the detach"
        time.sleep(0.2)


def detached_pid(run_dir: Path) -> int:
    text = (run_dir / DEBUG_LOG).read_text()
    line = next(x for x in text.splitlines() if x.startswith("babyllm-tui: detached (pid "))
    return int(line.split("pid ")[1].split(")")[0])


def stop_and_check(pid: int, run_dir: Path) -> None:
    os.kill(pid, signal.SIGTERM)
    assert wait_exit(pid) == 0
    assert latest_step(run_dir) is not None
    assert "babyllm-tui (detached): training stopped at step" in (run_dir / DEBUG_LOG).read_text()


@pytest.mark.slow
def test_d_gives_the_prompt_back_and_training_goes_on(tmp_path):
    run_dir = tmp_path / "run"
    with subreaper():
        term = Terminal(cockpit_command(tmp_path, run_dir, "shell-back rc="), tmp_path)
        try:
            term.until(lambda: metrics_lines(run_dir) > 20, what="training started")
            term.read(0.5)
            os.write(term.fd, b"d")
            term.until(lambda: "shell-back rc=0" in term.text, timeout=30, what="the shell got control back")
            assert "detached: run trains on as pid" in term.text and "babyllm-tui --attach" in term.text
            pid = detached_pid(run_dir)
            assert pid == int(term.text.split("trains on as pid ")[1].split(";")[0])
            trains_on(run_dir)
            stop_and_check(pid, run_dir)
        finally:
            term.close()
            with contextlib.suppress(ChildProcessError, ProcessLookupError):
                os.kill(term.pid, signal.SIGKILL)
                os.waitpid(term.pid, 0)
            kill_trainer(run_dir)  # a failed check must not leave the detached run training


@pytest.mark.slow
def test_a_closed_terminal_leaves_the_run_training(tmp_path):
    run_dir = tmp_path / "run"
    with subreaper():
        term = Terminal(cockpit_command(tmp_path, run_dir, "rc="), tmp_path)
        try:
            term.until(lambda: metrics_lines(run_dir) > 20, what="training started")
            term.close()  # the terminal goes away (a dropped SSH session): SIGHUP
            deadline = time.monotonic() + 30
            while "babyllm-tui: detached (pid " not in (run_dir / DEBUG_LOG).read_text():
                assert time.monotonic() < deadline, (run_dir / DEBUG_LOG).read_text()[-2000:]
                time.sleep(0.2)
            pid = detached_pid(run_dir)
            trains_on(run_dir)
            assert "Traceback" not in (run_dir / DEBUG_LOG).read_text()
            stop_and_check(pid, run_dir)
        finally:
            with contextlib.suppress(ChildProcessError, ProcessLookupError):
                os.kill(term.pid, signal.SIGKILL)
                os.waitpid(term.pid, 0)
            kill_trainer(run_dir)  # a failed check must not leave the detached run training
