"""End to end: detach a real cockpit, lose its terminal, attach a new one to the live run over its socket.

The real `babyllm-tui` in tmux: d detaches it, its tmux session is killed, and `babyllm-tui --attach
RUN` in a new session shows the run still training; p pauses it (the run's event names the attached
cockpit), a chat message gets a reply from the live model, and q then "stop the run" saves and stops it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from runhelpers import kill_trainer, wait_for
from test_tui_e2e import screen, step_on_screen, tmux, wait_screen

from babyllm.run.runfiles import DEBUG_LOG, EVENTS_FILE, METRICS_FILE, latest_step
from tui.actions import ACTIONS, Keys, Scope

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")]

EXE = Path(sys.executable).with_name("babyllm-tui")


def lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines() if path.exists() else []


def alive(pid: int) -> bool:
    """Running (a zombie no one has reaped yet counts as ended)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def detached_pid(run_dir: Path) -> int:
    line = next(x for x in lines(run_dir / DEBUG_LOG) if x.startswith("babyllm-tui: detached (pid "))
    return int(line.split("pid ")[1].split(")")[0])


def test_detach_kill_the_terminal_then_attach_pause_and_chat(tmp_path):
    run_dir = tmp_path / "run"
    cache = json.dumps(str(tmp_path / "cache"))
    first, second = f"babyllm-detach-{id(tmp_path)}", f"babyllm-attach-{id(tmp_path)}"
    # the shipped corpus (the default), a tiny config; save_every=0, so a save is the stop's
    train = (f"'{EXE}' --config tiny --run-dir '{run_dir}' --set data.cache_dir='{cache}' "
             f"--set train.save_every=0; echo shell-back rc=$?; sleep 60")
    tmux("new-session", "-d", "-s", first, "-x", "80", "-y", "24", train)
    pid = 0
    try:
        wait_screen(first, r"RUNNING\s+step")
        tmux("send-keys", "-t", first, "d")
        wait_screen(first, r"shell-back rc=0", timeout=30)
        assert "trains on as pid" in screen(first)
        pid = detached_pid(run_dir)
        tmux("kill-session", "-t", first)  # the terminal the run started in is gone
        before = len(lines(run_dir / METRICS_FILE))
        wait_for(lambda: len(lines(run_dir / METRICS_FILE)) > before + 10, what="training to go on after the detach")
        assert alive(pid)

        tmux("new-session", "-d", "-s", second, "-x", "80", "-y", "24",
             f"'{EXE}' --attach '{run_dir}'; echo attach-done rc=$?; sleep 60")
        wait_screen(second, r"RUNNING\s+step")
        seen = step_on_screen(second)
        wait_for(lambda: step_on_screen(second) > seen, what="the step to advance in the attached cockpit", timeout=30)
        tmux("send-keys", "-t", second, "p")
        wait_screen(second, r"PAUSED\s+step", timeout=30)
        events = "\n".join(lines(run_dir / EVENTS_FILE))
        assert "pause requested by babyllm-tui --attach (pid " in events

        tmux("send-keys", "-t", second, "i")
        time.sleep(0.5)
        tmux("send-keys", "-t", second, "-l", "hello there")
        tmux("send-keys", "-t", second, "Enter")
        wait_screen(second, r"baby\s+\S", timeout=60)  # a reply from the live model (paused: it waits for us)
        tmux("send-keys", "-t", second, "Escape")
        time.sleep(0.5)
        tmux("send-keys", "-t", second, "q")
        wait_screen(second, r"Stop the run", timeout=10)
        tmux("send-keys", "-t", second, Keys(ACTIONS).first("answer('stop')", Scope.ATTACHED_QUIT))
        wait_screen(second, r"attach-done rc=0", timeout=60)
        assert "the run stopped" in screen(second)
        wait_for(lambda: not alive(pid), what="the detached run to end after its stop", timeout=30)
        assert latest_step(run_dir) is not None
        assert "babyllm-tui (detached): training stopped at step" in "\n".join(lines(run_dir / DEBUG_LOG))
    finally:
        for session in (first, second):
            tmux_quiet("kill-session", "-t", session)
        if pid and alive(pid):
            os.kill(pid, 9)
        kill_trainer(run_dir)  # (also when the test failed before it knew the pid)


def tmux_quiet(*args: str) -> None:
    subprocess.run(["tmux", *args], capture_output=True)
