"""Keys that derive a live setting's new value (the learning-rate keys, the form, the palette's "now") start
from what this cockpit asked and the run has not applied yet, in the cockpit's own run and in an attached
one (where the change travels over the socket): < then > before the next step ends where it started."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest
from runhelpers import pilot_wait

from babyllm import live
from babyllm.control import DEFAULT_BY
from babyllm.snapshot import Snapshot
from babyllm.socket.endpoint import Endpoint
from babyllm.socket.remote import RemoteTutor
from tui.app import CockpitApp
from tui.asked import ASKED_STALE_S, Asked
from tui.fake import FakeTutor

LR = live.LR
SMALL = (80, 24)


class SteppingTutor(FakeTutor):
    """A FakeTutor that, like the Tutor, applies live changes only at its next step (step_once)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.queued: list[tuple[tuple[str, str], ...]] = []
        self.applied: list[float] = []  # train.lr after each change
        self.queued_event = threading.Event()

    def set_settings(self, items: Sequence[tuple[str, str]], by: str = DEFAULT_BY) -> None:
        live.check(self._cfg, items)  # refused at once, as the Tutor's
        self._record("set_settings", by)
        self.queued.append(tuple(items))
        self.queued_event.set()

    def step_once(self) -> Snapshot:
        for change in self.queued:
            FakeTutor.set_settings(self, change)
            self.applied.append(self._cfg.train.lr)
        self.queued.clear()
        self.step += 1
        return self.snapshot()


def asked_rates(tutor: SteppingTutor) -> list[float]:
    return [float(dict(change)[LR]) for change in tutor.queued]


def stepping_app() -> tuple[CockpitApp, dict[str, SteppingTutor]]:
    """A cockpit on a SteppingTutor (its steps taken by the test); the tutor is made["tutor"] once built."""
    made: dict[str, SteppingTutor] = {}

    def factory(publish, say):
        made["tutor"] = SteppingTutor(publish=publish)
        return made["tutor"]

    return CockpitApp(factory, handle_signals=False), made


@pytest.mark.parametrize("keys, factor", [
    (("less_than_sign", "greater_than_sign"), 1.0),  # the issue's: halve then double = where it was
    (("greater_than_sign", "greater_than_sign", "greater_than_sign"), 8.0),  # three doublings compound
])
async def test_the_lr_keys_scale_what_was_asked_not_the_snapshot(keys, factor):
    app, made = stepping_app()
    async with app.run_test(size=SMALL) as pilot:
        await pilot_wait(pilot, lambda: app.snapshot is not None)
        tutor = made["tutor"]
        start = float(app.snapshot.settings[LR])
        await pilot.press(*keys)  # all before the run's next step: every snapshot still says `start`
        assert app.snapshot.settings[LR] == start
        expected = [start]
        for k in keys:
            expected.append(expected[-1] * (0.5 if k == "less_than_sign" else 2.0))
        assert asked_rates(tutor) == pytest.approx(expected[1:])
        assert app.live_values()[LR] == pytest.approx(start * factor)
        app._publish(tutor.step_once())  # the run applies them in order at its next step
        await pilot_wait(pilot, lambda: app.snapshot.settings[LR] == pytest.approx(start * factor))
        assert tutor.applied[-1] == pytest.approx(start * factor)
        await pilot.press("greater_than_sign")  # and once applied, the run's own value is the start
        assert asked_rates(tutor)[-1] == pytest.approx(start * factor * 2)


async def test_the_form_and_the_palette_say_the_asked_value():
    app, made = stepping_app()
    async with app.run_test(size=SMALL) as pilot:
        await pilot_wait(pilot, lambda: app.snapshot is not None)
        app.set_live([("top_k", "7")])  # a bare name, as typed in the palette
        from tui.commands import CockpitCommands
        from tui.screens import SettingScreen

        hits = CockpitCommands(app.screen).setting_hits("set top_k")
        assert any("now 7" in str(h.text) for h in hits), [str(h.text) for h in hits]
        app.action_setting_form("chat.top_k")
        await pilot.pause()
        assert isinstance(app.screen, SettingScreen)
        assert app.screen.query_one("#setting-value").value == "7"


async def test_an_attached_cockpits_lr_keys_scale_what_it_asked_over_the_socket(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    tutor = SteppingTutor(run_dir=str(run))
    endpoint = Endpoint(run, tutor, log=lambda m: None)
    endpoint.start()
    made: dict[str, RemoteTutor] = {}

    def factory(publish, say):
        made["remote"] = RemoteTutor(run, name="pilot", publish=publish, say=say)
        return made["remote"]

    app = CockpitApp(factory, attached=True, handle_signals=False)
    try:
        async with app.run_test(size=SMALL) as pilot:
            await pilot_wait(pilot, lambda: app.snapshot is not None)
            start = float(app.snapshot.settings[LR])
            await pilot.press("less_than_sign", "greater_than_sign")
            await pilot_wait(pilot, lambda: len(tutor.queued) == 2, what="both changes over the socket")
            assert asked_rates(tutor) == pytest.approx([start / 2, start])
            endpoint.publish(tutor.step_once())
            await pilot_wait(pilot, lambda: app.snapshot.step == tutor.step)
            assert app.snapshot.settings[LR] == pytest.approx(start)
            assert tutor.applied == pytest.approx([start / 2, start])
            made["remote"].close()
    finally:
        endpoint.close()


def test_asked_values_end_when_shown_or_refused():
    now = [0.0]
    asked = Asked(clock=lambda: now[0])
    snap = Snapshot(step=10, settings={LR: 1e-3})
    asked.ask(LR, 5e-4, snap)
    asked.ask(LR, 1e-3, snap)  # back where it was: a snapshot still showing 1e-3 proves nothing
    asked.seen(Snapshot(step=11, settings={LR: 1e-3}))
    assert asked.values(snap.settings)[LR] == 1e-3
    asked.seen(Snapshot(step=11, settings={LR: 5e-4}))  # the first applied, the second still queued
    assert asked.values({LR: 5e-4})[LR] == 1e-3
    asked.seen(Snapshot(step=12, settings={LR: 1e-3}))
    assert asked.values({LR: 2e-3})[LR] == 2e-3  # nothing asked any more: the snapshot's value
    asked.ask(LR, 0.5, Snapshot(step=12, settings={LR: 1e-3}))  # one the run will refuse
    asked.seen(Snapshot(step=14, settings={LR: 1e-3}))
    assert asked.values({LR: 1e-3})[LR] == 0.5  # (not yet stale: too soon)
    asked.ask(LR, 0.25, Snapshot(step=14, settings={LR: 1e-3}))
    now[0] = ASKED_STALE_S + 1
    asked.seen(Snapshot(step=15, settings={LR: 1e-3}))
    assert asked.values({LR: 1e-3})[LR] == 0.25  # the later one: the run has taken one step since (paused?)
    now[0] = 2 * ASKED_STALE_S + 2
    asked.seen(Snapshot(step=16, settings={LR: 1e-3}))
    assert asked.values({LR: 1e-3})[LR] == 1e-3
