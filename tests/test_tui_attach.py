"""Attach: babyllm.socket.remote.RemoteTutor against a real endpoint, and the attached cockpit over it.

A tiny Tutor trains in a thread and serves its control socket (as every training process does); the
RemoteTutor is the cockpit's TutorControl for it. A FakeTutor behind an Endpoint stands in where only
the socket matters (a lost connection).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
from runhelpers import pilot_wait, wait_for
from test_endpoint import Running, events

from babyllm.errors import BabyError
from babyllm.run.follower import SavedChat
from babyllm.run.runfiles import latest_step
from babyllm.snapshot import Snapshot
from babyllm.socket.client import NoLiveRun
from babyllm.socket.endpoint import Endpoint
from babyllm.socket.remote import CONNECTION_LOST, RUN_STOPPED, RemoteTutor
from tui.app import CockpitApp
from tui.cli import main as tui_main
from tui.fake import FakeTutor

SMALL = (80, 24)
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def running(make_cfg, tmp_path):
    with Running(make_cfg("train.steps=0", "chat.max_tokens=8", "train.save_every=0"), tmp_path / "run",
                 publish_every=0.0) as r:
        yield r


class Following:
    """A RemoteTutor whose run() follows the stream in a thread, recording what it publishes."""

    def __init__(self, run_dir: Path, name: str, **kwargs) -> None:
        self.published: list[Snapshot] = []
        self.said: list[str] = []
        self.remote = RemoteTutor(run_dir, name=name, publish=self.published.append, say=self.said.append, **kwargs)
        self.result: list[str] = []
        self.thread = threading.Thread(target=lambda: self.result.append(self.remote.run()), daemon=True)
        self.thread.start()

    def state(self) -> str:
        return self.remote.snapshot().state

    def ended(self, timeout: float = 30) -> str:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "run() did not return"
        return self.result[0]


def test_nothing_live_is_no_live_run(tmp_path):
    with pytest.raises(NoLiveRun):
        RemoteTutor(tmp_path)


def test_snapshots_and_history_flow_from_the_run(running):
    assert running.advances(10)
    f = Following(running.run_dir, "watcher")
    try:
        first = f.remote.snapshot()
        assert first.run_dir == str(running.run_dir) and first.state == "running"
        steps, values = f.remote.history.series("loss")
        assert steps and steps[-1] <= first.step + 1 and all(v == v for v in values)  # the subscribe reply's
        wait_for(lambda: len(f.published) >= 5, what="snapshots over the socket")
        got = [s.step for s in f.published]
        assert got == sorted(got) and got[-1] > first.step
        assert f.remote.history.series("loss")[0][-1] >= got[-2]  # each snapshot's stats join the history
    finally:
        f.remote.close()
    assert f.ended() == "stopped" and f.remote.ended == "detached"
    assert running.advances()  # leaving closes our connections only: the run trains on


def test_pause_resume_save_reach_the_run_and_its_events_name_the_client(running):
    f = Following(running.run_dir, "cockpit A")
    try:
        f.remote.pause()
        wait_for(lambda: f.state() == "paused", what="paused over the socket")
        step = running.step()
        time.sleep(0.3)
        assert running.step() == step  # really paused
        f.remote.request_save()
        wait_for(lambda: latest_step(running.run_dir) == step, what="the save")
        f.remote.resume()
        wait_for(lambda: f.state() == "running", what="running again")
        assert running.advances()
    finally:
        f.remote.close()
    said = events(running.run_dir)
    for what in ("pause", "save", "resume"):
        assert any(m.startswith(f"{what} requested by cockpit A (pid ") for m in said), said


def test_chat_streams_the_live_models_reply_and_takes_commands(running):
    remote = RemoteTutor(running.run_dir, name="chatter")
    try:
        chat = remote.chat_session()
        assert "temperature" in chat.command("/temp 0.5")
        with pytest.raises(BabyError, match="unknown command"):
            chat.command("/frobnicate")
        pieces = list(chat.stream("The baker"))
        assert pieces and "".join(pieces) and isinstance(chat.hit_limit, bool)
        stream = chat.stream("The old captain")  # a reader that stops early: the run stops writing...
        next(stream)
        stream.close()
        assert list(chat.stream("The sea")), "...and the connection is usable for the next reply"
    finally:
        remote.close()
    assert running.advances()


def test_stop_saves_and_stops_the_run_and_run_returns(running):
    f = Following(running.run_dir, "stopper")
    assert running.advances()
    f.remote.stop()
    assert f.ended() == "stopped" and f.remote.ended == RUN_STOPPED
    running.thread.join(30)
    assert running.result == ["stopped"]
    assert latest_step(running.run_dir) is not None
    assert any(RUN_STOPPED in s for s in f.said)
    assert any(m.startswith("stop requested by stopper (pid ") for m in events(running.run_dir))


SERVE_FAKE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from babyllm.socket.endpoint import Endpoint
    from tui.fake import FakeTutor

    Endpoint(Path(sys.argv[1]), FakeTutor(), log=lambda m: None).start()
    print("serving", flush=True)
    time.sleep(60)
""")


def test_a_killed_run_is_a_lost_connection_with_a_clear_error(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", SERVE_FAKE, str(run)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "serving"
        f = Following(run, "lonely")
        proc.send_signal(signal.SIGKILL)  # no "stopping" ever comes, and its socket file stays behind
        assert f.ended(10) == "error"
    finally:
        proc.kill()
        proc.wait(10)
        proc.stdout.close()  # type: ignore[union-attr]
    assert f.remote.ended.startswith(CONNECTION_LOST)
    error = f.remote.snapshot().error or ""
    assert CONNECTION_LOST in error and f"--attach {run}" in error
    assert f.published[-1].state == "error"  # the cockpit is told
    f.remote.pause()  # asking a lost run: nothing raises, nothing hangs
    f.remote.close()


def test_a_run_that_closes_its_socket_stopped_even_unseen(tmp_path):
    """A quick stop (nothing left to save) may close the socket before its "stopping" snapshot goes out:
    the run removed its socket, so it stopped; it was not lost."""
    run = tmp_path / "run"
    run.mkdir()
    ep = Endpoint(run, FakeTutor(), log=lambda m: None)
    ep.start()
    f = Following(run, "late")
    ep.close()
    assert f.ended(10) == "stopped" and f.remote.ended == RUN_STOPPED


def test_two_remote_tutors_at_once(running):
    a, b = Following(running.run_dir, "left"), Following(running.run_dir, "right")
    try:
        a.remote.pause()
        wait_for(lambda: a.state() == "paused" and b.state() == "paused", what="both see the pause")
        b.remote.resume()
        wait_for(lambda: a.state() == "running" and b.state() == "running", what="both see the resume")
        n = len(a.published), len(b.published)
        wait_for(lambda: len(a.published) > n[0] + 2 and len(b.published) > n[1] + 2, what="both streams")
    finally:
        a.remote.close()
        b.remote.close()
    said = events(running.run_dir)
    assert any(m.startswith("pause requested by left (pid ") for m in said)
    assert any(m.startswith("resume requested by right (pid ") for m in said)
    assert a.ended() == b.ended() == "stopped"


def test_live_settings_go_to_the_run_together_and_a_refusal_is_said(running):
    f = Following(running.run_dir, "steerer")
    try:
        f.remote.set_settings([("train.lr", "1e-4"), ("train.min_lr", "1e-5")])
        wait_for(lambda: f.remote.snapshot().overrides == {"train.lr": 1e-4, "train.min_lr": 1e-5},
                 what="the settings applied")
        f.remote.set_settings([("train.warmup", "5"), ("model.embed", "64")])
        wait_for(lambda: f.said, what="the refusal")
        assert f.said[0].startswith("set refused by the run: model.embed cannot change mid-run: it shapes the model")
        assert running.tutor.cfg.train.warmup != 5  # none of a refused request is applied
    finally:
        f.remote.close()
    assert any(m.startswith("set train.lr 0.003 -> 0.0001 by steerer (pid ") for m in events(running.run_dir))


def test_a_read_only_remote_never_steers_the_run(running):
    f = Following(running.run_dir, "viewer", read_only=True)
    try:
        f.remote.pause()
        f.remote.stop()
        f.remote.set_settings([("train.lr", "0.1")])
        assert f.remote.refused == ["pause", "stop", "set"]
        assert running.advances(10) and f.state() == "running"
        assert isinstance(f.remote.chat_session(), SavedChat)  # a viewer's chat is the newest save, here
    finally:
        f.remote.close()
    assert not any("requested by viewer" in m for m in events(running.run_dir))


# --- the attached cockpit ---------------------------------------------------------------------------


async def test_the_attached_cockpits_keys_reach_the_run_and_q_detaches(running):
    made: dict[str, RemoteTutor] = {}

    def factory(publish, say):
        made["remote"] = RemoteTutor(running.run_dir, name="pilot", publish=publish, say=say)
        return made["remote"]

    app = CockpitApp(factory, chat_factory=lambda r: r.chat_session(), attached=True, handle_signals=False)
    async with app.run_test(size=SMALL) as pilot:
        await pilot_wait(pilot, lambda: app.snapshot is not None and app.chat is not None)
        await pilot.press("space")
        await pilot_wait(pilot, lambda: running.tutor.snapshot().state == "paused")
        await pilot_wait(pilot, lambda: app.snapshot.state == "paused")
        await pilot.press("s")
        await pilot_wait(pilot, lambda: latest_step(running.run_dir) is not None)
        lr = running.tutor.cfg.train.lr
        await pilot.press("greater_than_sign")  # a live setting over the socket (applied while paused)
        await pilot_wait(pilot, lambda: running.tutor.cfg.train.lr == lr * 2)
        await pilot_wait(pilot, lambda: app.snapshot.overrides.get("train.lr") == lr * 2)
        await pilot.press("space")
        await pilot_wait(pilot, lambda: running.tutor.snapshot().state == "running")
        await pilot.press("q")
        await pilot.pause(0.2)
        assert app.is_running  # it asks first
        await pilot.press("d")  # Detach: leave it training
        await pilot_wait(pilot, lambda: not app.is_running)
    assert app.detached
    made["remote"].close()
    app.tutor_thread.wait(5)
    assert not app.tutor_thread.alive
    assert running.advances()  # the run trains on
    said = events(running.run_dir)
    assert any(m.startswith("pause requested by pilot (pid ") for m in said)
    assert not any("stop requested" in m for m in said)


def test_attach_with_nothing_live_is_one_line_and_exit_2_and_suggests_only_what_works(tmp_path, capsys):
    """--watch on a missing path fails, --resume without a save fails: each is suggested only where it works."""
    from runhelpers import write_save

    def attach(path: Path) -> str:
        assert tui_main(["--attach", str(path)]) == 2
        err = capsys.readouterr().err.strip()
        assert "\n" not in err
        return err

    err = attach(tmp_path / "nothere")
    assert "no such run directory" in err and "--watch" not in err and "--resume" not in err
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("not a run")
    err = attach(tmp_path / "notes")
    assert "not a babyllm run" in err and "--watch" not in err and "--resume" not in err
    (tmp_path / "empty").mkdir()
    err = attach(tmp_path / "empty")  # a run about to start (--watch waits for it); no save to resume
    assert f"no live run answers at {tmp_path / 'empty'}" in err and f"--watch {tmp_path / 'empty'}" in err
    assert "--resume" not in err
    write_save(tmp_path / "run", 5)
    err = attach(tmp_path / "run")
    assert f"--watch {tmp_path / 'run'}" in err and f"--run-dir {tmp_path / 'run'} --resume" in err


def test_checkpoint_and_rollback_over_the_socket_rewind_the_history(running):
    f = Following(running.run_dir, "roller")
    try:
        f.remote.pause()
        wait_for(lambda: f.state() == "paused", what="paused")
        saved = running.step()
        f.remote.request_checkpoint()
        wait_for(lambda: any(m.startswith(f"saved step {saved} ") for m in events(running.run_dir)),
                 what="the checkpoint")
        f.remote.resume()
        wait_for(lambda: running.step() > saved + 10, what="steps past the checkpoint")
        wait_for(lambda: f.remote.snapshot().step > saved + 5, what="the stream past it")
        f.remote.rollback()
        wait_for(lambda: f.state() == "paused" and f.remote.snapshot().step == saved, what="rolled back")
        steps, _ = f.remote.history.series("loss", max_points=100_000)
        assert steps and steps[-1] <= saved  # the plots keep only the live branch, as the Tutor's do
    finally:
        f.remote.close()
    assert any(m.startswith("rollback requested by roller (pid ") for m in events(running.run_dir))


def test_a_stop_with_nothing_left_to_save_is_the_run_stopping_too(running):
    f = Following(running.run_dir, "quick")
    f.remote.pause()
    wait_for(lambda: f.state() == "paused", what="paused")
    f.remote.request_save()
    wait_for(lambda: latest_step(running.run_dir) == running.step(), what="the save")
    f.remote.stop()  # (saved at this step already: the run closes its socket at once)
    assert f.ended() == "stopped" and f.remote.ended == RUN_STOPPED
