"""Trust (issue 13): one owner per run, writes that fail cleanly, total reading, robust sampling, honest history."""

import json
import math
import os
import shutil
import subprocess
import sys
import textwrap
import threading
import time

import pytest
import torch

from babyllm.errors import BabyError
from babyllm.infer2 import Settings
from babyllm.infer2.sampling import sample_next
from babyllm.run import rundir, runfiles
from babyllm.run.runlock import RunLock, RunLocked
from babyllm.school import soul
from babyllm.school.tutor import Tutor

# --- group 3: one owner per run directory ------------------------------------------------------------


def test_a_second_owner_is_refused_naming_the_holder(tmp_path):
    with RunLock(tmp_path), pytest.raises(RunLocked, match=rf"pid {os.getpid()} on "):
            RunLock(tmp_path).acquire()
    RunLock(tmp_path).acquire().release()  # released: free again


def test_a_lock_left_by_a_killed_process_never_blocks(tmp_path):
    code = textwrap.dedent(f"""
        import os, signal
        from babyllm.run.runlock import RunLock
        RunLock({str(tmp_path)!r}).acquire()
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    subprocess.run([sys.executable, "-c", code], check=False)
    assert "pid" in (tmp_path / "train.lock").read_text()  # the stale file is still there, naming the dead pid
    RunLock(tmp_path).acquire().release()


def test_a_second_tutor_on_a_run_exits_at_once_and_leaves_the_first_ones_files(make_cfg, tmp_path):
    run = tmp_path / "run"
    first = Tutor(make_cfg("train.steps=2"), run)
    try:
        (run / "metrics.jsonl").write_text('{"step": 1}\n')
        with pytest.raises(RunLocked, match="already being trained by pid"):
            Tutor(make_cfg("train.steps=2"), run)
        assert (run / "metrics.jsonl").read_text() == '{"step": 1}\n'  # not reopened with "w"
    finally:
        first.close()
    Tutor(make_cfg("train.steps=2"), run).close()  # closed: the run is free


def test_run_dir_naming_a_file_is_one_line(make_cfg, tmp_path):
    f = tmp_path / "afile"
    f.write_text("x")
    with pytest.raises(BabyError, match="afile: not a directory"):
        Tutor(make_cfg(), f)
    assert f.read_text() == "x"


# --- group 6: sampling never crashes --------------------------------------------------------------


@pytest.mark.parametrize("logits", [
    torch.tensor([1e9, -1e9, 3e9, 0.0]),
    torch.tensor([3e38, 3e38, -3e38, 1.0]),
    torch.tensor([math.inf, 1.0, math.inf, math.nan]),
    torch.tensor([math.nan] * 4),
    torch.tensor([-math.inf] * 4),
    torch.tensor([math.nan, 2.0, -math.inf, 1.0]),
])
@pytest.mark.parametrize("settings", [
    Settings(), Settings(temperature=0.0), Settings(temperature=1e-6, top_k=2, top_p=0.5),
    Settings(temperature=50.0, top_k=0, top_p=1.0, repetition_penalty=2.0, penalty_window=8),
])
def test_sampling_returns_a_token_for_any_logits(logits, settings):
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        token = sample_next(logits.clone(), settings, [0, 1, 2], g)
        assert 0 <= token < logits.shape[0]
        if logits.isfinite().any() and not logits.isnan().any() and not logits.isinf().any():
            assert logits[token] > -1e8 or settings.temperature > 1  # the huge-logit token wins when cold


# --- group 5: reading a run is total ----------------------------------------------------------------


@pytest.fixture
def trained_run(make_cfg, tmp_path):
    """A run with rolling saves at steps 4 and 8 and a best/ (validation every 4 steps)."""
    run = tmp_path / "run"
    cfg = make_cfg("train.steps=8", "train.save_every=4", "train.eval_every=4", "train.keep=3")
    assert Tutor(cfg, run, say=lambda m: None).run() == "finished"
    return run, cfg


def _edit_meta(folder, change):
    meta = json.loads((folder / "meta.json").read_text())
    change(meta)
    (folder / "meta.json").write_text(json.dumps(meta))


@pytest.mark.parametrize("change", [
    lambda m: m.update(step="8"),
    lambda m: m.update(tokens=[1]),
    lambda m: m.update(config=["model"]),
    lambda m: m.update(files={"model.safetensors": "abc"}),
    lambda m: m.update(best_val_loss="low"),
    lambda m: m.update(python_rng={"a": 1}),
    lambda m: m["config"].update(model="tiny"),
])
def test_a_meta_with_odd_types_is_a_damaged_save_and_the_older_one_is_used(trained_run, change):
    run, cfg = trained_run
    newest = runfiles.list_saves(run)[0].path
    _edit_meta(newest, change)
    said = []
    _, _, _, step = soul.load_for_inference(run, say=said.append)
    assert step == 4 and str(newest / "meta.json") in said[0]
    tutor = Tutor(cfg, run, resume=True, say=lambda m: None)
    try:
        assert tutor.step_count == 4
    finally:
        tutor.close()


def test_deeply_nested_meta_is_a_damaged_save(trained_run):
    run, _ = trained_run
    newest = runfiles.list_saves(run)[0].path
    (newest / "meta.json").write_text("[" * 100_000 + "]" * 100_000)
    said = []
    assert soul.load_for_inference(run, say=said.append)[3] == 4
    assert "meta.json: damaged" in said[0]


def test_sizes_are_checked_before_a_weight_file_is_read(trained_run, monkeypatch):
    run, _ = trained_run
    newest = runfiles.list_saves(run)[0].path
    with open(newest / "model.safetensors", "r+b") as fh:
        fh.truncate(2 * 1024**3)  # sparse 2 GB
    asked = []
    real = os.read
    monkeypatch.setattr(os, "read", lambda fd, n: asked.append(n) or real(fd, n))
    said = []
    assert soul.load_for_inference(run, say=said.append)[3] == 4
    assert "model.safetensors: 2,147,483,648 bytes" in said[0] and "not read" in said[0]
    assert sum(asked) < 64 << 20  # the good save's few MB; never the 2 GB file


def test_chat_and_sample_use_best_when_every_rolling_save_is_damaged(trained_run):
    run, _ = trained_run
    for info in runfiles.list_saves(run):
        (info.path / "model.safetensors").write_bytes(b"junk")
    said = []
    _, _, _, step = soul.load_for_inference(run, say=said.append)
    assert step == json.loads((run / "best" / "meta.json").read_text())["step"]
    assert any("best" in m for m in said)


# --- group 4: every write can fail without a traceback ----------------------------------------------


class _FullAfter:
    """A file wrapper whose writes and flushes fail with ENOSPC once `armed` is set."""

    def __init__(self, f, armed):
        self._f, self._armed, self.name = f, armed, f.name

    def write(self, text):
        if self._armed[0]:
            self._f.write(text[: len(text) // 2])  # a torn half-line reaches the buffer
            raise OSError(28, "No space left on device")
        return self._f.write(text)

    def flush(self):
        if self._armed[0]:
            raise OSError(28, "No space left on device")
        self._f.flush()

    def fileno(self):  # (a save fsyncs the metrics log first)
        return self._f.fileno()

    def close(self):
        self._f.close()

    @property
    def closed(self):
        return self._f.closed


@pytest.mark.parametrize("which", ["metrics", "events"])
def test_a_full_disk_while_logging_raises_the_alarm_and_keeps_the_last_save(make_cfg, tmp_path, which):
    run = tmp_path / "run"
    t = Tutor(make_cfg("train.save_every=3", "train.eval_every=1000"), run, say=lambda m: None)
    armed = [False]
    t.recorder.writer._files[which] = _FullAfter(t.recorder.writer._files[which], armed)
    result = []
    th = threading.Thread(target=lambda: result.append(t.run()))
    th.start()
    try:
        deadline = time.monotonic() + 30
        while t.last_save_path is None and time.monotonic() < deadline:
            time.sleep(0.01)
        armed[0] = True
        while t.state != "alarm" and th.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        snap = t.snapshot()
        assert snap.state == "alarm", snap
        assert "No space left on device" in snap.error and "is intact" in snap.error
        assert ".jsonl" in snap.error
    finally:
        t.stop()
        th.join(30)
    assert result == ["alarm"]
    assert soul.load_for_inference(run)[3] >= 3  # the last save still reads


def test_a_torn_last_line_is_cut_before_appending(make_cfg, tmp_path):
    run = tmp_path / "run"
    cfg = make_cfg("train.steps=3")
    assert Tutor(cfg, run, say=lambda m: None).run() == "finished"
    with open(run / "metrics.jsonl", "a") as fh:
        fh.write('{"step": 4, "lo')
    cfg = make_cfg("train.steps=5")
    assert Tutor(cfg, run, resume=True, say=lambda m: None).run() == "finished"
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5]  # no rollback record: nothing was discarded


def test_a_read_only_run_dir_on_resume_is_one_line(make_cfg, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root can write into read-only folders")
    run = tmp_path / "run"
    assert Tutor(make_cfg("train.steps=2"), run, say=lambda m: None).run() == "finished"
    run.chmod(0o555)
    try:
        with pytest.raises(BabyError, match="not writable"):
            Tutor(make_cfg("train.steps=4"), run, resume=True, say=lambda m: None)
    finally:
        run.chmod(0o755)


def test_a_seed_out_of_range_is_one_line(make_cfg, tmp_path):
    with pytest.raises(BabyError, match=r"train.seed = a 20-digit number: must be a whole number 0\.\.9223372036"):
        Tutor(make_cfg("train.seed=99999999999999999999"), tmp_path / "run")  # (the config refuses it first)
    assert not (tmp_path / "run").exists()


def test_a_debug_log_that_cannot_be_written_never_stops_training(tmp_path):
    from babyllm.school.counsellor import Counsellor
    (tmp_path / "debug.log").mkdir()  # opening it for appending fails
    c = Counsellor(enabled=True, log_path=tmp_path / "debug.log")
    c.log("hello")
    c.close()


# --- group 8: history stays honest ------------------------------------------------------------------


def test_a_resume_rebuilds_history_and_events_from_the_live_branch(make_cfg, tmp_path):
    run = tmp_path / "run"
    cfg = make_cfg("train.steps=6", "train.save_every=4", "train.eval_every=100", "train.keep=3")
    t = Tutor(cfg, run, say=lambda m: None)
    assert t.run() == "finished"  # saves at 4 and 6
    shutil.rmtree(run / "save-00000006")  # as if killed before the last save: steps 5-6 are discarded
    t2 = Tutor(make_cfg("train.steps=8", "train.eval_every=100"), run, resume=True, say=lambda m: None)
    try:
        steps, _ = t2.history.series("loss")
        assert steps == [1, 2, 3, 4]
        kinds = [e.kind for e in t2.snapshot().events]
        assert "save" in kinds and t2.snapshot().event_count >= len(kinds)
        assert t2.run() == "finished"
    finally:
        t2.close()
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert {k: v for k, v in rows[6].items() if k != "time"} == {"rollback_to": 4}
    assert all(isinstance(r["time"], float) for r in rows)  # wall clock on every row
    t3 = Tutor(make_cfg("train.steps=8"), run, resume=True, say=lambda m: None)
    try:
        assert t3.history.series("loss")[0] == list(range(1, 9))  # the discarded 5-6 are cut, 5-8 live
    finally:
        t3.close()


def test_best_val_names_its_step_and_a_worse_branch_never_replaces_best(make_cfg, tmp_path):
    run = tmp_path / "run"
    t = Tutor(make_cfg("train.steps=6", "train.eval_every=3", "train.save_every=3"), run, say=lambda m: None)
    assert t.run() == "finished"
    best = json.loads((run / "best" / "meta.json").read_text())
    assert best["best_val_step"] == best["step"] == t.best_val_step and best["step"] in (3, 6)
    _edit_meta(run / "best", lambda m: m.update(val_loss=0.001))  # a far better best from another branch
    t2 = Tutor(make_cfg("train.steps=9", "train.eval_every=3"), run, resume=True, say=lambda m: None)
    t2.progress.best_val = math.inf  # this branch thinks anything is a new best
    assert t2.run() == "finished"
    assert json.loads((run / "best" / "meta.json").read_text())["val_loss"] == 0.001


@pytest.mark.parametrize("name", ["best", "checkpoint-00000004"])
def test_a_crash_while_replacing_a_save_never_loses_it(trained_run, name):
    run, cfg = trained_run
    folder = run / name
    if not folder.exists():
        soul.write_folder(folder, {"x": b"1"}, {"step": 4})
    aside = run / f".{name}.old-12345"
    os.replace(folder, aside)  # killed between moving the old one aside and renaming the new one in
    (run / f".{name}.tmp-12345").mkdir()  # and the half-written new one
    soul.clean_temp(run)
    assert folder.is_dir() and not aside.exists() and not (run / f".{name}.tmp-12345").exists()


def test_history_rewind_keeps_only_the_live_branch():
    from babyllm.snapshot import History
    h = History()
    for s in range(1, 11):
        h.add(s, {"loss": float(s)})
    h.rewind(6)
    h.add(6, {"loss": 0.5})
    assert h.series("loss")[0] == [1, 2, 3, 4, 5, 6]
    assert h.rows(2) == [{"loss": 5.0}, {"loss": 0.5}]


def test_best_val_at_step_is_the_validation_step_even_when_thinned():
    from babyllm.snapshot import History
    h = History()
    val = math.nan
    for s in range(1, 3001):
        if s % 500 == 0:
            val = 5.0 - s / 1000
        h.add(s, {"loss": 1.0, "val_loss": val})
    steps, values = h.series("val_loss", 100)
    assert steps[1:] == [500, 1000, 1500, 2000, 2500, 3000]
    assert min(zip(values[1:], steps[1:], strict=True)) == (2.0, 3000)


def test_the_cockpit_primes_its_bands_from_a_resumed_history():
    from types import SimpleNamespace

    from babyllm.snapshot import History
    from tui.app import CockpitApp
    h = History()
    for s in range(1, 101):
        h.add(s, {"step": float(s), "loss": 5.0 - s / 100})
    app = CockpitApp(tutor=SimpleNamespace(history=h, snapshot=lambda: None), handle_signals=False)
    app._prime_from_history()
    assert app.calligraphist.records("loss") == (pytest.approx(4.01), pytest.approx(4.99))


def test_the_viewer_cuts_a_discarded_branch_at_a_rollback_record(tmp_path):
    from babyllm.run.follower import Watcher
    rows = [{"step": s, "loss": 1.0} for s in range(1, 7)] + [{"rollback_to": 4, "time": 1.0}]
    rows += [{"step": s, "loss": 2.0} for s in (5,)]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 6, "lo')
    w = Watcher(tmp_path)
    w.poll_once()
    assert w.history.series("loss")[0] == [1, 2, 3, 4, 5]
    assert w.history.series("loss")[1][-1] == 2.0


# --- a real full disk (a 3 MB tmpfs; skipped where mounting is not allowed) -------------------------


@pytest.fixture
def tiny_disk(tmp_path):
    d = tmp_path / "disk"
    d.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(d)], capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False)


def test_a_full_disk_never_gives_a_traceback_and_keeps_the_last_save(make_cfg, tiny_disk):
    run = tiny_disk / "run"
    cfg = make_cfg("train.steps=100000", "train.save_every=5", "train.eval_every=50")
    t = Tutor(cfg, run, say=lambda m: None)
    (tiny_disk / "filler").write_bytes(b"\0" * (2 << 20))  # leave under 1 MB: full within seconds
    result = []
    th = threading.Thread(target=lambda: result.append(t.run()))
    th.start()
    deadline = time.monotonic() + 60
    while t.state != "alarm" and th.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    t.stop()
    th.join(30)
    assert result == ["alarm"], t.snapshot().error
    assert "is intact" in t.snapshot().error
    assert soul.load_for_inference(run)[3] == t.last_saved_step  # the last save reads back
    for line in (run / "metrics.jsonl").read_text().splitlines()[:-1]:
        json.loads(line)  # only the last line may be torn
    try:  # resuming while still full: it works, or says in one line why not
        Tutor(make_cfg("train.steps=100000"), run, resume=True, say=lambda m: None).close()
    except BabyError as e:
        assert "\n" not in str(e)


def test_choosing_a_run_that_is_being_trained_names_the_holder_first(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with RunLock(run):
        for resume in (True, False):  # before "no save to resume from" or "already has a save"
            with pytest.raises(RunLocked, match="already being trained by pid"):
                rundir.resolve_run_dir(None, run, resume, "tiny")
    assert rundir.resolve_run_dir(None, run, False, "tiny") == run
