"""Pilot tests of the cockpit against a fake Tutor that records every request."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time

import pytest
from runhelpers import pilot_wait
from textual.widgets import Input

from babyllm.errors import BabyError
from babyllm.snapshot import Snapshot
from tui.app import CockpitApp
from tui.fake import FakeTutor
from tui.messages import SnapshotReady
from tui.pace import Pace
from tui.screens import ConfirmScreen, ErrorScreen, HelpScreen
from tui.widgets.status import StatusBar

SMALL = (80, 24)
BIG = (160, 50)


class FakeChat:
    """Infer2 stand-in: replies "a", "b", "c" and understands /temp."""

    def __init__(self) -> None:
        self.prompts: list[str] = []
        self.commands: list[str] = []
        self.notices: list[str] = []

    def stream(self, prompt: str):
        self.prompts.append(prompt)
        for piece in ("a", "b", "c"):
            time.sleep(0.01)
            yield piece
        self.notices.append("a notice")

    def command(self, line: str) -> str:
        self.commands.append(line)
        if line == "/temp x":
            raise BabyError("temperature 'x': not a number")
        return f"ok {line}"


def make_app(**kwargs) -> tuple[CockpitApp, dict]:
    made: dict = {}

    def factory(publish, say):
        made["tutor"] = FakeTutor(publish=publish)
        return made["tutor"]

    kwargs.setdefault("handle_signals", False)
    app = CockpitApp(factory, chat_factory=lambda tutor: made.setdefault("chat", FakeChat()), **kwargs)
    return app, made


def log_text(app: CockpitApp) -> str:
    return "\n".join(app.pane("events").lines)


async def started(pilot, app: CockpitApp) -> None:
    await pilot_wait(pilot, lambda: app.snapshot is not None and app.chat is not None)


async def test_keys_reach_the_tutor():
    app, made = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        tutor: FakeTutor = made["tutor"]
        await pilot.press("space")
        await pilot.press("p")
        await pilot.press("s")
        await pilot.press("c")
        assert tutor.calls == ["pause", "resume", "request_save", "request_checkpoint"]
        assert "save requested" in log_text(app)
        # roll back outside an alarm asks first; "n" cancels, only ctrl+y (or the button) rolls back
        await pilot.press("r")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        assert "rollback" not in tutor.calls
        await pilot.press("r", "ctrl+y")
        assert tutor.calls[-1] == "rollback"


async def test_number_keys_switch_panes_when_small_and_maximise_when_big():
    app, _ = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        assert app.compact and app.active_pane == "stats"
        panes = ("stats", "loss", "chat", "windows", "timing", "sample", "events", "system")
        for key, name in zip("12345678", panes, strict=True):
            await pilot.press(key)
            assert app.active_pane == name
            assert app.pane(name).display and app.pane(name).region.height > 10
        await pilot.click("#tab-loss")
        assert app.active_pane == "loss"
    app, _ = make_app()
    async with app.run_test(size=BIG) as pilot:
        await started(pilot, app)
        assert not app.compact
        assert all(p.region.height > 5 for p in app.panes)  # all on screen at once
        await pilot.press("2")
        assert app.screen.maximized is app.pane("loss")
        await pilot.press("escape")
        assert app.screen.maximized is None
        await pilot.press("4", "0")
        assert app.screen.maximized is None


async def test_plot_and_stat_keys():
    app, _ = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        await pilot.press("2")
        assert not app.pane("loss").log_scale
        await pilot.press("l")
        assert app.pane("loss").log_scale
        await pilot.pause(0.3)  # the plot redraws on the next tick (keys in a burst are coalesced)
        assert "log" in str(app.pane("loss").border_subtitle)
        await pilot.press("m")
        assert not app.pane("loss").smoothing_on
        await pilot.press("m", "plus")
        assert app.pane("loss").smoothing_on and app.pane("loss").smoothing == 0.95
        await pilot.press("minus", "minus")
        assert app.pane("loss").smoothing == 0.8
        await pilot.press("1", "right_square_bracket")
        assert app.pane("stats").focus_stat == "loss_100"
        await pilot.press("left_square_bracket", "left_square_bracket")
        assert app.pane("stats").focus_stat == "t_stats"  # wraps round to the last stat in display order


async def test_help_screen():
    app, _ = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("q")  # closes the help, does not quit
        assert not isinstance(app.screen, HelpScreen) and app.is_running


@pytest.mark.parametrize(("query", "call"), [
    ("Save now", "request_save"), ("Checkpoint", "request_checkpoint"), ("Pause / resume", "pause"),
])
async def test_palette_actions(query, call):
    app, made = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        await pilot.press("ctrl+p")
        await pilot.press(*query)
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot_wait(pilot, lambda: call in made["tutor"].calls)


async def test_palette_panes_plot_and_thresholds():
    app, _ = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        for query, check in (("pane: tim", lambda: app.active_pane == "timing"),
                             ("log scale", lambda: app.pane("loss").log_scale),
                             ("of grad_n", lambda: app.pane("stats").focus_stat == "grad_norm")):
            await pilot.press("ctrl+p", *query)
            await pilot.pause(0.3)
            await pilot.press("enter")
            await pilot_wait(pilot, check)


async def test_chat_streams_and_runs_commands():
    app, made = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        await pilot.press("i")
        assert app.active_pane == "chat" and isinstance(app.focused, Input)
        await pilot.press(*"hello", "enter")
        await pilot_wait(pilot, lambda: not app.chat_pane.answering)
        chat = made["chat"]
        assert chat.prompts == ["hello"]
        texts = [str(w.render()) for w in app.query(".chat-line")]
        assert any(t.startswith("baby abc") for t in texts), texts
        assert "a notice" in texts
        await pilot.press(*"/temp 0.5", "enter", *"/temp x", "enter")
        texts = [str(w.render()) for w in app.query(".chat-line")]
        assert "ok /temp 0.5" in texts and "temperature 'x': not a number" in texts
        # typing "q" and "s" in the chat never reaches the Tutor or quits
        await pilot.press("q", "s", "space")
        assert made["tutor"].calls == [] and app.is_running
        await pilot.press("escape")
        assert not isinstance(app.focused, Input)
        await pilot.press("ctrl+t")
        assert isinstance(app.focused, Input)


async def test_quit_asks_then_stops_the_tutor_and_joins_its_thread():
    app, made = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("escape")
        assert app.is_running and "stop" not in made["tutor"].calls
        await pilot.press("q", "y")
        await pilot_wait(pilot, lambda: not app.is_running)
    assert made["tutor"].calls == ["stop"]
    assert app.join_tutor(timeout=2)
    assert not [t for t in threading.enumerate() if t.name == "tutor"]


async def test_nan_alarm_banner_resume_and_rollback():
    app, made = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        tutor: FakeTutor = made["tutor"]
        app.post_message(SnapshotReady(tutor.raise_alarm()))
        await pilot_wait(pilot, lambda: app.snapshot.state == "alarm")
        status = app.query_one(StatusBar)
        assert status.has_class("-alarm") and "ALARM" in str(status.render())
        assert "loss is nan" in log_text(app)
        await pilot.press("r")  # in an alarm: no question asked
        assert tutor.calls == ["rollback"]
        app.post_message(SnapshotReady(tutor.raise_alarm()))
        await pilot.pause(0.1)
        await pilot.press("space")
        assert tutor.calls == ["rollback", "resume"]


async def test_snapshots_coalesce():
    """A burst of snapshots from another thread is shown as far fewer updates, ending with the last."""
    app, made = make_app()
    shown: list[int] = []
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        real_show = app._show
        app._show = lambda snap: (shown.append(snap.step), real_show(snap))  # type: ignore[method-assign]
        base = made["tutor"].snapshot()

        def burst() -> None:
            for i in range(2000):
                app._publish(Snapshot(step=1000 + i, tokens=0, state="running", stats=base.stats))

        t = threading.Thread(target=burst)
        t.start()
        t.join()
        await pilot_wait(pilot, lambda: shown and shown[-1] == 2999)
    assert len(shown) < 500


async def test_tutor_exception_shows_error_screen_and_quits():
    def factory(publish, say):
        raise RuntimeError("boom")

    app = CockpitApp(factory, handle_signals=False)
    async with app.run_test(size=SMALL) as pilot:
        await pilot_wait(pilot, lambda: isinstance(app.screen, ErrorScreen))
        assert "boom" in app.failure
        await pilot.press("escape")  # the panes stay usable
        assert not isinstance(app.screen, ErrorScreen) and app.is_running
        await pilot.press("q", "y")
        await pilot_wait(pilot, lambda: not app.is_running)
    assert app.exit_code == 1


async def test_baby_error_while_starting_exits_2():
    def factory(publish, say):
        say("training the tokenizer…")
        raise BabyError("corpus.txt: no usable text")

    app = CockpitApp(factory, handle_signals=False)
    async with app.run_test(size=SMALL) as pilot:
        await pilot_wait(pilot, lambda: isinstance(app.screen, ErrorScreen))
        assert "training the tokenizer" in log_text(app)
        await pilot.press("q")
        await pilot_wait(pilot, lambda: not app.is_running)
    assert app.exit_code == 2 and app.failure == "corpus.txt: no usable text"


async def test_actions_while_starting_only_warn():
    gate = threading.Event()

    def factory(publish, say):
        gate.wait(5)
        return FakeTutor(publish=publish)

    app = CockpitApp(factory, handle_signals=False)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("s", "space", "c")
        assert "STARTING" in str(app.query_one(StatusBar).render())
        await pilot.press("q", "y")  # quitting while the Tutor is still being built
        gate.set()
        await pilot_wait(pilot, lambda: not app.is_running)
    assert app.join_tutor(timeout=2)


async def test_sigterm_saves_and_exits():
    app, made = make_app(handle_signals=True)
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        os.kill(os.getpid(), signal.SIGTERM)
        await pilot_wait(pilot, lambda: not app.is_running)
    assert made["tutor"].calls == ["stop"]
    await asyncio.sleep(0)


def test_pace_stretches_updates_to_the_ui_cpu_budget(monkeypatch):
    """Over budget the intervals stretch (damped, capped); back under budget they return to 1."""
    clock = {"cpu": 0.0, "wall": 0.0}
    pace = Pace(0.05, cpu_clock=lambda: clock["cpu"], wall_clock=lambda: clock["wall"])
    monkeypatch.setattr(Pace, "MAX_STRETCH", 4.0)

    def run(seconds: float, share: float) -> float:
        clock["wall"] += seconds
        clock["cpu"] += seconds * share / pace.stretch  # the UI's cost falls as its updates space out
        pace.update()
        return pace.stretch

    assert run(Pace.PERIOD / 2, 0.20) == 1.0  # not measured until PERIOD has passed
    stretches = [run(Pace.PERIOD, 0.20) for _ in range(8)]
    assert stretches == sorted(stretches) and stretches[0] > 1.0
    assert stretches[-1] == pytest.approx(Pace.MAX_STRETCH, rel=0.02)  # 4x the budget at full rate: towards the cap
    for _ in range(12):
        run(Pace.PERIOD, 0.01)
    assert pace.stretch == 1.0


@pytest.mark.parametrize("max_steps, minutes, eta", [(0, 5.0, "4m00s"), (1000, 5.0, "2m20s"), (1000, 1.5, "30s")])
async def test_a_time_budget_shows_in_the_header_and_the_timing_pane(max_steps, minutes, eta):
    """train.minutes: the training clock used of the budget, what is left, and the ETA to the nearer limit
    (the fake: step 300 at 200 ms a step, 60 s trained)."""
    from tui.widgets.status import StatusBar
    from tui.widgets.timing import TimingView

    app = CockpitApp(lambda publish, say: FakeTutor(publish=publish, max_steps=max_steps, max_minutes=minutes),
                     handle_signals=False)
    async with app.run_test(size=BIG) as pilot:
        view = app.query_one(TimingView)
        await pilot_wait(pilot, lambda: "trained" in str(view.render()))
        text = str(view.render())
        budget = f"{minutes * 60:.0f}s" if minutes < 1 else ("5m00s" if minutes == 5 else "1m30s")
        used = f"1m00s/{budget} trained ({60 / (minutes * 60):.0%})"
        label = "budget    " if not max_steps else "limits    300/1,000 (30%) · "
        assert f"{label}{used}" in text and f"ETA {eta}" in text
        status = str(app.query_one(StatusBar).render())
        assert f"1m00s/{budget}" in status and f"ETA {eta}" in status


def test_seconds_left_is_the_nearer_limit():
    from babyllm.snapshot import Snapshot

    stats = {"step_ms": 100.0, "train_s": 30.0}
    assert Snapshot(step=10, stats=stats).seconds_left() is None
    assert Snapshot(step=10, max_steps=110, stats=stats).seconds_left() == pytest.approx(10.0)
    assert Snapshot(step=10, max_minutes=1.0, stats=stats).seconds_left() == pytest.approx(30.0)
    assert Snapshot(step=10, max_steps=110, max_minutes=0.2, stats=stats).seconds_left() == 0.0  # spent
    assert Snapshot(step=10, max_minutes=1.0, stats={}).seconds_left() is None  # before the first step


async def test_the_timing_pane_shows_the_mfu():
    """The live mfu stat (model FLOPs utilisation, babyllm.model.peaks) beside tokens/s, as a percentage."""
    from tui.widgets.timing import TimingView

    app = CockpitApp(lambda publish, say: FakeTutor(publish=publish), handle_signals=False)
    async with app.run_test(size=BIG) as pilot:
        await pilot_wait(pilot, lambda: app.snapshot is not None and "mfu" in app.snapshot.stats)
        view = app.query_one(TimingView)
        await pilot_wait(pilot, lambda: "MFU" in str(view.render()))
        assert f"MFU {app.snapshot.stats['mfu']:.1%}" in str(view.render())
