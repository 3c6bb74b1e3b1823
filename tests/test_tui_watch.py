"""`babyllm-tui --watch`: the viewer app and its CLI (the follower it shows is tested in test_follower.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from textual.widgets import Static

from babyllm.run.follower import Watcher
from tui.app import CockpitApp
from tui.cli import main as tui_main
from tui.screens import ConfirmScreen, HelpScreen
from tui.widgets.status import StatusBar

sys.path.insert(0, str(Path(__file__).parent))
from runhelpers import append, fingerprint, line, pilot_wait, plain, write_save  # noqa: E402

SMALL = (80, 24)


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


def test_cli_refuses_a_save_folder_naming_its_run_directory(tmp_path, capsys):
    write_save(tmp_path / "run", 5)
    assert tui_main(["--watch", str(tmp_path / "run" / "save-00000005")]) == 2
    err = capsys.readouterr().err.strip()
    assert "is one save folder" in err and f"--watch {tmp_path / 'run'}" in err


# --- the viewer app -----------------------------------------------------------------------------


def make_app(run: Path) -> tuple[CockpitApp, dict]:
    made: dict = {}

    def factory(publish, say):
        made["watcher"] = Watcher(run, publish=publish, say=say, poll=0.05)
        return made["watcher"]

    return CockpitApp(factory, chat_factory=lambda w: w.chat_session(), viewer=True, handle_signals=False), made


def status_text(app) -> str:
    return str(app.query_one(StatusBar).render())


async def test_viewer_follows_appended_metrics_and_refuses_controls(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    app, made = make_app(run)
    async with app.run_test(size=SMALL) as pilot:
        # The status bar follows the snapshot on the app's next tick: wait for it, don't race it.
        await pilot_wait(pilot, lambda: "WAITING" in status_text(app) and "metrics.jsonl" in status_text(app))
        m = run / "metrics.jsonl"
        append(m, "".join(line(s) for s in range(1, 21)))
        await pilot_wait(pilot, lambda: app.snapshot.step == 20)
        await pilot_wait(pilot, lambda: "step 20" in status_text(app) and "RUNNING" in status_text(app))
        grid = app.query_one("#stats-grid", Static)
        await pilot_wait(pilot, lambda: "loss" in plain(grid))
        first = plain(grid)
        append(m, line(21, loss=9.876))
        await pilot_wait(pilot, lambda: "step 21" in status_text(app))
        await pilot_wait(pilot, lambda: plain(grid) != first)
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
        await pilot_wait(pilot, lambda: not app.is_running)
    assert app.join_tutor(timeout=2)
    assert made["watcher"].refused == ["pause", "pause", "save", "checkpoint"]


async def test_viewer_flashes_each_failed_save_from_the_events_kind(tmp_path):
    """A run's save_error events (school/saves.py): the viewer flashes each one, the same failure twice too."""
    import json

    run = tmp_path / "run"
    run.mkdir()
    append(run / "metrics.jsonl", "".join(line(s) for s in range(1, 6)))
    app, made = make_app(run)
    async with app.run_test(size=SMALL) as pilot:
        await pilot_wait(pilot, lambda: app.snapshot is not None and app.snapshot.step == 5)
        for step in (5, 6):
            append(run / "events.jsonl", json.dumps({"step": step, "kind": "save_error", "time": 1.0,
                                                     "message": "step 5: save failed: [Errno 28] disk full"}) + "\n")
            await pilot_wait(pilot, lambda: "save failed: see the event log" in status_text(app))
            assert app.snapshot.last_save_error == "step 5: save failed: [Errno 28] disk full"
            app.status.flash("something else since")
            await pilot_wait(pilot, lambda: "something else since" in status_text(app))
        await pilot.press("q")
    assert app.join_tutor(timeout=2)


# --- a live run: its snapshot stream, read-only --------------------------------------------------------


async def test_watch_on_a_live_run_follows_its_socket_and_never_steers_it(make_cfg, tmp_path):
    from test_endpoint import Running

    from tui.watch import viewer

    with Running(make_cfg("train.steps=0", "train.save_every=0"), tmp_path / "run", publish_every=0.0) as run:
        app, remote = viewer(run.run_dir, handle_signals=False)
        assert remote is not None and "live" in app.sub_title
        async with app.run_test(size=SMALL) as pilot:
            await pilot_wait(pilot, lambda: app.snapshot is not None and app.snapshot.state == "running")
            first = app.snapshot.step
            await pilot_wait(pilot, lambda: app.snapshot.step > first + 5)  # fed by the run's snapshots
            await pilot.press("space", "s", "c")
            assert remote.refused == ["pause", "save", "checkpoint"]  # recorded, never sent
            await pilot.press("q")
            await pilot_wait(pilot, lambda: not app.is_running)
        remote.close()
        assert app.join_tutor(timeout=5)
        assert run.advances() and run.tutor.snapshot().state == "running"
        assert not any("requested by" in e.message for e in run.tutor.snapshot().events)
    app, remote = viewer(run.run_dir, handle_signals=False)  # not live any more: its files
    assert remote is None and "files" in app.sub_title
