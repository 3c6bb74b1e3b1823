"""Helpers for tests that write a run directory by hand (the follower's and the viewer's) or read a pane."""

from __future__ import annotations

import hashlib
import io
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from rich.console import Console
from textual.widgets import Static

from babyllm.config import load_config
from tui.fake import fake_stats

T = TypeVar("T")


def wait_for(cond: Callable[[], T], *, timeout: float = 60.0, what: str = "condition", every: float = 0.02) -> T:
    """Poll cond() until it is truthy (returned); fail after `timeout` seconds, naming what was awaited.
    (A long timeout costs only a failing test its time: a passing wait returns as soon as it can.)"""
    deadline = time.monotonic() + timeout
    while not (got := cond()):
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)
    return got


async def pilot_wait(pilot: Any, cond: Callable[[], object], *, timeout: float = 30.0, what: str = "condition") -> None:
    """wait_for inside a Pilot test: the app runs between looks."""
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await pilot.pause(0.02)


def line(step: int, **extra) -> str:
    stats = fake_stats(step)
    stats["step_ms"] = 5.0  # so that "idle" (no new step for 5 step times, at least idle_after) comes soon
    stats.update(extra)
    return json.dumps(stats) + "\n"


def append(path: Path, text: str) -> None:
    with open(path, "a", encoding="utf-8") as f:
        f.write(text)


def fingerprint(d: Path) -> dict[str, tuple]:
    """Every file under d: (size, mtime_ns, sha256)."""
    out = {}
    for p in sorted(d.rglob("*")):
        if p.is_file():
            st = p.stat()
            out[str(p.relative_to(d))] = (st.st_size, st.st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def write_save(run_dir: Path, step: int, steps: int = 0, name: str = "") -> Path:
    """A save folder with just a readable meta.json (enough for the Watcher's config look-up)."""
    cfg = load_config("tiny", [f"train.steps={steps}"])
    folder = run_dir / (name or f"save-{step:08d}")
    folder.mkdir(parents=True)
    (folder / "meta.json").write_text(json.dumps({"format": 1, "step": step, "config": cfg.to_dict(),
                                                  "config_name": "tiny", "files": {}}))
    return folder


def plain(widget: Static, width: int = 76) -> str:
    """What a Static shows, as plain text."""
    console = Console(width=width, file=io.StringIO(), color_system=None)
    console.print(widget.content)
    return console.file.getvalue()


def kill_trainer(run_dir: Path) -> None:
    """End a test's training process if it outlived the test (a cockpit detaches when its terminal goes).

    The pid is header.json's; it is killed only if its command line names this run directory."""
    import os
    import signal
    import time

    try:
        pid = int(json.loads((Path(run_dir) / "header.json").read_text())["pid"])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError, KeyError, TypeError):
        return
    if str(run_dir) not in cmdline:
        return
    for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 2.0)):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.1)
