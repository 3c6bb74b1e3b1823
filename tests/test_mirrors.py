"""What a run keeps on disk besides its stats, and where else it goes: samples.jsonl (the viewer of a stopped run
shows the last one), the machine's readings in metrics.jsonl (and `babyllm plot --system`), the mirrors'
fan-out (a failing tracker is dropped with one event, training goes on) and a missing tracker package."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest

from babyllm.commands.cli import main as cli_main
from babyllm.config import load_config
from babyllm.errors import ConfigError
from babyllm.run import mirrors, runfiles
from babyllm.run.follower import Watcher
from babyllm.school import recorder
from babyllm.school.tutor import Tutor
from babyllm.snapshot import Sample


def records(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines()]


# --- samples.jsonl --------------------------------------------------------------------------------


def test_a_sample_record_round_trips_and_damage_is_none():
    s = Sample(40, "The kettle sang", ("·the", "·was"), ("·kettle", "·sang"))
    rec = runfiles.sample_record(s, when=5.0)
    assert rec == {"step": 40, "text": "The kettle sang", "truth": ["·kettle", "·sang"], "guess": ["·the", "·was"],
                   "time": 5.0}
    assert runfiles.parse_sample(json.loads(json.dumps(rec))) == s
    for bad in ({**rec, "step": -1}, {**rec, "truth": "x"}, {**rec, "guess": [1]}, {"rollback_to": 3}, {}):
        assert runfiles.parse_sample(bad) is None


def test_training_writes_every_sample_and_a_rollback_marks_the_discarded_ones(make_cfg, tmp_path):
    run = tmp_path / "run"
    with Tutor(make_cfg("train.save_every=0", "train.sample_every=1"), run, say=lambda m: None) as t:
        for _ in range(4):
            t.recorder.record(t.step())
            t.recorder.write_sample(t.make_sample())
        t.save()
        for _ in range(2):
            t.recorder.record(t.step())
            t.recorder.write_sample(t.make_sample())
        t._rollback()
        shown = t.make_sample()
    lines = records(run / runfiles.SAMPLES_FILE)
    assert [r.get("step", r.get("rollback_to")) for r in lines] == [1, 2, 3, 4, 5, 6, 4]
    assert lines[-1] == {"rollback_to": 4, "time": lines[-1]["time"]}  # the same marker as metrics.jsonl's
    first = runfiles.parse_sample(lines[0])
    assert first is not None and len(first.truths) == len(first.guesses) == len(shown.truths) > 0
    assert all(isinstance(tok, str) for tok in first.truths) and first.context


def test_the_viewer_of_a_stopped_run_shows_its_last_sample_of_the_live_branch(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    with open(run / runfiles.SAMPLES_FILE, "w", encoding="utf-8") as f:
        for step in (10, 20, 30):
            f.write(json.dumps(runfiles.sample_record(Sample(step, f"text {step}", ("a",), ("b",)))) + "\n")
        f.write(json.dumps(runfiles.rollback_record(25)) + "\n")  # step 30's sample was discarded
    (run / runfiles.METRICS_FILE).write_text(json.dumps({"step": 25, "loss": 3.0}) + "\n")
    w = Watcher(run)
    w.poll_once()
    snap = w.snapshot()
    assert snap.sample is None  # (30 was dropped and 20 came before the marker: nothing newer is known)
    with open(run / runfiles.SAMPLES_FILE, "a", encoding="utf-8") as f:
        f.write("{torn\n" + json.dumps(runfiles.sample_record(Sample(26, "again", ("x",), ("x",)))) + "\n")
    w.poll_once()
    assert w.snapshot().sample == Sample(26, "again", ("x",), ("x",))


def test_a_real_stopped_run_has_its_samples_in_the_viewer(make_cfg, tmp_path):
    run = tmp_path / "run"
    with Tutor(make_cfg("train.steps=12", "train.sample_every=5"), run, say=lambda m: None) as t:
        assert t.run() == "finished"
        last = t.snapshot().sample
    w = Watcher(run)
    w.poll_once()
    assert last is not None and last.step == 10 and w.snapshot().sample == last


# --- the machine's readings ---------------------------------------------------------------------------


def test_readings_go_into_metrics_jsonl_every_few_seconds(make_cfg, tmp_path):
    run = tmp_path / "run"
    with Tutor(make_cfg("train.steps=10"), run, say=lambda m: None) as t:
        now = [0.0]
        t.recorder.clock = lambda: now[0]
        for _ in range(10):
            t.recorder.record(t.step())
            now[0] += 2.0  # two seconds a step
    lines = records(run / runfiles.METRICS_FILE)
    with_readings = [r["step"] for r in lines if runfiles.SYSTEM in r]
    assert recorder.SYSTEM_EVERY_S == 5.0 and with_readings == [1, 4, 7, 10]  # at 0, 6, 12 and 18 s
    readings = runfiles.record_system(lines[0])
    assert readings["rss_gib"] > 0 and readings["cpu_cores"] >= 1 and "mem_total_gib" in readings
    assert runfiles.record_stats(lines[0]).keys().isdisjoint(readings)  # not stats: no stat pane or curve sees them


def test_plot_draws_the_readings_and_says_when_a_run_has_none(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    run = tmp_path / "run"
    run.mkdir()
    lines = [runfiles.metrics_record({"step": s, "loss": 3.0}, system={"cpu_percent": 50.0 + s, "rss_gib": 0.5})
             for s in (1, 2, 3)]
    lines.insert(2, runfiles.rollback_record(1))  # step 2's reading was discarded
    (run / runfiles.METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in lines))
    assert cli_main(["plot", str(run), "-o", str(tmp_path / "sys.svg"), "--system"]) == 0
    svg = (tmp_path / "sys.svg").read_text()
    assert "CPU (%)" in svg and "RSS (GiB)" in svg and "wrote" in capsys.readouterr().out
    from babyllm.commands.plot import read_system

    assert read_system(run)["cpu_percent"] == ([1, 3], [51.0, 53.0])
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / runfiles.METRICS_FILE).write_text(json.dumps({"step": 1, "loss": 3.0}) + "\n")
    assert cli_main(["plot", str(bare), "-o", str(tmp_path / "x.png"), "--system"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {bare}: no system readings in metrics.jsonl") and err.count("\n") == 1


# --- the mirrors ---------------------------------------------------------------------------------------


class Broken(mirrors.Mirror):
    """A tracker whose third row fails (its server went away, say)."""

    def __init__(self) -> None:
        self.rows = 0
        self.closed = False

    def add(self, stats: dict[str, float]) -> None:
        self.rows += 1
        if self.rows == 3:
            raise ConnectionError("the tracker went away")

    def close(self) -> None:
        self.closed = True


def test_a_failing_mirror_is_dropped_with_one_event_and_training_goes_on(make_cfg, tmp_path):
    run = tmp_path / "run"
    broken = Broken()
    with Tutor(make_cfg("train.steps=8"), run, say=lambda m: None) as t:
        t.recorder.writer.mirrors.attach("broken", broken)
        assert t.run() == "finished"
        errors = [e.message for e in t.snapshot().events if e.kind == "error"]
    assert broken.rows == 3 and broken.closed
    assert errors == ["broken: ConnectionError: the tracker went away; logging to broken is off for this run "
                      "(metrics.jsonl has every step)"]
    assert [r["step"] for r in records(run / runfiles.METRICS_FILE)] == list(range(1, 9))


def test_a_queued_mirror_sends_everything_in_order_before_it_closes_and_its_failure_reaches_the_fan_out():
    class Slow(mirrors.Mirror):
        def __init__(self) -> None:
            self.calls: list[object] = []

        def add(self, stats: dict[str, float]) -> None:
            time.sleep(0.01)  # a tracker's round trip (half a second for all): never the training step's
            self.calls.append(stats["step"])

        def restart(self, step: int) -> None:
            self.calls.append(("rollback_to", step))

        def close(self) -> None:
            self.calls.append("closed")

    slow, said = Slow(), []
    fan = mirrors.Mirrors(said.append)
    fan.attach("slow", mirrors.Queued(slow, "slow"))
    started = time.perf_counter()
    for step in range(1, 51):
        fan.add({"step": float(step)})
    fan.restart(20)
    assert time.perf_counter() - started < 0.25 and len(slow.calls) < 51  # the calls were queued, not made
    fan.close()
    assert slow.calls == [*map(float, range(1, 51)), ("rollback_to", 20), "closed"] and said == []

    broken, said = Broken(), []
    fan = mirrors.Mirrors(said.append)
    fan.attach("broken", mirrors.Queued(broken, "broken"))
    for step in range(1, 6):
        fan.add({"step": float(step)})
        time.sleep(0.05)  # (the worker meets the failure at the third row; the fourth call hears of it)
    assert broken.rows == 3 and broken.closed and fan.names == []
    assert said == ["broken: ConnectionError: the tracker went away; logging to broken is off for this run "
                    "(metrics.jsonl has every step)"]


def test_rows_skip_nan_and_repeat_a_validation_only_where_it_changes():
    rows = mirrors.Rows()
    assert rows.row({"step": 1, "loss": 4.0, "val_bpb": 2.0, "val_loss": math.nan}) == {
        "step": 1, "loss": 4.0, "val_bpb": 2.0}
    assert rows.row({"step": 2, "loss": 3.9, "val_bpb": 2.0}) == {"step": 2, "loss": 3.9}
    assert rows.row({"step": 3, "loss": 3.8, "val_bpb": 1.9})["val_bpb"] == 1.9
    rows.forget()  # a rollback: the next validation is logged even if it repeats
    assert rows.row({"step": 2, "loss": 3.9, "val_bpb": 1.9})["val_bpb"] == 1.9


def test_every_tracker_row_names_a_log_switch_and_an_adapter_module():
    keys = set(vars(load_config("tiny").log))
    for t in mirrors.TRACKERS:
        assert t.key in keys and getattr(load_config("tiny").log, t.key) is False  # off unless asked
        assert Path(__file__).parents[1].joinpath(*t.module.split(".")).with_suffix(".py").exists()


@pytest.mark.parametrize("tracker", ["wandb", "trackio"])
def test_a_missing_tracker_package_is_one_line_naming_the_extra(tracker, corpus, cache, tmp_path, monkeypatch,
                                                                capsys):
    real = mirrors.importlib.util.find_spec
    monkeypatch.setattr(mirrors.importlib.util, "find_spec", lambda name, *a: None if name == tracker else real(name))
    with pytest.raises(ConfigError) as e:
        mirrors.check_installed(load_config("tiny", [f"log.{tracker}=true"]).log)
    assert str(e.value) == (f"log.{tracker} = true needs the {tracker} package: pip install "
                            f"\"babyllm-tui[{tracker}]\" (with pipx: pipx inject babyllm-tui {tracker}), "
                            f"or set log.{tracker} = false")
    run = tmp_path / "run"
    code = cli_main(["train", "--config", "tiny", "--corpus", str(corpus), "--run-dir", str(run), "--steps", "2",
                     "--set", f"data.cache_dir={cache}", "--set", f"log.{tracker}=true"])
    err = capsys.readouterr().err
    assert code == 2 and err == f"error: {e.value}\n" and not run.exists()  # before anything is made
