"""The monkey test (issue 13's "done means"): the real `babyllm-tui` in tmux, driven for about a
minute by random keys, pastes (bracketed and not, with escape sequences and tabs) and resizes. No
traceback may appear, on screen or in debug.log, and training must keep going throughout.

BABYLLM_MONKEY_SECONDS changes the duration; the seed is printed so a failure can be replayed.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from runhelpers import kill_trainer
from test_tui_e2e import screen, tmux, wait_screen, write_corpus

from tui.actions import ACTIONS

pytestmark = [pytest.mark.slow, pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux not installed")]

SECONDS = float(os.environ.get("BABYLLM_MONKEY_SECONDS", "60"))
SIZES = ((40, 12), (60, 20), (80, 24), (100, 30), (120, 34), (160, 50))
# Every cockpit key and plain typing, but nothing that could end the run: q, ctrl+c and ctrl+p (the
# palette can reach "quit") are left out, and a rollback needs ctrl+y, which is left out too.
KEYS = ("space", "p", "s", "c", "r", "i", "C-t", "Escape", "l", "m", "w", "S", "+", "-", "[", "]", "?", "F1",
        "0", "1", "2", "3", "4", "5", "6", "7", "8", "Tab", "BTab", "Enter", "n", "y", "a", "hello", "/temp 0.9",
        "/help", "BSpace", "Up", "Down", "Left", "Right", "PageUp", "PageDown", "Home", "End")
# d detaches the cockpit by design (the UI closes, training goes on): the monkey never sends it
DETACH_KEYS = {k for a in ACTIONS if a.action == "detach" for k in a.keys.split(",")}
PASTES = ("\x1b]0;title\x07 tab\there", "\x1b[31mred\x1b[0m\r\nnext line\n", "é中文🙂 " * 40,
          "word " * 400, "\t\t\x01\x7f\x1b")


def metrics_step(run_dir: Path) -> int:
    """The step of the last complete line of metrics.jsonl (-1 before the first)."""
    try:
        lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return -1
    for line in reversed(lines):
        try:
            return int(json.loads(line)["step"])
        except (ValueError, KeyError, TypeError):
            continue
    return -1


def monkey(session: str, rng: random.Random, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        roll = rng.random()
        if roll < 0.08:
            w, h = rng.choice(SIZES)
            tmux("resize-window", "-t", session, "-x", str(w), "-y", str(h))
        elif roll < 0.16:
            text, bracketed = rng.choice(PASTES), rng.random() < 0.5
            if not bracketed:  # unbracketed, a paste outside the chat input is keys: not the one that detaches
                text = "".join(c for c in text if c not in DETACH_KEYS)
            buffer = f"monkey-{os.getpid()}"  # (buffers are the tmux server's: one per test process)
            tmux("set-buffer", "-b", buffer, text)
            tmux("paste-buffer", "-d", "-b", buffer, *(["-p"] if bracketed else []), "-t", session)
        else:
            key = rng.choice(KEYS)
            literal = ["-l"] if len(key) > 1 and (" " in key or key.islower() or key.startswith("/")) else []
            tmux("send-keys", "-t", session, *literal, key)
        time.sleep(rng.uniform(0.0, 0.25))


def ask_to_quit(session: str, tries: int = 4) -> None:
    """Leave any input or dialog, then q until the quit question shows.

    A busy app can read an Escape and the q after it in one go, which terminals mean as alt+q (not q),
    so the escapes are followed by a pause, and q is pressed again if the question does not come."""
    for attempt in range(tries):
        for _ in range(3):
            tmux("send-keys", "-t", session, "Escape")
            time.sleep(0.3)
        time.sleep(1.0)
        tmux("send-keys", "-t", session, "q")
        try:
            wait_screen(session, r"Quit\?", timeout=8)
            return
        except AssertionError:
            if attempt == tries - 1:
                raise


def test_random_keys_pastes_and_resizes_never_break_the_cockpit(tmp_path: Path) -> None:
    seed = int(os.environ.get("BABYLLM_MONKEY_SEED", str(random.randrange(1 << 30))))
    print(f"monkey seed {seed} (BABYLLM_MONKEY_SEED={seed} replays it)")
    rng = random.Random(seed)
    exe = Path(sys.executable).with_name("babyllm-tui")
    corpus = write_corpus(tmp_path)
    run_dir = tmp_path / "run"
    done = tmp_path / "exit-code"
    session = f"babyllm-tui-monkey-{os.getpid()}"
    command = (f"'{exe}' --config tiny --corpus '{corpus}' --run-dir '{run_dir}' "
               f"--set data.cache_dir='\"{tmp_path / 'cache'}\"' --set train.save_every=40; "
               f"echo $? > '{done}.tmp'; mv '{done}.tmp' '{done}'; sleep 600")  # (whole, or not yet)
    tmux("new-session", "-d", "-s", session, "-x", "80", "-y", "24", command)
    try:
        wait_screen(session, r"RUNNING\s+step", timeout=90)
        start = metrics_step(run_dir)
        seen = ""
        checked = time.monotonic()
        deadline = time.monotonic() + SECONDS
        while time.monotonic() < deadline:
            monkey(session, rng, min(5.0, deadline - time.monotonic()))
            seen = screen(session)
            assert "Traceback" not in seen, seen
            assert not done.exists(), f"the cockpit exited (code {done.read_text().strip()}):\n{seen}"
            if time.monotonic() - checked > 20:
                checked = time.monotonic()
        tmux("send-keys", "-t", session, "Escape", "Escape", "Escape")
        time.sleep(1.0)
        # training kept going: a rollback may set the step back, so compare with what was logged lately
        now = metrics_step(run_dir)
        rows = (run_dir / "metrics.jsonl").read_text(encoding="utf-8", errors="replace").count("\n")
        assert rows > 10 and now != start, f"training did not advance ({start} -> {now})"
        debug = (run_dir / "debug.log").read_text(encoding="utf-8", errors="replace")
        assert "Traceback" not in debug, debug[-4000:]
        assert "failed (the app carries on)" not in debug, debug[-4000:]
        # and it still quits cleanly
        tmux("resize-window", "-t", session, "-x", "80", "-y", "24")
        ask_to_quit(session)
        tmux("send-keys", "-t", session, "y")
        end = time.monotonic() + 60
        while not done.exists():
            assert time.monotonic() < end, screen(session)
            time.sleep(0.2)
        assert done.read_text().strip() == "0", screen(session)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
        kill_trainer(run_dir)  # a killed terminal detaches the cockpit: never leave it training
