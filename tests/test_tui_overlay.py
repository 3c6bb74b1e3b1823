"""Compare runs in the loss pane: the run list, reading (and following) other runs' curves, thinning, and
the cockpit end to end: pick a run, see it overlaid, x by step or tokens, log scale, a rollback."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import pytest
from runhelpers import append, pilot_wait
from test_tui_real import write_corpus

from babyllm.calligraphist import format_value
from babyllm.config import load_config
from babyllm.run import runfiles
from babyllm.run.curves import read_curves, tokens_at
from babyllm.run.overlay import Overlay, ReferenceRun, choices, runs_root
from babyllm.run.runfiles import Header, write_header
from babyllm.run.writer import RunWriter
from babyllm.school.tutor import Tutor
from babyllm.snapshot import thin
from tui.app import CockpitApp
from tui.fake import fake_stats
from tui.screens import PickList, RunPicker
from tui.widgets import loss as loss_module


def write_run(root: Path, name: str, steps: int, tokens_per_step: int = 128, start: int = 1,
              mode: str = "w") -> Path:
    """A finished run's metrics.jsonl, through the Tutor's own writer (a validation every 10 steps)."""
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    write_header(d, Header(config_name="tiny", started=time.time()))
    writer = RunWriter(d, failed=lambda f, e: pytest.fail(f"{f}: {e}"))
    writer.open(mode, ("metrics",))
    for s in range(start, start + steps):
        val = 3.0 - s / 100 if s % 10 == 0 else math.nan
        stats = {**fake_stats(s), "step": s, "tokens": s * tokens_per_step, "val_loss": val, "val_bpb": val / 2}
        writer.metrics(stats)  # type: ignore[arg-type]  # (a whole step, as the Tutor logs it)
    writer.close()
    return d


# --- the run list ---------------------------------------------------------------------------------


def test_choices_are_the_siblings_but_the_current_run(tmp_path):
    root = tmp_path / "runs"
    write_run(root, "alpha", 30)
    (root / "empty").mkdir()
    write_header(root / "empty", Header(config_name="tiny"))
    current = write_run(root, "current", 5)
    rows = {r.name: r for r in choices(root, str(current))}
    assert set(rows) == {"alpha", "empty"}
    alpha = rows["alpha"]
    assert alpha.step == 30 and alpha.best_val == pytest.approx(2.7) and alpha.best_val_step == 30
    assert rows["empty"].step is None  # listed, but nothing to draw (the picker greys it)
    assert runs_root(str(current)) == root
    assert runs_root("") == runfiles.RUNS and runs_root(str(tmp_path / "gone" / "x")) == runfiles.RUNS


# --- reading and following a run -------------------------------------------------------------------


def test_a_reference_run_is_read_once_then_only_what_was_appended(tmp_path, monkeypatch):
    d = write_run(tmp_path, "alpha", 20)
    run = ReferenceRun(d)
    offsets: list[int] = []
    real = runfiles.read_jsonl_since
    monkeypatch.setattr(runfiles, "read_jsonl_since", lambda p, o=0, *a: (offsets.append(o), real(p, o, *a))[1])
    assert run.changed() and run.read()
    assert run.curves is not None and run.curves.steps == list(range(1, 21)) and run.note == ""
    assert run.curves.val_steps == [10, 20]
    assert not run.changed()  # nothing new: no read needed
    size = (d / runfiles.METRICS_FILE).stat().st_size
    write_run(tmp_path, "alpha", 5, start=21, mode="a")
    append(d / runfiles.METRICS_FILE, '{"step": 26, "loss"')  # a line still being written
    assert run.changed() and run.read()
    assert offsets == [0, size]  # the second read began where the first ended
    assert run.curves.steps == list(range(1, 26))
    append(d / runfiles.METRICS_FILE, ': 1.5, "tokens": 3328}\n')  # ... now whole
    run.read()
    assert run.curves.steps == list(range(1, 27)) and run.curves.train[-1] == 1.5
    append(d / runfiles.METRICS_FILE, json.dumps({"rollback_to": 22}) + "\n")
    write_run(tmp_path, "alpha", 1, start=23, mode="a")
    run.read()
    assert run.curves.steps == list(range(1, 24))  # the rollback dropped 23..26, then 23 came again
    assert run.curves == read_curves(d)  # the same curves as `babyllm plot` reads from scratch


def test_a_run_started_over_is_read_afresh(tmp_path):
    d = write_run(tmp_path, "alpha", 30)
    run = ReferenceRun(d)
    run.read()
    write_run(tmp_path, "alpha", 4, mode="w")  # a shorter log: a new run in the same folder
    assert run.changed() and run.read()
    assert run.curves is not None and run.curves.steps == [1, 2, 3, 4]


@pytest.mark.parametrize("case", ["missing", "damaged", "unreadable"])
def test_a_bad_log_is_a_one_line_note(tmp_path, case):
    d = tmp_path / "bad"
    d.mkdir()
    if case == "damaged":
        (d / runfiles.METRICS_FILE).write_bytes(b"\x00\xffnot json\n{\"step\": \"x\"}\n[1, 2]\n")
    elif case == "unreadable":
        (d / runfiles.METRICS_FILE).mkdir()  # (a directory: reading it fails with an OSError, root or not)
    run = ReferenceRun(d)
    assert run.read()
    assert run.curves is None and run.note.startswith("bad: ") and "\n" not in run.note
    assert {"missing": "no metrics.jsonl", "damaged": "no training steps",
            "unreadable": "cannot read metrics.jsonl"}[case] in run.note


def test_overlay_keeps_what_was_read_of_a_run_picked_again(tmp_path):
    a, b = write_run(tmp_path, "a", 10), write_run(tmp_path, "b", 10)
    ov = Overlay()
    ov.pick([a])
    assert Overlay.read(ov.stale())
    first = ov.runs[0]
    ov.pick([b, a])
    assert [r.name for r in ov.runs] == ["b", "a"] and ov.runs[1] is first
    assert [r.name for r in ov.stale()] == ["b"]


# --- thinning and the tokens axis ------------------------------------------------------------------


def test_thin_is_the_mean_of_neighbours_at_the_last_step():
    points = [(s, float(s * s % 7)) for s in range(1, 1001)]
    for n in (1, 3, 100, 999, 1000, 5000):
        steps, values = thin(points, n)
        stride = math.ceil(len(points) / n)
        buckets = [points[i:i + stride] for i in range(0, len(points), stride)]  # the obvious way
        assert len(steps) <= n
        assert steps == [b[-1][0] for b in buckets]
        assert values == pytest.approx([sum(v for _, v in b) / len(b) for b in buckets])


def test_tokens_at_interpolates_steps_thinning_left_out():
    known_steps = list(range(10, 1001, 10))
    assert tokens_at([5, 10, 15, 995], known_steps, [s * 64.0 for s in known_steps]) == [640.0, 640.0, 960.0, 63680.0]
    assert tokens_at([3, 4], [1, 2], [math.nan, math.nan]) == [3.0, 4.0]  # no tokens logged: the steps


# --- the cockpit, end to end -----------------------------------------------------------------------


def drawn(pane, run: str, curve: str = "train"):
    return next((d for d in pane.drawn if d.run == run and d.curve == curve), None)


@pytest.mark.slow
async def test_cockpit_overlays_a_picked_run_and_toggles_the_x_axis(tmp_path, monkeypatch):
    monkeypatch.setattr(loss_module, "OVERLAY_POLL", 0.2)
    root = tmp_path / "runs"
    write_run(root, "alpha", 60, tokens_per_step=128)
    write_run(root, "beta", 30, tokens_per_step=32)
    cfg = load_config("tiny", [f'data.corpus="{write_corpus(tmp_path)}"', f'data.cache_dir="{tmp_path / "cache"}"',
                               "train.save_every=0"])
    app = CockpitApp(lambda publish, say: Tutor(cfg, root / "current", publish=publish, say=say), handle_signals=False)
    app.pace.MAX_STRETCH = 1.0  # full pace: plots redraw every second even on a busy test machine
    async with app.run_test(size=(160, 50)) as pilot:
        pane = app.pane("loss")
        await pilot_wait(pilot, lambda: app.snapshot is not None and app.snapshot.step > 5)
        await pilot.press("space")  # paused: the current run's curve holds still while we look
        await pilot_wait(pilot, lambda: app.snapshot.state == "paused")
        await pilot.press("o")
        await pilot_wait(pilot, lambda: isinstance(app.screen, RunPicker)
                         and app.screen.query_one(PickList).option_count)
        picker = app.screen.query_one(PickList)
        names = [str(picker.get_option_at_index(i).prompt).split()[0] for i in range(picker.option_count)]
        assert sorted(names) == ["alpha", "beta"]  # the current run is not offered
        await pilot.press(*["down"] * names.index("alpha"), "space", "enter")
        await pilot_wait(pilot, lambda: not isinstance(app.screen, RunPicker) and drawn(pane, "alpha") is not None)
        legend = str(pane.query_one("#loss-info").render())
        # (the current run validates in bits per byte: so is alpha's validation drawn and named)
        assert f"■ alpha best {format_value('val_bpb', 1.2, steady=True)} bpb @60" in legend and "beta" not in legend
        assert drawn(pane, "alpha").x == [float(s) for s in range(1, 61)]
        assert drawn(pane, "alpha", "val").x == [10.0, 20.0, 30.0, 40.0, 50.0, 60.0]
        await pilot_wait(pilot, lambda: drawn(pane, "").x[-1] == app.snapshot.step)
        mine_steps = [int(x) for x in drawn(pane, "").x]
        assert mine_steps == sorted(set(mine_steps))

        await pilot.press("x")  # x by tokens, every curve alike
        await pilot_wait(pilot, lambda: drawn(pane, "alpha").x[-1] == 60 * 128)
        assert drawn(pane, "alpha").x == [s * 128.0 for s in range(1, 61)]
        assert drawn(pane, "alpha", "val").x == [s * 1280.0 for s in range(1, 7)]
        steps, tokens = app.history.series("tokens", 1 << 20)
        by_step = dict(zip(steps, tokens, strict=True))
        assert drawn(pane, "").x == [by_step[s] for s in mine_steps]  # the current run's tokens at those steps
        assert by_step[mine_steps[-1]] > mine_steps[-1]
        assert "x tokens" in str(pane.border_subtitle)

        write_run(root, "alpha", 10, tokens_per_step=128, start=61, mode="a")  # a reference that goes on training
        await pilot_wait(pilot, lambda: drawn(pane, "alpha").x[-1] == 70 * 128, timeout=10)

        await pilot.press("l")  # log scale: everything drawn is still there, all positive
        await pilot_wait(pilot, lambda: "log" in str(pane.border_subtitle))
        assert drawn(pane, "alpha") is not None and drawn(pane, "") is not None
        assert all(y > 0 for d in pane.drawn for y in d.y)

        await pilot.press("x")  # back to steps
        await pilot_wait(pilot, lambda: drawn(pane, "alpha").x[-1] == 70.0)
        await pilot.press("s")  # a save, more steps, then (paused) roll back to it: the current curve shrinks
        await pilot_wait(pilot, lambda: runfiles.latest_step(root / "current") is not None)
        saved = runfiles.latest_step(root / "current")
        await pilot.press("space")
        await pilot_wait(pilot, lambda: app.snapshot.step > saved + 5)
        await pilot.press("space")
        await pilot_wait(pilot, lambda: app.snapshot.state == "paused")
        await pilot_wait(pilot, lambda: drawn(pane, "").x[-1] > saved)
        await pilot.press("r", "ctrl+y")
        await pilot_wait(pilot, lambda: app.snapshot.step == saved)
        await pilot_wait(pilot, lambda: drawn(pane, "").x[-1] <= saved)
        assert drawn(pane, "alpha").x[-1] == 70.0  # the overlay is untouched by the current run's rollback

        await pilot.press("q", "y")
        await pilot_wait(pilot, lambda: not app.is_running)
    assert app.join_tutor(timeout=10)



async def test_a_picked_run_without_a_log_is_a_note_in_the_legend(tmp_path):
    from tui.fake import FakeTutor

    (tmp_path / "old").mkdir()
    good = write_run(tmp_path, "good", 20)
    app = CockpitApp(lambda publish, say: FakeTutor(publish=publish), handle_signals=False)
    async with app.run_test(size=(160, 50)) as pilot:
        assert ("Loss plot: compare runs (overlay others)", "pick_runs", "o") in app.palette_entries()
        assert ("Loss plot: x axis by step or tokens", "toggle_x_axis", "x") in app.palette_entries()
        pane = app.pane("loss")
        await pilot_wait(pilot, lambda: app.snapshot is not None)
        pane.pick([tmp_path / "old", good])
        info = pane.query_one("#loss-info")
        await pilot_wait(pilot, lambda: drawn(pane, "good") is not None and "not trained" in str(info.render()))
        legend = str(info.render())
        assert "■ old (no metrics.jsonl: not trained yet?)" in legend and "■ good best" in legend
        assert not pane.failures  # a note, not a failed redraw
        assert drawn(pane, "old") is None and drawn(pane, "") is not None
        app.exit()
    assert app.join_tutor(timeout=10)
