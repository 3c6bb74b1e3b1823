"""`babyllm train`: headless runs, resume, user mistakes, the alarm exit, and signals (subprocess)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import babyllm.school.stepper as stepper_mod
from babyllm.commands.cli import build_parser
from babyllm.commands.cli import main as cli_main
from babyllm.commands.runsetup import prepare_run
from babyllm.run.runfiles import list_saves
from babyllm.school.soul import load_for_inference


def test_train_prints_header_events_summary_and_saves(train_args, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli_main(train_args("--steps", "30", "--run-dir", str(run))) == 0
    out = capsys.readouterr().out
    assert f"run dir {run} · config tiny" in out
    assert "device cpu" in out and "until step 30" in out
    assert "[val] step 20: val loss" in out
    assert "finished at step 30" in out and f"saved step 30 to {run / 'save-00000030'}" in out
    assert "\x1b[" not in out  # not a TTY: plain text
    assert load_for_inference(run)[3] == 30
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 30


def test_resume_continues_with_the_saved_config(train_args, corpus, cache, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli_main(train_args("--steps", "12", "--run-dir", str(run), "--set", "train.eval_every=5")) == 0
    capsys.readouterr()
    # No --config: the run's own config (tiny, eval_every=5) is used, with --steps applied.
    args = build_parser().parse_args(["train", "--resume", "--run-dir", str(run), "--steps", "20"])
    cfg, run_dir = prepare_run(args)
    assert run_dir == run and cfg.name == "tiny" and cfg.train.eval_every == 5 and cfg.train.steps == 20
    assert cli_main(["train", "--resume", "--run-dir", str(run), "--steps", "20"]) == 0
    out = capsys.readouterr().out
    assert "resumed from save-00000012 (step 12)" in out and "finished at step 20" in out
    steps = [json.loads(x)["step"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(1, 21))


def test_user_mistakes_are_one_line(train_args, tmp_path, capsys):
    run = tmp_path / "run"
    assert cli_main(train_args("--steps", "3", "--run-dir", str(run))) == 0
    capsys.readouterr()
    assert cli_main(train_args("--steps", "6", "--run-dir", str(run))) == 2
    err = capsys.readouterr().err
    assert err.strip() == (f"error: {run} already has a save at step 3; pass --resume to continue it, "
                           "or choose another --run")
    assert cli_main(train_args("--steps", "6", "--run-dir", str(run), "--resume", "--set", "model.neurons=32")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "model.neurons is 64 in the checkpoint but 32 now" in err
    assert cli_main(train_args("--run-dir", str(tmp_path / "none"), "--resume")) == 2
    assert "no save to resume from" in capsys.readouterr().err
    assert load_for_inference(run)[3] == 3  # nothing saved was lost


def test_alarm_saves_last_good_state_and_exits_nonzero(train_args, tmp_path, capsys, monkeypatch):
    real = stepper_mod.clip_grad_norm_
    calls = []

    def clip(params, max_norm):
        calls.append(1)
        return torch.tensor(float("nan")) if len(calls) == 15 else real(params, max_norm)

    monkeypatch.setattr(stepper_mod, "clip_grad_norm_", clip)
    run = tmp_path / "run"
    assert cli_main(train_args("--run-dir", str(run))) == 1
    out = capsys.readouterr().out
    assert "alarm: step 15: grad_norm is nan" in out
    assert "saved step 14" in out
    assert [s.step for s in list_saves(run)] == [14]
    assert load_for_inference(run)[3] == 14


@pytest.mark.slow
def test_sigterm_saves_and_exits_zero(corpus, cache, tmp_path):
    run = tmp_path / "run"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "babyllm", "train", "--config", "tiny", "--steps", "1000000", "--run-dir", str(run),
           "--corpus", str(corpus), "--set", f"data.cache_dir={cache}"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        metrics = run / "metrics.jsonl"
        end = time.monotonic() + 15
        while time.monotonic() < end and (not metrics.exists() or metrics.stat().st_size < 5000):
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "stopping: saving" in out and "stopped at step" in out
    _, _, _, step = load_for_inference(run)
    assert step > 0 and f"saved step {step} to" in out


def bad_rows_corpus(folder: Path, good: int = 300) -> Path:
    """A JSONL corpus with two bad rows (one not JSON, one without its text field) among good ones."""
    rows = [json.dumps({"text": f"a line of made-up text, number {i}, with a few words in it"}) for i in range(good)]
    rows.insert(5, "{not json")
    rows.insert(9, json.dumps({"nope": 1}))
    folder.mkdir()
    (folder / "rows.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


def test_each_warning_and_event_is_printed_once_and_a_resume_reprints_nothing(cache, tmp_path, capsys):
    """A bad row is said while the Tutor is built (stderr) and is an event of the run: it was printed twice.
    A resume printed the earlier session's events again; what it resumed from is said once, as its event."""
    corpus = bad_rows_corpus(tmp_path / "corpus")
    run = tmp_path / "run"
    base = ["train", "--config", "tiny", "--corpus", str(corpus), "--set", f"data.cache_dir={tmp_path / 'c'}",
            "--run-dir", str(run)]
    assert cli_main([*base, "--steps", "3"]) == 0
    got = capsys.readouterr()
    both = got.out + got.err
    for row in ("line 6: not valid JSON", "line 10: no 'text' value"):
        assert both.count(row) == 1, both
    assert both.count("[val] step 0") == 1
    assert cli_main([*base, "--steps", "5", "--resume"]) == 0
    out = capsys.readouterr().out
    assert out.count("resumed from save-00000003 (step 3)") == 1 and "[info] step 3: resumed from" in out
    assert "[save] step 3" not in out and "[val] step 0" not in out and "[save] step 5" in out
