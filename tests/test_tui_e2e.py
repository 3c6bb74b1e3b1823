"""End to end: the real `babyllm-tui` in tmux; keys in, screen text out (tmux capture-pane)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from runhelpers import kill_trainer

from babyllm.run.runfiles import latest_step

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")]

STEP = re.compile(r"step ([\d,]+)")


def write_corpus(tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus.txt"
    line = "The kettle sang in the kitchen while the rain fell on the harbour boats.\n"
    corpus.write_text(line * 150, encoding="utf-8")
    return corpus


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], check=True, capture_output=True, text=True).stdout


def screen(session: str) -> str:
    return tmux("capture-pane", "-p", "-t", session)


def wait_screen(session: str, pattern: str, timeout: float = 60.0) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while True:
        m = re.search(pattern, screen(session))
        if m:
            return m
        assert time.monotonic() < deadline, f"never saw {pattern!r}; screen:\n{screen(session)}"
        time.sleep(0.2)


def step_on_screen(session: str) -> int:
    m = STEP.search(screen(session))
    return int(m.group(1).replace(",", "")) if m else -1


def test_babyllm_tui_in_tmux(tmp_path: Path) -> None:
    exe = Path(sys.executable).with_name("babyllm-tui")
    corpus = write_corpus(tmp_path)
    run_dir = tmp_path / "run"
    done = tmp_path / "exit-code"
    session = f"babyllm-tui-test-{id(tmp_path)}"
    command = (f"'{exe}' --config tiny --corpus '{corpus}' --run-dir '{run_dir}' "
               f"--set data.cache_dir='\"{tmp_path / 'cache'}\"' --set train.save_every=0; "
               f"echo $? > '{done}.tmp'; mv '{done}.tmp' '{done}'")  # (whole, or not there yet)
    tmux("new-session", "-d", "-s", session, "-x", "80", "-y", "24", command)
    try:
        wait_screen(session, r"RUNNING\s+step")
        first = step_on_screen(session)
        deadline = time.monotonic() + 30
        while step_on_screen(session) <= first:  # training advances on screen
            assert time.monotonic() < deadline, screen(session)
            time.sleep(0.2)
        assert latest_step(run_dir) is None
        tmux("send-keys", "-t", session, "s")
        deadline = time.monotonic() + 30
        while latest_step(run_dir) is None:  # `s` saves
            assert time.monotonic() < deadline, screen(session)
            time.sleep(0.2)
        tmux("send-keys", "-t", session, "q")
        wait_screen(session, r"Quit\?")
        tmux("send-keys", "-t", session, "y")
        deadline = time.monotonic() + 30
        while not done.exists():  # the process ends by itself
            assert time.monotonic() < deadline, screen(session)
            time.sleep(0.2)
        assert done.read_text().strip() == "0"
        assert latest_step(run_dir) is not None and latest_step(run_dir) > first
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        kill_trainer(run_dir)  # a killed terminal detaches the cockpit: never leave it training
