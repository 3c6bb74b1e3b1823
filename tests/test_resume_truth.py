"""Saves that lie or go missing (issue 25, item 15): a saved step is logged before its save exists; a meta.json
whose numbers are out of range is damage; --resume skips a newest save that does not fit (edited, or another
run's), naming it; a resume shows the run's old events as history, not as news."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from babyllm.commands.cli import main as cli_main
from babyllm.run import runfiles
from babyllm.school import soul
from babyllm.school.tutor import Tutor


def logged_steps(run) -> list[int]:
    return [int(r["step"]) for r in runfiles.read_jsonl(run / runfiles.METRICS_FILE) if "step" in r]


def test_every_saved_step_is_on_disk_in_the_metrics_log_before_its_save_is_written(make_cfg, tmp_path, monkeypatch):
    run = tmp_path / "run"
    seen: list[tuple[int, int]] = []
    real = soul.save

    def save(run_dir, kind, step, *args, **kwargs):
        if kind != runfiles.BEST:  # what another process (or a resume after kill -9) would find on disk now
            with open(run / runfiles.METRICS_FILE, "rb") as fh:
                lines = [json.loads(x) for x in fh.read().splitlines()]
            seen.append((step, max((int(r["step"]) for r in lines if "step" in r), default=-1)))
        return real(run_dir, kind, step, *args, **kwargs)

    monkeypatch.setattr(soul, "save", save)
    assert Tutor(make_cfg("train.steps=6", "train.save_every=1"), run, say=lambda m: None).run() == "finished"
    assert [step for step, _ in seen] == [1, 2, 3, 4, 5, 6]
    assert all(logged >= step for step, logged in seen), seen


def test_a_run_killed_right_after_a_save_has_logged_that_step(corpus, cache, tmp_path):
    """kill -9 while saving every step: the newest save's step is always in metrics.jsonl."""
    for attempt in range(3):
        run = tmp_path / f"run{attempt}"
        p = subprocess.Popen([sys.executable, "-m", "babyllm", "train", "--config", "tiny", "--corpus", str(corpus),
                              "--set", f"data.cache_dir={cache}", "--set", "train.save_every=1", "--set",
                              "train.keep=2", "--run-dir", str(run)], stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while not [s for s in runfiles.list_saves(run) if s.step >= 5 + attempt] and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(p.pid, signal.SIGKILL)
        p.wait()
        newest = runfiles.list_saves(run)[0].step
        assert newest in logged_steps(run), (newest, logged_steps(run)[-5:])


@pytest.fixture
def two_saves(make_cfg, tmp_path):
    run = tmp_path / "run"
    cfg = make_cfg("train.steps=8", "train.save_every=4", "train.eval_every=4", "train.keep=3")
    assert Tutor(cfg, run, say=lambda m: None).run() == "finished"
    return run


def edit_meta(folder, change) -> None:
    text = (folder / "meta.json").read_text()
    (folder / "meta.json").write_text(change(text) if callable(change) else change)


@pytest.mark.parametrize("key, value", [
    ("best_val_loss", "-Infinity"), ("best_val_loss", "1e999"), ("best_val_loss", "-1.5"), ("val_loss", "NaN"),
    ("step", str(10**30)), ("step", "-1"), ("tokens", str(2**70)), ("train_seconds", "-5"), ("world_size", "0"),
    ("best_val_step", "99"), ("val_bpb", "Infinity"),
])
def test_a_meta_number_out_of_range_is_damage_and_resume_uses_the_older_save(two_saves, make_cfg, key, value):
    newest = runfiles.list_saves(two_saves)[0].path
    meta = json.loads((newest / "meta.json").read_text())
    meta[key] = "PLACEHOLDER"
    edit_meta(newest, json.dumps(meta).replace('"PLACEHOLDER"', value))
    said = []
    tutor = Tutor(make_cfg("train.steps=8"), two_saves, resume=True, say=said.append)
    tutor.close()
    assert tutor.step_count == 4 and any(str(newest / "meta.json") in m and "damaged" in m for m in said), said
    assert tutor.best_val < float("inf") and tutor.best_val > 0  # best tracking alive: a real loss


def test_resume_skips_a_newest_save_whose_config_was_edited_naming_it(two_saves, capsys):
    newest = runfiles.list_saves(two_saves)[0].path
    edit_meta(newest, lambda text: text.replace('"neurons": 64', '"neurons": 32'))
    assert cli_main(["train", "--resume", "--run-dir", str(two_saves), "--steps", "10"]) == 0
    captured = capsys.readouterr()
    assert "resumed from save-00000004 (step 4)" in captured.out and "finished at step 10" in captured.out
    assert str(newest) in captured.err and "does not fit the saved config" in captured.err


def test_resume_skips_a_save_folder_linked_from_another_run_naming_it(make_cfg, tmp_path):
    mine, other = tmp_path / "mine", tmp_path / "other"
    assert Tutor(make_cfg("train.steps=4", "train.save_every=4"), mine, say=lambda m: None).run() == "finished"
    assert Tutor(make_cfg("train.steps=12", "train.save_every=12", "train.seed=7"), other,
                 say=lambda m: None).run() == "finished"
    (mine / "save-00000012").symlink_to(other / "save-00000012")
    said = []
    tutor = Tutor(make_cfg("train.steps=12"), mine, resume=True, say=said.append)
    tutor.close()
    assert tutor.step_count == 4
    assert any("save-00000012" in m and "a link out of the run directory" in m for m in said), said
    assert any("using the older save" in m and "save-00000004" in m for m in said), said


def test_a_resume_shows_the_runs_old_events_as_history_not_news(train_args, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli_main(train_args("--steps", "12", "--run-dir", str(run), "--set", "train.save_every=4")) == 0
    first = capsys.readouterr().out
    assert "[save] step 4:" in first
    assert cli_main(["train", "--resume", "--run-dir", str(run), "--steps", "14"]) == 0
    second = capsys.readouterr().out
    assert "[info] step 12: resumed from save-00000012 (step 12)" in second
    assert "[save] step 4:" not in second and "[save] step 8:" not in second  # not news any more
    tutor = Tutor(soul.saved_config(run), run, resume=True, say=lambda m: None)
    try:
        snap = tutor.snapshot()  # what the cockpit and a viewer get: which of the events are the run's history
        news = snap.events[len(snap.events) - (snap.event_count - snap.history_events):]
        assert snap.history_events > 0 and [e.message for e in news] == ["resumed from save-00000014 (step 14)"]
    finally:
        tutor.close()
