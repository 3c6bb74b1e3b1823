"""Live settings: which keys may change mid-run, how a change is checked, applied, saved and resumed."""

import argparse
import json
import os
import threading

import pytest
from runhelpers import pilot_wait, wait_for

from babyllm import live
from babyllm.commands.cli import main as cli_main
from babyllm.commands.runsetup import prepare_run
from babyllm.config import apply_override, load_config
from babyllm.errors import ConfigError
from babyllm.school.engine import lr_multiplier
from babyllm.school.tutor import Tutor
from babyllm.socket.client import ControlClient, is_live
from tui.fake import FakeTutor
from tui.messages import SnapshotReady


def quiet(_message):
    pass


def metrics(run):
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def test_live_keys_are_real_config_keys():
    cfg = load_config("tiny")
    for key in live.LIVE_KEYS:
        live.get(cfg, key)  # raises if the table names a key the config does not have
    assert set(live.SCHEDULE) <= set(live.LIVE_KEYS)


@pytest.mark.parametrize("bare, key, value", [("lr", "train.lr", "0.5"), ("top_k", "chat.top_k", "3"),
                                             ("warmup", "train.warmup", "3")])
def test_a_bare_name_means_the_same_key_for_set_ctl_set_and_the_palette(bare, key, value):
    """One resolver (babyllm.config.full_key): `--set lr=...`, `babyllm ctl RUN set lr=...` (live.parse_items)
    and the palette's "set lr ..." (the same) all take the bare name, and refuse a wrong one alike."""
    cfg = load_config("tiny", [f"{bare}={value}"])
    assert live.get(cfg, key) == float(value)
    assert live.parse_items([f"{bare}={value}"]) == live.parse_items([bare, value]) == [(key, value)]
    with pytest.raises(ConfigError) as by_set:
        load_config("tiny", [f"{bare}x=3"])
    with pytest.raises(ConfigError) as by_ctl:
        live.parse_items([f"{bare}x=3"])
    assert by_set.value.args[0].partition(": ")[2] == by_ctl.value.args[0].partition(": ")[2]
    assert f"no config key '{bare}x' (did you mean '{key}'?)" in str(by_ctl.value)


@pytest.mark.parametrize("key, why", [("train.batch", "it shapes the batches"),
                                      ("model.neurons", "it shapes the model"),
                                      ("data.corpus", "it chose the corpus")])
def test_a_key_that_shapes_the_run_is_refused_with_the_reason(key, why):
    cfg = load_config("tiny")
    with pytest.raises(ConfigError) as e:
        live.check(cfg, [(key, "8" if key != "data.corpus" else "x.txt")])
    message = str(e.value)
    assert message.startswith(f"{key} cannot change mid-run: {why}") and f"restart with --set {key}=" in message


def test_a_bad_value_is_the_same_error_as_set():
    cfg = load_config("tiny")
    with pytest.raises(ConfigError) as from_set:
        apply_override(load_config("tiny"), "train.lr=fast")
    with pytest.raises(ConfigError) as from_live:
        live.check(cfg, [("train.lr", "fast")])
    assert str(from_live.value) == str(from_set.value)
    with pytest.raises(ConfigError, match="unknown key 'train.lrr'.*did you mean 'lr'"):
        live.check(cfg, [("train.lrr", "0.1")])
    with pytest.raises(ConfigError, match="train.min_lr = 1.0: must be between 0 and train.lr"):
        live.check(cfg, [("train.min_lr", "1.0")])
    assert live.check(cfg, [("train.lr", "2e-3")]) == (("train.lr", 0.002),) and cfg.train.lr == 0.003  # untouched
    assert live.check(cfg, [("chat.top_k", "5")]) == (("chat.top_k", 5),)


def test_several_settings_are_checked_together_all_or_none():
    cfg = load_config("tiny")  # lr 0.003, min_lr 0.0003
    # lowering both: train.lr first would put it under the old min_lr, were they checked one by one
    assert live.check(cfg, [("train.lr", "1e-4"), ("train.min_lr", "1e-5")]) == (
        ("train.lr", 0.0001), ("train.min_lr", 1e-05))
    with pytest.raises(ConfigError, match="train.batch cannot change mid-run"):
        live.check(cfg, [("train.lr", "1e-4"), ("train.batch", "4")])
    assert cfg.train.lr == 0.003


def change_at(step, changes, then=()):
    """A publish callback that, once, at `step`, asks for `changes` ((key, text) pairs) then calls `then`."""
    holder = {"done": False}

    def publish(snap):
        if snap.step >= step and not holder["done"]:
            holder["done"] = True
            t = holder["tutor"]
            for key, text in changes:  # (one request each: a group is test_a_group_is_applied_together)
                t.set_settings([(key, text)], by="test")
            for name in then:
                getattr(t, name)()
    return holder, publish


CHANGES = [("train.lr", "0.004"), ("train.weight_decay", "0.5"), ("train.grad_clip", "0.25"),
           ("train.warmup", "3")]


def test_a_change_is_applied_at_a_step_boundary_and_named_in_the_events(make_cfg, tmp_path):
    holder, publish = change_at(6, CHANGES)
    t = holder["tutor"] = Tutor(make_cfg("train.steps=12", "train.warmup=20"), tmp_path / "r", publish=publish,
                                publish_every=0.0, say=quiet)
    assert t.run() == "finished"
    rows = metrics(tmp_path / "r")
    lr_before, lr_after = rows[5]["lr"], rows[6]["lr"]
    assert lr_before == pytest.approx(3e-3 * 6 / 20)  # warming up over 20 steps at tiny's train.lr
    # Warm-up now 3 steps (over): step 7 runs at the new rate's cosine over train.steps, down to min_lr.
    assert lr_after == pytest.approx(0.004 * lr_multiplier(6, 3, 12, 0.004, t.cfg.train.min_lr))
    assert t.optimizer.param_groups[0]["weight_decay"] == 0.5 and t.optimizer.param_groups[1]["weight_decay"] == 0
    assert t.cfg.train.grad_clip == 0.25
    events = [e.message for e in t.snapshot().events]
    assert "set train.lr 0.003 -> 0.004 by test" in events
    assert t.snapshot().overrides == {"train.lr": 0.004, "train.weight_decay": 0.5, "train.grad_clip": 0.25,
                                      "train.warmup": 3}


def test_setting_a_value_back_drops_the_override(make_cfg, tmp_path):
    holder, publish = change_at(2, [("train.lr", "0.004"), ("train.lr", "0.003"), ("chat.top_k", "3")])
    t = holder["tutor"] = Tutor(make_cfg("train.steps=4"), tmp_path / "r", publish=publish, publish_every=0.0,
                                say=quiet)
    assert t.run() == "finished"
    assert t.snapshot().overrides == {"chat.top_k": 3}
    assert t.chat_session().settings.top_k == 3


def test_changes_queued_together_are_checked_again_when_applied(make_cfg, tmp_path):
    # Each is fine against the config when asked; once min_lr is 0.002, lr 0.001 would be below it.
    holder, publish = change_at(2, [("train.min_lr", "0.002"), ("train.lr", "0.001")])
    t = holder["tutor"] = Tutor(make_cfg("train.steps=4"), tmp_path / "r", publish=publish, publish_every=0.0,
                                say=quiet)
    assert t.run() == "finished"
    assert (t.cfg.train.min_lr, t.cfg.train.lr) == (0.002, 0.003)
    errors = [e.message for e in t.snapshot().events if e.kind == "error"]
    assert errors == ["set train.lr: train.min_lr = 0.002: must be between 0 and train.lr (0.001) "
                      "(requested by test; not applied)"]


def test_a_group_is_applied_together_at_one_step(make_cfg, tmp_path):
    holder = {}

    def publish(snap):
        if snap.step >= 2 and "asked" not in holder:
            holder["asked"] = True  # lowering both: lr alone would be under the old min_lr (0.0003)
            holder["tutor"].set_settings([("train.lr", "1e-4"), ("train.min_lr", "1e-5")], by="test")
    t = holder["tutor"] = Tutor(make_cfg("train.steps=5"), tmp_path / "r", publish=publish, publish_every=0.0,
                                say=quiet)
    assert t.run() == "finished"
    assert (t.cfg.train.lr, t.cfg.train.min_lr) == (1e-4, 1e-5)
    said = {e.message: e.step for e in t.snapshot().events if e.message.startswith("set ")}
    assert list(said) == ["set train.lr 0.003 -> 0.0001 by test", "set train.min_lr 0.0003 -> 1e-05 by test"]
    assert len(set(said.values())) == 1  # the same step


def test_changes_survive_a_save_and_resume_bit_identically(make_cfg, tmp_path):
    S, K = 16, 7
    straight = tmp_path / "straight"
    holder, publish = change_at(K, CHANGES)
    t = holder["tutor"] = Tutor(make_cfg(f"train.steps={S}"), straight, publish=publish, publish_every=0.0,
                                say=quiet)
    assert t.run() == "finished"

    split = tmp_path / "split"
    holder, publish = change_at(K, CHANGES, then=("request_save", "stop"))
    t = holder["tutor"] = Tutor(make_cfg(f"train.steps={S}"), split, publish=publish, publish_every=0.0, say=quiet)
    assert t.run() == "stopped" and t.step_count == K
    cfg, _ = prepare_run(argparse.Namespace(run=None, run_dir=str(split), resume=True, config=None, overrides=[]))
    assert cfg.train.lr == 0.004 and cfg.train.weight_decay == 0.5  # the save's meta holds the effective config
    t2 = Tutor(cfg, split, resume=True, say=quiet)
    assert t2.snapshot().overrides["train.lr"] == 0.004
    assert t2.run() == "finished"
    a, b = metrics(straight), metrics(split)
    assert [m["step"] for m in b] == list(range(1, S + 1))
    for key in ("loss", "grad_norm", "lr", "val_loss"):
        assert [m[key] for m in a] == [m[key] for m in b], key


# --- over the control socket: babyllm ctl RUN set KEY=VALUE ----------------------------------------


@pytest.mark.slow
def test_ctl_set_changes_a_live_run_and_a_refusal_exits_1(make_cfg, tmp_path, capsys):

    run = tmp_path / "run"
    t = Tutor(make_cfg("train.steps=0", "train.save_every=0"), run, say=quiet, publish_every=0.0)
    th = threading.Thread(target=t.run, daemon=True)
    th.start()
    try:
        wait_for(lambda: is_live(run) and t.step_count > 2)
        assert cli_main(["ctl", str(run), "set", "train.lr=0.0015", "chat.temperature=0.5"]) == 0
        assert capsys.readouterr().out.startswith("set: asked ")
        who = f"ctl (pid {os.getpid()})"
        wait_for(lambda: f"set train.lr 0.003 -> 0.0015 by {who}" in [e.message for e in t.snapshot().events])
        wait_for(lambda: t.snapshot().overrides == {"train.lr": 0.0015, "chat.temperature": 0.5})
        assert cli_main(["ctl", str(run), "status"]) == 0
        assert "set train.lr=0.0015 chat.temperature=0.5" in capsys.readouterr().out
        assert cli_main(["ctl", str(run), "set", "train.batch=8"]) == 1
        err = capsys.readouterr().err
        assert "train.batch cannot change mid-run: it shapes the batches" in err and "Traceback" not in err
        assert cli_main(["ctl", str(run), "set", "train.lr=fast"]) == 1
        assert "train.lr = 'fast': expected float" in capsys.readouterr().err
        assert t.cfg.train.batch != 8 and t.cfg.train.lr == 0.0015
    finally:
        t.stop()
        th.join(30)


# --- several ranks --------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_ranks_apply_a_change_at_the_same_step_running_and_paused(corpus, cache, tmp_path):
    """Rank 0 hears the change; both ranks must apply it after the same step, or their weights part (a
    rank on the old rate or decay) and the curve leaves that of one process making the same change."""
    from test_distributed import assert_same_curve, common, finish, launch, losses


    procs = launch(tmp_path, common(corpus, cache, "--run-dir", "run", "--steps", "0"))
    run = tmp_path / "r0" / "run"
    try:
        wait_for(lambda: is_live(run, timeout=0.5) or any(p.poll() is not None for p in procs), timeout=60)
        with ControlClient(run, name="ranks") as c:
            wait_for(lambda: c.status().step >= 3)
            c.call("set", settings={"train.lr": 0.02})
            wait_for(lambda: c.status().overrides.get("train.lr") == 0.02)
            at = c.status().step
            wait_for(lambda: c.status().step >= at + 3)
            c.call("pause")
            wait_for(lambda: c.status().state == "paused")
            c.call("set", settings={"train.weight_decay": "0.5"})  # (applied while paused: the heartbeat)
            wait_for(lambda: c.status().overrides.get("train.weight_decay") == 0.5)
            c.call("resume")
            paused_at = c.status().step
            wait_for(lambda: c.status().step >= paused_at + 4)
            c.call("stop")
        (rc0, _, err0), (rc1, out1, err1) = finish(procs, timeout=60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
    assert rc0 == 0 and rc1 == 0, (err0, err1)
    assert out1 == "" and err1 == ""
    said = [json.loads(x) for x in (run / "events.jsonl").read_text().splitlines()]
    steps = {e["message"].split(" by ")[0]: e["step"] for e in said if e["message"].startswith("set ")}
    lr_step, wd_step = steps["set train.lr 0.003 -> 0.02"], steps["set train.weight_decay 0.1 -> 0.5"]
    got = losses(run)
    stopped = got[-1]["step"]
    assert wd_step < stopped and lr_step < wd_step

    # One process, global batch 8 (the same arguments, as test_distributed's straight run), the same changes.
    cfg = load_config("tiny", [f"data.cache_dir={cache}", "train.warmup=50", "stats.print_every=0.2",
                               "train.batch=8", "train.steps=0"])
    cfg.data.corpus = str(corpus.resolve())
    plan = {lr_step: ("set", "train.lr", "0.02"), wd_step: ("set", "train.weight_decay", "0.5"),
            stopped: ("stop",)}
    done: set[int] = set()

    def publish(snap):
        if snap.step in plan and snap.step not in done:
            done.add(snap.step)
            what = plan[snap.step]
            t.set_settings([what[1:]], by="test") if what[0] == "set" else t.stop()
    t = Tutor(cfg, tmp_path / "one", publish=publish, publish_every=0.0, say=quiet)
    assert t.run() == "stopped"
    assert_same_curve(got, losses(tmp_path / "one"))


# --- the set op, on a stand-in control (no model: the protocol alone) -------------------------------


def test_the_set_op_replies_ok_or_the_reason(served):
    run, fake, _ = served
    with ControlClient(run, name="probe") as c:
        assert c.request("set", settings={"train.lr": 0.002}) == {"ok": True, "id": 1}
        assert c.request("set", settings={"chat.top_k": "7"})["ok"] is True
        assert c.status().overrides == {"train.lr": 0.002, "chat.top_k": 7}
        assert fake.asked_by[-2:] == [f"probe (pid {os.getpid()})"] * 2
        refused = c.request("set", settings={"train.lr": 0.001, "model.embed": 64})
        assert refused["ok"] is False and refused["error"].startswith(
            "model.embed cannot change mid-run: it shapes the model")
        assert c.status().overrides["train.lr"] == 0.002  # (none of a refused request is applied)
        bad = c.request("set", settings={"train.warmup": 1.5})
        assert bad["ok"] is False and "train.warmup = 1.5: expected int, got float" in bad["error"]
        for malformed in ({}, {"settings": {}}, {"settings": [["train.lr", 1]]}, {"settings": {"train.lr": None}},
                          {"key": "train.lr", "value": 0.1}):
            reply = c.request("set", **malformed)
            assert reply["ok"] is False and 'set needs {"settings": {"section.key": value, ...}}' in reply["error"]


# --- the cockpit's keys ------------------------------------------------------------------------------


async def test_the_cockpit_halves_and_doubles_the_learning_rate():
    from runhelpers import plain
    from test_tui import SMALL, make_app, started
    from textual.widgets import Static

    app, made = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        fake: FakeTutor = made["tutor"]
        base = fake.snapshot().settings[live.LR]
        await pilot.press("greater_than_sign")
        assert fake.overrides == {live.LR: base * 2} and fake.calls[-1] == "set_settings"
        fake.step += 1  # the run's next step's snapshot shows the new rate
        app.post_message(SnapshotReady(fake.snapshot()))
        await pilot_wait(pilot, lambda: app.snapshot.settings[live.LR] == base * 2)
        bands = app.query_one("#stats-bands", Static)
        await pilot_wait(pilot, lambda: f"set mid-run: {live.LR}={base * 2:g}" in plain(bands))  # (the stats pane)
        await pilot.press("less_than_sign")
        assert fake.overrides == {live.LR: base}
        assert f"set {live.LR}={float(base)!r} requested" in "\n".join(app.pane("events").lines)


async def test_the_palette_sets_any_live_setting_by_typing_or_through_the_form():
    from test_tui import SMALL, make_app, started

    from tui.screens import SettingScreen

    app, made = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        fake: FakeTutor = made["tutor"]
        await pilot.press("ctrl+p", *"set lr 5e-4")  # a bare name that one live key ends in
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot_wait(pilot, lambda: fake.overrides == {live.LR: 5e-4})
        await pilot.press("ctrl+p", *"set top_k=7 min_lr=1e-5")  # several, applied together
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot_wait(pilot, lambda: fake.overrides == {live.LR: 5e-4, "chat.top_k": 7, "train.min_lr": 1e-5})
        await pilot.press("ctrl+p", *"set batch 4")  # refused with the reason, nothing applied
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot.pause(0.2)
        assert "train.batch" not in fake.overrides
        await pilot.press("ctrl+p", *"set warmup")  # a key without a value: the form, on that key
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot_wait(pilot, lambda: isinstance(app.screen, SettingScreen))
        value = app.screen.query_one("#setting-value")
        assert value.value == str(fake.snapshot().settings["train.warmup"])  # (what it is now, to edit)
        value.value = ""
        await pilot.press(*"17", "enter")
        await pilot_wait(pilot, lambda: fake.overrides.get("train.warmup") == 17)
        assert not isinstance(app.screen, SettingScreen)


async def test_a_viewer_refuses_the_learning_rate_keys():
    from test_tui import SMALL, make_app, started

    app, made = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        app.viewer = True  # (as --watch: the keys stay bound, hidden, and answer with the refusal)
        await pilot.press("greater_than_sign")
        assert made["tutor"].overrides == {}
