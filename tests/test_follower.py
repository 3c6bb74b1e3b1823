"""The follower (babyllm.run.follower): tailing a run's files, the Watcher, its saved-weights chat, and a real run."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from babyllm.errors import BabyError
from babyllm.run.follower import SavedChat, Watcher
from babyllm.run.runfiles import Header, write_header
from babyllm.run.tails import JsonlTail, LineTail

sys.path.insert(0, str(Path(__file__).parent))
from runhelpers import append, fingerprint, line, write_save  # noqa: E402

from textgen import sentences  # noqa: E402

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
    write_header(run, Header(config_name="tiny", device="cuda:0"))
    write_save(run, 5, steps=10)
    w.poll_once()
    snap = w.snapshot()
    assert snap.events[-1].message == "saved step 5" and snap.event_count == 1
    assert (snap.config_name, snap.device, snap.max_steps) == ("tiny", "cuda:0", 10) and "save 5" in w.note
    (run / "control.sock").touch()  # (the trainer's socket: it still holds the run)
    time.sleep(0.5)
    w.poll_once()
    assert w.snapshot().state == "idle" and "no new step" in w.note
    (run / "control.sock").unlink()  # gone: the trainer let go of the run before train.steps
    w.poll_once()
    assert w.snapshot().state == "stopped" and "stopped at step 8" in w.note
    append(m, line(9) + line(10))
    w.poll_once()
    assert w.snapshot().state == "finished" and w.snapshot().step == 10
    # a new run in the same place (metrics.jsonl truncated): start over
    m.write_text(line(1))
    w.poll_once()
    assert w.snapshot().step == 1 and w.history.series("loss")[0] == [1]
    assert "started over" in w.snapshot().events[-1].message
    assert published and published[-1] is w.snapshot()


def test_a_run_that_spent_its_minutes_is_finished_not_idle(tmp_path):
    """A run on a time budget (train.minutes, no train.steps) that spent it and let go: "finished"; one that let
    go before: "stopped"; only a run whose trainer still holds it (its socket) is "idle" when quiet."""
    run = tmp_path / "run"
    run.mkdir()
    append(run / "metrics.jsonl", "".join(line(s) for s in range(1, 21)))
    folder = write_save(run, 20)
    meta = json.loads((folder / "meta.json").read_text())
    meta["config"]["train"]["minutes"] = 0.5
    meta["train_seconds"] = 30.2
    (folder / "meta.json").write_text(json.dumps(meta))
    os.utime(run / "metrics.jsonl", (time.time() - 60, time.time() - 60))
    w = Watcher(run, idle_after=0.3)
    w.poll_once()
    assert w.snapshot().state == "finished" and "budget" in w.note
    meta["train_seconds"] = 12.0  # stopped half way through its budget
    (folder / "meta.json").write_text(json.dumps(meta))
    (folder.rename(run / "save-00000021"))
    append(run / "metrics.jsonl", line(21))
    os.utime(run / "metrics.jsonl", (time.time() - 60, time.time() - 60))
    w.poll_once()
    assert w.snapshot().state == "stopped"


def test_a_failed_save_is_the_snapshots_last_save_error_from_the_events_kind(tmp_path):
    """The viewer's cockpit flashes a failed save from the event's kind; the Watcher passes its message on as
    last_save_error (never reading it), until a save is written."""
    run = tmp_path / "run"
    run.mkdir()
    append(run / "metrics.jsonl", "".join(line(s) for s in range(1, 6)))
    w = Watcher(run)
    w.poll_once()
    assert w.snapshot().last_save_error is None
    failed = "disk full (whatever the text)"
    events = run / "events.jsonl"
    for step in (4, 5):
        append(events, json.dumps({"step": step, "kind": "save_error", "message": failed, "time": 1.0}) + "\n")
        w.poll_once()
        snap = w.snapshot()
        assert snap.last_save_error == failed and snap.events[-1].kind == "save_error"
    append(events, json.dumps({"step": 5, "kind": "error", "message": "save failed, says a text", "time": 1.0}) + "\n")
    append(events, json.dumps({"step": 5, "kind": "checkpoint", "message": "saved", "time": 1.0}) + "\n")
    w.poll_once()
    assert w.snapshot().last_save_error is None


def test_the_viewers_stats_are_the_runs_not_the_records_clock(tmp_path):
    """A metrics record's wall clock ("time") is not a stat: the viewer shows what the live cockpit shows."""
    run = tmp_path / "run"
    run.mkdir()
    append(run / "metrics.jsonl", "".join(json.dumps({**json.loads(line(s)), "time": 1e9 + s}) + "\n" for s in (1, 2)))
    w = Watcher(run)
    w.poll_once()
    assert w.snapshot().step == 2 and "time" not in w.snapshot().stats and "time" not in w.history.names()
    assert w.snapshot().stats["loss"] == json.loads(line(2))["loss"]


def test_watcher_takes_the_config_from_best_before_the_first_save(tmp_path):
    write_save(tmp_path, 0, steps=300, name="best")
    append(tmp_path / "metrics.jsonl", line(1))
    w = Watcher(tmp_path)
    w.poll_once()
    snap = w.snapshot()
    assert (snap.max_steps, snap.config_name, w.save_step) == (300, "tiny", None) and "no save yet" in w.note
    assert "best weights so far (step 0)" in SavedChat(tmp_path).reload()


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
    chat = SavedChat(tmp_path)
    assert "no save yet" in chat.reload()
    with pytest.raises(BabyError, match="no save to chat with yet"):
        list(chat.stream("hello"))
    with pytest.raises(BabyError, match="send a message first"):
        chat.command("/temp 0.5")
    assert "/reload" in chat.command("/help")


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
    assert names <= {"header.json", "metrics.jsonl", "events.jsonl", "samples.jsonl", "debug.log", "tokenizer.json",
                     "best", "train.lock", "save-00000150", "save-00000200"}, names
    assert w.history.series("loss", 10_000)[0] == list(range(1, 201))
    # the viewer (a fresh Watcher, and the chat loading the newest save) leaves the run as it is
    before = fingerprint(run)
    w2 = Watcher(run)
    while w2.poll_once():
        pass
    chat = SavedChat(run)
    reply = "".join(chat.stream("The baker"))
    assert isinstance(reply, str) and any("step 200" in n for n in chat.notices)
    assert "step 200" in chat.reload() and chat.needs_load
    assert w2.snapshot().step == 200 and fingerprint(run) == before
