"""`babyllm runs --compare`: runs side by side from their files, and the config keys that differ."""

from __future__ import annotations

import json
import math

from runhelpers import append, write_save

from babyllm.commands.cli import main
from babyllm.commands.compare import summarise
from tui.fake import fake_stats


def line(step, when, **extra):
    return json.dumps({**fake_stats(step), "step": step, "tokens": 64 * step, "time": when, **extra}) + "\n"


def make_run(root, name, steps, lr=None, val_every=10):
    d = root / name
    d.mkdir(parents=True)
    for s in range(1, steps + 1):
        extra = {} if s % val_every == 0 else {"val_loss": math.nan, "val_bpb": math.nan}
        append(d / "metrics.jsonl", line(s, 1000.0 + s, **extra))
    save = write_save(d, steps, steps=steps)
    meta = json.loads((save / "meta.json").read_text())
    meta["train_seconds"] = steps * 0.5
    if lr is not None:
        meta["config"]["train"]["lr"] = lr
    (save / "meta.json").write_text(json.dumps(meta))
    return d


def test_a_summary_reads_the_live_branch_and_the_newest_save(tmp_path):
    d = make_run(tmp_path, "a", 30)
    append(d / "metrics.jsonl", json.dumps({"rollback_to": 20}) + "\n")  # steps 21..30 discarded
    s = summarise(d)
    assert (s.step, s.tokens) == (20, 20 * 64)
    vals = {st: fake_stats(st)["val_loss"] for st in (10, 20)}
    assert s.best_val == min(vals.values()) and s.best_val_step == min(vals, key=vals.get)
    assert s.best_bpb == fake_stats(s.best_val_step)["val_bpb"]
    assert s.train_seconds == 15.0 and s.wall_seconds == 29.0
    assert s.mfu == fake_stats(1)["mfu"]  # the median of the logged mfu
    assert s.config["train.steps"] == 30


def test_compare_prints_the_figures_and_only_the_keys_that_differ(tmp_path, capsys):
    make_run(tmp_path, "slow", 40, lr=1e-3)
    make_run(tmp_path, "fast", 20, lr=3e-3)
    assert main(["runs", "--root", str(tmp_path), "--compare", "slow", "fast"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["slow", "fast"]
    rows = {line.split("  ")[0].strip(): line.split() for line in out[1:]}
    assert rows["steps"][-2:] == ["40", "20"]
    assert rows["MFU (median)"][-2:] == ["50.0%", "50.0%"]
    assert "config that differs:" in out
    assert rows["train.lr"][-2:] == ["0.001", "0.003"] and rows["train.steps"][-2:] == ["40", "20"]
    assert "model.neurons" not in rows  # the same in both: not shown
    assert main(["runs", "--root", str(tmp_path), "--compare", "slow", "fast", "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    assert got["differs"] == {"train.lr": [1e-3, 3e-3], "train.steps": [40, 20]}
    assert [r["name"] for r in got["runs"]] == ["slow", "fast"]


def test_compare_mistakes_are_one_line(tmp_path, capsys):
    make_run(tmp_path, "one", 5)
    for args in (["one"], ["one", "missing"]):
        assert main(["runs", "--root", str(tmp_path), "--compare", *args]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and err.startswith("error: ")


def test_a_run_without_a_save_compares_without_a_config(tmp_path, capsys):
    make_run(tmp_path, "saved", 10)
    bare = tmp_path / "bare"
    bare.mkdir()
    append(bare / "metrics.jsonl", line(1, 5.0))
    assert main(["runs", "--root", str(tmp_path), "--compare", "saved", "bare"]) == 0
    out = capsys.readouterr().out
    assert "training time" in out and "no config to compare" in out
    assert "model.neurons" not in out  # one config alone differs from nothing
