"""`babyllm-tui --watch`: tailing a run's files, the Watcher, the viewer app, the CLI, and a real run."""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console
from textual.widgets import Static

from babyllm.config import load_config
from babyllm.errors import BabyError
from tui.cli import main as tui_main
from tui.fake import fake_stats
from tui.screens import ConfirmScreen, HelpScreen
from tui.app import CockpitApp
from tui.watch import JsonlTail, LineTail, WatchChat, Watcher, check_watch_dir
from tui.widgets.status import StatusBar

sys.path.insert(0, str(Path(__file__).parent))
from textgen import sentences  # noqa: E402

SMALL = (80, 24)


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


# --- tailing ------------------------------------------------------------------------------------


def test_tail_waits_for_the_file_and_keeps_a_partial_line(tmp_path):
    f = tmp_path / "m.jsonl"
    tail = JsonlTail(f)
    assert tail.records() == ([], False, False) and not tail.exists
    f.write_text('{"step": 1}\n{"step": 2, "lo')
    assert tail.records()[0] == [{"step": 1}]
    assert tail.records()[0] == []  # the half line waits for its newline
    append(f, 'ss": 3.5}\n{"step"')
    assert tail.records()[0] == [{"step": 2, "loss": 3.5}]
    append(f, ': 3}\nnot json\n[1]\n\n{"step": 4}\n')
    recs, restarted, more = tail.records()
    assert recs == [{"step": 3}, {"step": 4}] and not restarted and not more
    assert tail.bad_lines == 2


def test_tail_starts_over_after_truncation_replacement_or_rewrite(tmp_path):
    f = tmp_path / "m.jsonl"
    f.write_text('{"step": 1}\n{"step": 2}\n')
    tail = JsonlTail(f)
    assert len(tail.records()[0]) == 2
    f.write_text('{"step": 7}\n')  # truncated (a new run opened it with "w")
    assert tail.records() == ([{"step": 7}], True, False)
    tmp = tmp_path / "new"
    tmp.write_text('{"step": 8}\n')
    os.replace(tmp, f)  # replaced: another inode
    assert tail.records() == ([{"step": 8}], True, False)
    f.write_text('{"step": 9, "x": 1}\n' * 3)  # rewritten in place and already longer than before
    recs, restarted, _ = tail.records()
    assert restarted and recs == [{"step": 9, "x": 1}] * 3
    f.unlink()  # gone: nothing new, wait
    assert tail.records() == ([], False, False)
    f.write_text('{"step": 1}\n')
    assert tail.records() == ([{"step": 1}], True, False)


def test_tail_reads_a_long_file_in_chunks_and_can_start_near_its_end(tmp_path):
    f = tmp_path / "m.jsonl"
    f.write_text("".join(json.dumps({"step": i}) + "\n" for i in range(1, 1001)))
    tail = JsonlTail(f, chunk=1000)
    got, rounds = [], 0
    while True:
        recs, _, more = tail.records()
        got += recs
        rounds += 1
        if not more:
            break
    assert [r["step"] for r in got] == list(range(1, 1001)) and rounds > 5
    near = JsonlTail(f, start_within=200)
    steps = [r["step"] for r in near.records()[0]]
    assert steps == list(range(steps[0], 1001)) and steps[0] > 980 and near.bad_lines == 0
    raw = LineTail(f, start_within=len(json.dumps({"step": 1000})) + 1)  # starts exactly at a line start
    assert raw.read().lines == [b'{"step": 1000}']


def test_watcher_nulls_repeated_steps_events_saves_and_states(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    published = []
    w = Watcher(run, publish=published.append, idle_after=0.3)
    w.poll_once()
    assert w.snapshot().state == "waiting" and "metrics.jsonl" in w.note
    m = run / "metrics.jsonl"
    append(m, "".join(line(s) for s in range(1, 11)))
    append(m, line(11, loss=None, grad_norm=None))  # non-finite values are written as null
    w.poll_once()
    snap = w.snapshot()
    assert snap.state == "running" and snap.step == 11 and snap.tokens == 11 * 1024
    assert math.isnan(snap.stats["loss"]) and math.isnan(snap.stats["grad_norm"])
    steps, losses = w.history.series("loss")
    assert steps == list(range(1, 12)) and math.isnan(losses[-1])
    # resumed from a save at step 5: steps 6.. come again, and the later lines win
    append(m, line(6, loss=1.0) + line(7, loss=2.0) + line(8, loss=3.0))
    w.poll_once()
    steps, losses = w.history.series("loss")
    assert steps == list(range(1, 9)) and losses[-3:] == [1.0, 2.0, 3.0]
    assert w.snapshot().step == 8
    # events and saves
    append(run / "events.jsonl", json.dumps({"step": 5, "kind": "save", "message": "saved step 5", "time": 1.0}) + "\n")
    append(run / "debug.log",
           "2026-01-01 00:00:00.000 [MainThread] tutor start: config tiny, device cuda:0, resume=False\n")
    write_save(run, 5, steps=10)
    w.poll_once()
    snap = w.snapshot()
    assert snap.events[-1].message == "saved step 5" and snap.event_count == 1
    assert (snap.config_name, snap.device, snap.max_steps) == ("tiny", "cuda:0", 10) and "save 5" in w.note
    time.sleep(0.5)
    w.poll_once()
    assert w.snapshot().state == "idle" and "no new step" in w.note
    append(m, line(9) + line(10))
    w.poll_once()
    assert w.snapshot().state == "finished" and w.snapshot().step == 10
    # a new run in the same place (metrics.jsonl truncated): start over
    m.write_text(line(1))
    w.poll_once()
    assert w.snapshot().step == 1 and w.history.series("loss")[0] == [1]
    assert "started over" in w.snapshot().events[-1].message
    assert published and published[-1] is w.snapshot()


def test_watcher_takes_the_config_from_best_before_the_first_save(tmp_path):
    write_save(tmp_path, 0, steps=300, name="best")
    append(tmp_path / "metrics.jsonl", line(1))
    w = Watcher(tmp_path)
    w.poll_once()
    snap = w.snapshot()
    assert (snap.max_steps, snap.config_name, w.save_step) == (300, "tiny", None) and "no save yet" in w.note
    assert "best weights so far (step 0)" in WatchChat(tmp_path).reload()


def test_watcher_controls_do_nothing_and_stop_ends_the_thread(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    append(run / "metrics.jsonl", line(1))
    before = fingerprint(run)
    w = Watcher(run, poll=0.02).start()
    w.pause(), w.resume(), w.request_save(), w.request_checkpoint(), w.rollback()
    time.sleep(0.1)
    assert w.refused == ["pause", "resume", "save", "checkpoint", "rollback"]
    assert w.snapshot().step == 1 and fingerprint(run) == before
    assert w.join(timeout=2)


def test_chat_without_a_save_says_so(tmp_path):
    chat = WatchChat(tmp_path)
    assert "no save yet" in chat.reload()
    with pytest.raises(BabyError, match="no save to chat with yet"):
        list(chat.stream("hello"))
    with pytest.raises(BabyError, match="send a message first"):
        chat.command("/temp 0.5")
    assert "/reload" in chat.command("/help")


# --- the CLI --------------------------------------------------------------------------------------


@pytest.mark.parametrize("extra, message", [
    ([], "no such run directory"),
    (["--resume"], "cannot be combined with --resume"),
    (["--config", "tiny", "--set", "train.lr=1"], "cannot be combined with --config, --set"),
])
def test_cli_refuses_a_missing_dir_and_training_options(tmp_path, capsys, extra, message):
    assert tui_main(["--watch", str(tmp_path / "nope"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err


def test_check_watch_dir(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(BabyError, match="not a babyllm run"):
        check_watch_dir(tmp_path)
    with pytest.raises(BabyError, match="not a directory"):
        check_watch_dir(tmp_path / "notes.txt")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert check_watch_dir(empty) == empty  # waited on: a run is about to write into it
    write_save(tmp_path / "run", 5)
    assert check_watch_dir(tmp_path / "run") == tmp_path / "run"
    with pytest.raises(BabyError, match="one save folder"):
        check_watch_dir(tmp_path / "run" / "save-00000005")


# --- the viewer app -----------------------------------------------------------------------------


async def wait_for(pilot, condition, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await pilot.pause(0.02)


def make_app(run: Path) -> tuple[CockpitApp, dict]:
    made: dict = {}

    def factory(publish, say):
        made["watcher"] = Watcher(run, publish=publish, say=say, poll=0.05)
        return made["watcher"]

    return CockpitApp(factory, chat_factory=lambda w: WatchChat(run), viewer=True, handle_signals=False), made


def plain(widget: Static, width: int = 76) -> str:
    """What a Static shows, as plain text."""
    console = Console(width=width, file=io.StringIO(), color_system=None)
    console.print(widget.content)
    return console.file.getvalue()


def status_text(app) -> str:
    return str(app.query_one(StatusBar).render())


async def test_viewer_follows_appended_metrics_and_refuses_controls(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    app, made = make_app(run)
    async with app.run_test(size=SMALL) as pilot:
        # The status bar follows the snapshot on the app's next tick: wait for it, don't race it.
        await wait_for(pilot, lambda: "WAITING" in status_text(app) and "metrics.jsonl" in status_text(app))
        m = run / "metrics.jsonl"
        append(m, "".join(line(s) for s in range(1, 21)))
        await wait_for(pilot, lambda: app.snapshot.step == 20)
        await wait_for(pilot, lambda: "step 20" in status_text(app) and "RUNNING" in status_text(app))
        grid = app.query_one("#stats-grid", Static)
        await wait_for(pilot, lambda: "loss" in plain(grid))
        first = plain(grid)
        append(m, line(21, loss=9.876))
        await wait_for(pilot, lambda: "step 21" in status_text(app))
        await wait_for(pilot, lambda: plain(grid) != first)
        assert "9.876" in plain(grid)
        # footer: no training controls; the keys only say that a viewer cannot do that
        shown = {b.key for _, b, enabled, _ in app.screen.active_bindings.values() if b.show}
        assert {"q", "r"} <= shown and not shown & {"space", "p", "s", "c"}
        before = fingerprint(run)
        await pilot.press("space", "p", "s", "c")
        await pilot.pause(0.1)
        assert made["watcher"].refused == ["pause", "pause", "save", "checkpoint"]
        assert not isinstance(app.screen, ConfirmScreen) and fingerprint(run) == before
        assert "viewer" in list(app._notifications)[-1].message
        await pilot.press("r")  # r: the chat takes the newest save at the next message
        assert app.chat.needs_load
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen) and app.screen.heading == "babyllm-tui viewer keys"
        await pilot.press("escape", "q")  # q quits at once: nothing to save
        await wait_for(pilot, lambda: not app.is_running)
    assert app.join_tutor(timeout=2)
    assert made["watcher"].refused == ["pause", "pause", "save", "checkpoint"]


# --- a real training run, watched -------------------------------------------------------------------


@pytest.mark.slow
def test_watching_a_real_training_run(tmp_path):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(sentences(120), encoding="utf-8")  # ~5 KB
    run = tmp_path / "run"
    cmd = [sys.executable, "-m", "babyllm", "train", "--config", "tiny", "--steps", "200", "--run-dir", str(run),
           "--corpus", str(corpus), "--set", f'data.cache_dir="{tmp_path / "cache"}"']
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            cwd=Path(__file__).parent.parent)
    seen: list[int] = []
    w = Watcher(run, poll=0.02, publish=lambda s: seen.append(s.step))
    try:
        w.start()
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, out
        deadline = time.monotonic() + 10
        while w.snapshot().step != 200 or w.snapshot().state != "finished":
            assert time.monotonic() < deadline, (w.snapshot().step, w.snapshot().state)
            time.sleep(0.05)
    finally:
        proc.kill()
        assert w.join(timeout=5)
    assert any(0 < s < 200 for s in seen) and seen[-1] == 200  # the watched step advanced with the run
    snap = w.snapshot()
    assert snap.config_name == "tiny" and snap.device == "cpu" and w.save_step == 200
    assert any(e.kind == "save" for e in snap.events)
    names = {p.name for p in run.iterdir()}  # only what the trainer writes: the viewer made nothing
    assert names <= {"metrics.jsonl", "events.jsonl", "debug.log", "tokenizer.json", "best", "train.lock",
                     "save-00000150", "save-00000200"}, names
    assert w.history.series("loss", 10_000)[0] == list(range(1, 201))
    # the viewer (a fresh Watcher, and the chat loading the newest save) leaves the run as it is
    before = fingerprint(run)
    w2 = Watcher(run)
    while w2.poll_once():
        pass
    chat = WatchChat(run)
    reply = "".join(chat.stream("The baker"))
    assert isinstance(reply, str) and any("step 200" in n for n in chat.notices)
    assert "step 200" in chat.reload() and chat.needs_load
    assert w2.snapshot().step == 200 and fingerprint(run) == before
