"""The run protocol: the header and records (writer -> reader), the one run-directory validator, a follower
on a run from before headers, the Tutor's chat session, and that only the Tutor touches its model."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from babyllm.board import Board
from babyllm.errors import CheckpointError
from babyllm.run import runfiles
from babyllm.run.follower import Watcher
from babyllm.run.runfiles import Header, check_run_dir, read_header, write_header
from babyllm.snapshot import Event, History

sys.path.insert(0, str(Path(__file__).parent))
from runhelpers import append, line, write_save  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


# --- the header and the records -------------------------------------------------------------------


def test_header_round_trip(tmp_path):
    header = Header.now("tiny", "cuda:0", "bf16", "2.13.0", resume=True, world_size=2)
    write_header(tmp_path, header)
    assert read_header(tmp_path) == header
    assert header.pid > 0 and header.started > 0 and header.babyllm_version
    assert not [p for p in tmp_path.iterdir() if p.name != runfiles.HEADER_FILE]  # no temp file left behind


def test_header_reader_is_total(tmp_path):
    assert read_header(tmp_path) is None  # a run from before headers
    (tmp_path / runfiles.HEADER_FILE).write_text("{not json")
    assert read_header(tmp_path) is None
    (tmp_path / runfiles.HEADER_FILE).write_text(json.dumps({"config_name": "cpu", "device": 3, "pid": True,
                                                             "started": 5, "later": "ignored"}))
    h = read_header(tmp_path)
    assert (h.config_name, h.device, h.pid, h.started) == ("cpu", runfiles.UNKNOWN, 0, 5.0)


def test_metrics_and_event_records_round_trip():
    stats = {"step": 3.0, "loss": math.inf, "lr": 0.5}
    rec = json.loads(json.dumps(runfiles.metrics_record(stats, when=7.0)))
    assert rec == {"step": 3.0, "loss": None, "lr": 0.5, "time": 7.0}
    values = runfiles.metrics_values(rec)
    assert runfiles.record_step(values) == 3 and math.isnan(values["loss"]) and values["lr"] == 0.5
    ev = Event(4, "save", "saved step 4", 9.0)
    assert runfiles.parse_event(json.loads(json.dumps(runfiles.event_record(ev)))) == ev
    assert runfiles.parse_event({"step": "x"}) is None
    assert runfiles.rollback_step(runfiles.rollback_record(2)) == 2 and runfiles.rollback_step(rec) is None


def test_replay_history_keeps_the_live_branch(tmp_path):
    rows = [{"step": s, "loss": float(s)} for s in range(1, 6)] + [runfiles.rollback_record(3)]
    rows += [{"step": 4, "loss": 40.0}, {"step": 5, "loss": 50.0}, {"step": 6, "loss": 60.0}]
    (tmp_path / runfiles.METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / runfiles.EVENTS_FILE).write_text(json.dumps(runfiles.event_record(Event(2, "val", "v", 1.0))) + "\n")
    h = History()
    beyond, events = runfiles.replay_history(tmp_path, h, step=5)
    assert beyond and h.series("loss") == ([1, 2, 3, 4, 5], [1.0, 2.0, 3.0, 40.0, 50.0])
    assert events == [Event(2, "val", "v", 1.0)]


def test_one_replay_reads_the_log_in_one_batch_or_many():
    """Replay: a rollback marker and a step logged again keep the live branch, whether the records come at
    once (a resume, `runs`, `plot`) or as appended (the follower, the overlay); damage is counted, not fatal."""
    rows = [runfiles.metrics_record({"step": s, "loss": float(s)}, when=1.0) for s in range(1, 6)]
    rows += [runfiles.rollback_record(3), {"step": "x"}, {"loss": 1.0}]
    rows += [{"step": 4, "loss": 40.0}, {"step": 5, "loss": 50.0}, {"step": 3, "loss": 30.0}, {"step": 4, "loss": 4.5}]
    whole, batched = History(), History()
    fed = runfiles.Replay(whole).feed(rows)
    assert fed.added == 9 and fed.damaged == 2 and fed.latest == {"step": 4.0, "loss": 4.5}
    replay = runfiles.Replay(batched)
    for k in range(0, len(rows), 3):
        replay.feed(rows[k:k + 3])
    assert whole.points() == batched.points() and replay.last_step == 4
    assert whole.series("loss") == ([1, 2, 3, 4], [1.0, 2.0, 30.0, 4.5]) and "time" not in whole.names()
    kept = runfiles.Replay(History(), upto=3, keep=frozenset({"loss"}))
    kept.feed(rows[:5])
    assert kept.beyond and kept.history.names() == ["loss"] and kept.history.series("loss")[0] == [1, 2, 3]
    kept.feed(rows[5:6])  # the rollback to 3 discards the steps beyond
    assert not kept.beyond
    replay.restart()
    assert batched.names() == [] and replay.last_step is None


def test_board_throttles_and_survives_a_broken_reader():
    errors = []

    def boom(snap):
        raise RuntimeError("reader broke")

    board = Board(boom, every=60.0, on_error=errors.append)
    fields = lambda: dict(step=1, tokens=0, state="running", stats={})  # noqa: E731
    assert board.offer(fields, force=True) and not board.offer(fields) and board.offer(fields, force=True)
    board.add(Event(1, "info", "hi", 0.0))
    assert board.build(**fields()).event_count == 1 and len(errors) == 2


# --- the one validator ----------------------------------------------------------------------------


def test_one_validator_one_set_of_messages(tmp_path):
    (tmp_path / "notes.txt").write_text("hi")
    for use in ("train", "resume", "read", "watch"):
        with pytest.raises(CheckpointError, match=r"notes.txt: not a directory \(--x wants a run directory"):
            check_run_dir(tmp_path / "notes.txt", use, "--x")
    assert check_run_dir(tmp_path / "new", "train") == tmp_path / "new"  # made later, by the Tutor
    assert check_run_dir(tmp_path / "new", "resume") == tmp_path / "new"  # rundir.check_start: "no save to resume"
    with pytest.raises(CheckpointError, match=r"nope: no such run directory \(train one first"):
        check_run_dir(tmp_path / "nope", "read", runs_root=tmp_path / "none")
    write_save(tmp_path / "runs" / "alpha", 5)
    with pytest.raises(CheckpointError, match=r"no such run directory \(runs in .*runs/: alpha\)"):
        check_run_dir(tmp_path / "runs" / "beta", "read", runs_root=tmp_path / "runs")
    with pytest.raises(CheckpointError, match=r"no such run directory \(start the training first"):
        check_run_dir(tmp_path / "nope", "watch")
    save = tmp_path / "runs" / "alpha" / "save-00000005"
    assert check_run_dir(save, "read") == save  # chat and sample take one save folder
    for use in ("train", "resume", "watch"):
        with pytest.raises(CheckpointError, match=f"is one save folder; name its run directory: --w {save.parent}"):
            check_run_dir(save, use, "--w")
    with pytest.raises(CheckpointError, match="not a babyllm run"):
        check_run_dir(tmp_path, "watch")
    (tmp_path / "empty").mkdir()
    assert check_run_dir(tmp_path / "empty", "watch") == tmp_path / "empty"  # waited on
    assert check_run_dir(tmp_path / "runs" / "alpha", "watch") == tmp_path / "runs" / "alpha"


def test_soul_chat_and_watch_use_the_one_validator():
    for path in ("babyllm/run/rundir.py", "babyllm/commands/chat.py", "tui/watch.py"):
        assert "check_run_dir(" in (ROOT / path).read_text(), path
    # the messages live in one place
    for path in ("babyllm/run/rundir.py", "babyllm/school/soul.py", "babyllm/commands/chat.py", "tui/watch.py",
                 "tui/cli.py"):
        text = (ROOT / path).read_text()
        assert "no such run directory" not in text and "not a directory" not in text, path


# --- a run from before headers ----------------------------------------------------------------------


def test_follower_on_an_old_run_dir_without_a_header(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    append(run / runfiles.METRICS_FILE, "".join(line(s) for s in range(1, 4)))
    append(run / runfiles.DEBUG_LOG, "2026-01-01 00:00:00.000 [MainThread] tutor start: config tiny, device cuda:0\n")
    w = Watcher(run)
    w.poll_once()
    snap = w.snapshot()
    assert snap.step == 3 and (snap.config_name, snap.device) == ("", "")  # the log's wording is not parsed
    assert w.header is None
    write_save(run, 3, steps=10)  # the saved config is the best guess for such a run
    w.poll_once()
    snap = w.snapshot()
    assert snap.config_name == "tiny" and snap.device == "auto" and snap.max_steps == 10
    write_header(run, Header(config_name="cpu", device="cuda:1"))  # a new trainer resumed it: the header wins
    w.poll_once()
    assert (w.snapshot().config_name, w.snapshot().device) == ("cpu", "cuda:1")


# --- the Tutor's chat session -----------------------------------------------------------------------


def test_chat_session_streams_while_training_is_paused_and_running(make_cfg, tmp_path):
    from babyllm.school.tutor import Tutor

    run = tmp_path / "run"
    t = Tutor(make_cfg("train.steps=0", "chat.max_tokens=6"), run, say=lambda m: None, publish_every=0.0)
    header = read_header(run)
    assert (header.config_name, header.device, header.dtype) == ("tiny", "cpu", t.snapshot().dtype)
    snap = t.snapshot()
    assert snap.params > 0 and snap.corpus is not None and snap.corpus.train_tokens > 0
    chat = t.chat_session()
    th = threading.Thread(target=t.run)
    th.start()
    try:
        deadline = time.monotonic() + 60
        while t.snapshot().step < 3:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        t.pause()
        while t.snapshot().state != "paused":
            assert time.monotonic() < deadline
            time.sleep(0.01)
        paused_at = t.snapshot().step
        assert list(chat.stream("The baker")) and t.snapshot().step == paused_at
        assert "temperature" in chat.command("/temp 0.5")
        t.resume()
        while t.snapshot().step <= paused_at:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        assert list(chat.stream(" and then")) and t.snapshot().state == "running"
    finally:
        t.stop()
        th.join(60)
    snap = t.snapshot()
    assert snap.state == "stopped" and snap.last_save_step == snap.step and snap.last_save_path


def test_the_protocol_modules_import_neither_torch_nor_textual():
    code = ("import sys, babyllm.run.runfiles, babyllm.board, babyllm.run.follower, babyllm.control, babyllm.events; "
            "bad = {'torch', 'textual'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60)


def test_the_tutor_the_follower_and_the_fake_offer_every_control_method():
    from babyllm.school.tutor import Tutor
    from babyllm.snapshot import ChatSession, TutorControl
    from tui.fake import FakeChat, FakeTutor

    methods = [n for n in vars(TutorControl) if not n.startswith("_") and callable(vars(TutorControl)[n])]
    assert {"snapshot", "chat_session", "run", "pause", "stop"} <= set(methods)
    for cls in (Tutor, Watcher, FakeTutor):
        assert all(callable(getattr(cls, n, None)) for n in methods), cls
    chat = FakeTutor().chat_session()
    assert isinstance(chat, FakeChat) and "".join(chat.stream("hi")) and chat.notices == []
    assert {"stream", "command"} <= {n for n in vars(ChatSession) if not n.startswith("_")}


def test_snapshots_carry_what_headless_prints_and_a_resume_rewrites_the_header(make_cfg, tmp_path):
    from babyllm.school.tutor import Tutor

    run = tmp_path / "run"
    t = Tutor(make_cfg("train.steps=25"), run, say=lambda m: None, publish_every=0.0)
    assert t.run() == "finished"
    snap = t.snapshot()
    assert (snap.step, snap.last_save_step, snap.last_save_path) == (25, 25, str(run / "save-00000025"))
    # best at the last step: a run that reaches its limit validates there
    assert math.isfinite(snap.best_val) and snap.best_val_step == 25 and snap.last_save_error is None
    assert snap.dtype == "fp32" and snap.params == sum(p.numel() for p in t.model.parameters())
    assert read_header(run).resume is False
    assert Tutor(make_cfg("train.steps=30"), run, resume=True, say=lambda m: None).run() == "finished"
    assert read_header(run).resume is True


# --- only the Tutor touches its model ----------------------------------------------------------------


def test_nothing_outside_the_tutor_touches_its_model_librarian_or_weights_lock():
    private = "model|librarian|weights_lock|counsellor|run_dir|last_saved_step"
    pattern = re.compile(rf"\b\w*tutor\w*\s*\.\s*({private})\b"
                         rf"|getattr\(\s*\w*tutor\w*\s*,\s*[\"']({private})[\"']")
    offenders = []
    for path in sorted([*ROOT.glob("babyllm/**/*.py"), *ROOT.glob("tui/**/*.py")]):
        name = str(path.relative_to(ROOT))
        # bench/ measures the training step and generation on the Tutor's own model (a harness, not a viewer)
        if name.startswith(("babyllm/tutor", "babyllm/commands/bench/")):
            continue
        for n, text in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if pattern.search(text):
                offenders.append(f"{name}:{n}: {text.strip()}")
    assert not offenders, "\n".join(offenders)
