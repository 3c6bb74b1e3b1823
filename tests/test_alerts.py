"""Alerts: each rule on synthetic series (fires once, re-arms, and does not fire on noise, a short plateau
or in warm-up), the [alerts] config, the user command, the Tutor's stall watchdog and pause, and the cockpit
(banner, bell, event, pause) and viewer end to end."""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from babyllm.config import AlertsConfig, load_config
from babyllm.errors import ConfigError
from babyllm.run import runfiles
from babyllm.run.follower import Watcher
from babyllm.school.alerts import COMMAND_ENV, RULES, Alert, Alerts, Commands, run_command
from babyllm.school.tutor import Tutor
from tui.app import CockpitApp
from tui.widgets.status import StatusBar

sys.path.insert(0, str(Path(__file__).parent))
from runhelpers import append, line, pilot_wait  # noqa: E402

OFF = {r.keys[0]: 0 for r in RULES}


def only(**kw: float) -> Alerts:
    """Alerts with every rule off but those whose keys are given."""
    return Alerts(AlertsConfig(**{**OFF, **kw}))  # type: ignore[arg-type]


def feed_steps(alerts: Alerts, key: str, values: list[float]) -> list[tuple[int, Alert]]:
    return [(i, a) for i, v in enumerate(values) for a in alerts.step(i, {key: v})]


def feed_vals(alerts: Alerts, vals: list[float], train: list[float] | None = None) -> list[tuple[int, Alert]]:
    train = train or [0.0] * len(vals)
    return [(i, a) for i, (v, t) in enumerate(zip(vals, train, strict=True)) for a in alerts.validation(i, v, t)]


# --- the rules -----------------------------------------------------------------------------------


def test_the_rules_table_names_real_config_keys_and_defaults_turn_the_cheap_rules_on():
    fields = set(vars(AlertsConfig()))
    for rule in RULES:
        assert set(rule.keys) <= fields, rule.name
    assert set(Alerts(AlertsConfig()).rules) >= {"divergence", "plateau", "stall"}
    assert only().rules == []


def test_divergence_fires_once_on_a_rise_and_rearms_after_recovery():
    a = only(divergence_pct=50, divergence_steps=10)
    losses = [4.0] * 30 + [7.0] * 30 + [4.0] * 30 + [7.0] * 30
    fired = feed_steps(a, "loss", losses)
    assert [a.rule for _, a in fired] == ["divergence", "divergence"]
    first, second = fired[0][0], fired[1][0]
    assert 30 < first < 40 and 90 < second < 100  # once the 10-step mean is 50% up; again only after clearing
    assert "divergence" in fired[0][1].message and "alerts.divergence_pct = 50" in fired[0][1].message


def test_divergence_ignores_noise_inside_the_threshold_and_its_warmup():
    rng = random.Random(3)
    a = only(divergence_pct=50, divergence_steps=10)
    assert feed_steps(a, "loss", [4.0 * (1 + rng.uniform(-0.3, 0.3)) for _ in range(500)]) == []
    short = only(divergence_pct=50, divergence_steps=10)  # a jump inside the first window: no baseline yet
    assert feed_steps(short, "loss", [1.0, 1.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0, 9.0]) == []
    assert feed_steps(only(divergence_pct=50, divergence_steps=10), "loss", [float("nan")] * 50) == []


def test_plateau_fires_after_k_evaluations_without_a_new_best_and_rearms_on_a_new_best():
    a = only(plateau_evals=3)
    fired = feed_vals(a, [5.0, 4.0, 4.1, 4.2, 4.0, 4.3, 4.4, 3.9, 4.0, 4.0, 4.0, 4.0])
    assert [i for i, _ in fired] == [4, 10]  # 3 evaluations after 4.0 (a tie is no new best); again after 3.9
    assert "in 3 evaluations (best 4.0000" in fired[0][1].message


def test_plateau_shorter_than_k_does_not_fire():
    a = only(plateau_evals=3)
    assert feed_vals(a, [5.0, 5.1, 5.2, 4.9, 5.0, 5.0, 4.8, 4.9, 4.9, 4.7]) == []


def test_overfit_fires_when_the_gap_is_above_g_and_growing():
    a = only(overfit_gap=0.5, overfit_evals=3)
    val = [3.0, 3.0, 3.1, 3.2, 3.3, 3.4, 3.5]
    train = [3.0, 2.8, 2.6, 2.5, 2.4, 2.3, 2.2]  # gaps 0, .2, .5, .7, .9, 1.1, 1.3
    fired = feed_vals(a, val, train)
    assert [i for i, _ in fired] == [3]  # the gap .7 > .5 after three rises in a row; once only
    assert "0.700 (> alerts.overfit_gap = 0.5)" in fired[0][1].message


def test_overfit_does_not_fire_on_a_large_but_steady_or_noisy_gap():
    a = only(overfit_gap=0.5, overfit_evals=3)
    val = [4.0, 4.1, 4.0, 4.1, 4.0, 4.1, 4.0, 4.1]
    assert feed_vals(a, val, [3.0] * len(val)) == []  # gap ~1 but not growing
    b = only(overfit_gap=2.0, overfit_evals=2)
    assert feed_vals(b, [3.0, 3.2, 3.4, 3.6], [3.0] * 4) == []  # growing but under G


def test_stall_fires_once_per_stall_and_not_while_unwatched():
    a = only(stall_seconds=10)
    seconds = [1, 5, 9.9, 10, 30, 60, 0.1, None, None, 2, 11]
    fired = [i for i, s in enumerate(seconds) for _ in a.clock(i, s)]
    assert fired == [3, 10]
    b = only(stall_seconds=10)
    assert [x for s in (None,) * 20 for x in b.clock(0, s)] == []  # paused for ever: never a stall


def test_throughput_drop_fires_after_warmup_and_ignores_noise_and_single_slow_steps():
    rng = random.Random(5)
    a = only(throughput_drop=0.5, throughput_steps=5)
    rates = [1000 * (1 + rng.uniform(-0.2, 0.2)) for _ in range(100)]
    rates[50] = rates[70] = 10.0  # a save or a GC pause: one slow step is not a drop
    assert feed_steps(a, "tokens_per_s", rates) == []
    fired = feed_steps(a, "tokens_per_s", [300.0] * 20)
    assert len(fired) == 1 and "throughput drop" in fired[0][1].message
    warm = only(throughput_drop=0.5, throughput_steps=5)  # a drop during warm-up (compiling, caches) is not
    assert feed_steps(warm, "tokens_per_s", [1000.0] * 5 + [100.0] * 15) == []


# --- the config ----------------------------------------------------------------------------------


@pytest.mark.parametrize("item, says", [
    ("alerts.throughput_drop=1.5", "alerts.throughput_drop = 1.5: must be in [0, 1)"),
    ("alerts.plateau_evals=-1", "alerts.plateau_evals = -1: must be a whole number 0..1000000 (0 = off)"),
    ("alerts.command=\"notify-send 'oops\"", "No closing quotation; fix its quoting"),
    ("alerts.pause=3", "alerts.pause = 3: expected bool"),
    ("alerts.action=halt", "alerts.action = 'halt': use \"none\", \"pause\" (until resumed) or \"stop\""),
    ("alerts.stal_seconds=3", "unknown key 'alerts.stal_seconds' (did you mean 'stall_seconds'?)"),
])
def test_bad_alert_settings_are_one_line_errors(item, says):
    with pytest.raises(ConfigError) as e:
        load_config("tiny", [item])
    assert says in str(e.value) and "\n" not in str(e.value)


def test_the_older_pause_key_means_action_pause_and_is_not_written_back():
    assert load_config("tiny").alerts.action == "none"
    assert load_config("tiny", ["alerts.pause=true"]).alerts.action == "pause"
    assert load_config("tiny", ["alerts.action=stop", "alerts.pause=false"]).alerts.action == "stop"
    assert "pause" not in load_config("tiny", ["alerts.pause=true"]).to_dict()["alerts"]  # one key from now on


# --- the user command ----------------------------------------------------------------------------


def argv_writer(tmp_path: Path) -> tuple[str, Path]:
    out = tmp_path / "argv.json"
    script = tmp_path / "write_argv.py"
    script.write_text("import json, os, sys\n"
                      f"json.dump([sys.argv[1:], os.environ['{COMMAND_ENV}']], open({str(out)!r}, 'w'))\n")
    return f"{sys.executable} {script} --topic 'my runs'", out


def test_the_command_gets_the_text_as_one_argument_and_in_the_environment_without_a_shell(tmp_path):
    command, out = argv_writer(tmp_path)
    text = "plateau: $(touch pwned); `rm -rf x` && echo hi"
    failures: list[str] = []
    run_command(command, text, 10, failures.append).join(10)
    assert json.loads(out.read_text()) == [["--topic", "my runs", text], text]
    assert failures == [] and not Path("pwned").exists()


def test_a_failing_missing_or_slow_command_is_one_line(tmp_path):
    failures: list[str] = []
    run_command(f"{sys.executable} -c 'import sys; sys.exit(\"no network\")'", "x", 10, failures.append).join(10)
    run_command("/no/such/notifier", "x", 10, failures.append).join(10)
    started = time.monotonic()
    thread = run_command(f"{sys.executable} -c 'import time; time.sleep(30)'", "x", 0.3, failures.append)
    assert thread.is_alive()  # in the background: the caller never waits
    thread.join(10)
    assert time.monotonic() - started < 10
    assert failures[0] == f"alerts.command '{sys.executable}' exited 1: no network"
    assert failures[1].startswith("alerts.command '/no/such/notifier' did not start:")
    assert failures[2] == f"alerts.command '{sys.executable}' killed after 0.3 s (alerts.command_timeout)"
    assert all("\n" not in f for f in failures)


# --- the Tutor -----------------------------------------------------------------------------------


def events(run_dir: Path, kind: str) -> list[dict]:
    path = run_dir / runfiles.EVENTS_FILE
    if not path.exists():
        return []
    return [r for r in map(json.loads, path.read_text().splitlines()) if r["kind"] == kind]


def wait(condition, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def quiet(*extra: str) -> list[str]:
    return [f"alerts.{k}=0" for k in OFF] + ["train.save_every=0", *extra]


def test_a_hung_step_raises_one_stall_alert_from_the_watchdog_and_a_pause_never_does(make_cfg, tmp_path):
    cfg = make_cfg(*quiet("alerts.stall_seconds=0.3", "train.eval_every=1000", "train.sample_every=1000"))
    tutor = Tutor(cfg, tmp_path / "run", say=lambda _m: None)
    release, hung = threading.Event(), threading.Event()
    real_step = tutor.stepper.step

    def step(overlap=False):  # the 5th step hangs (a stuck data loader, a dead collective) until released
        if tutor.step_count == 4 and not release.is_set():
            hung.set()
            release.wait(10)
        return real_step(overlap)

    tutor.stepper.step = step  # type: ignore[method-assign]
    thread = threading.Thread(target=tutor.run)
    thread.start()
    try:
        wait(lambda: events(tutor.run_dir, "alert"))
        assert hung.is_set() and tutor.step_count == 4  # raised while the step is still stuck
        [alert] = events(tutor.run_dir, "alert")
        assert alert["message"].startswith("stall: no training step for 0.")
        assert alert["message"].endswith(" s (alerts.stall_seconds = 0.3)")
        time.sleep(0.5)
        assert len(events(tutor.run_dir, "alert")) == 1  # one stall, one alert
        release.set()
        wait(lambda: tutor.step_count > 6)
        tutor.pause()
        wait(lambda: tutor.state == "paused")
        time.sleep(0.8)  # paused far longer than stall_seconds
        assert len(events(tutor.run_dir, "alert")) == 1
    finally:
        release.set()
        tutor.stop()
        thread.join(30)
    assert tutor.state == "stopped"


def test_pause_true_pauses_the_run_and_runs_the_command(make_cfg, tmp_path):
    command, out = argv_writer(tmp_path)
    cfg = make_cfg(*quiet("alerts.plateau_evals=1", "train.eval_every=1", "train.lr=1e-12", "train.min_lr=0",
                          "alerts.pause=true", f"alerts.command={json.dumps(command)}"))
    tutor = Tutor(cfg, tmp_path / "run", say=lambda _m: None)
    thread = threading.Thread(target=tutor.run)
    thread.start()
    try:
        wait(lambda: tutor.state == "paused")
        stopped_at = tutor.step_count
        [alert] = events(tutor.run_dir, "alert")
        assert alert["message"].startswith("plateau: no new best validation loss in 1 evaluations")
        assert alert["step"] == stopped_at == 1  # (lr 1e-12: the validation loss does not move)
        wait(out.exists)
        assert json.loads(out.read_text()) == [["--topic", "my runs", alert["message"]], alert["message"]]
        assert any(e["message"] == "pause requested by alert (plateau)" for e in events(tutor.run_dir, "info"))
    finally:
        tutor.stop()
        thread.join(30)


def test_action_stop_saves_and_ends_the_run_like_early_stopping(make_cfg, tmp_path):
    cfg = make_cfg(*quiet("alerts.plateau_evals=2", "train.eval_every=2", "train.lr=1e-12", "train.min_lr=0",
                          "alerts.action=stop", "train.steps=50"))
    tutor = Tutor(cfg, tmp_path / "run", say=lambda _m: None)
    assert tutor.run() == "stopped"  # long before train.steps
    [alert] = events(tutor.run_dir, "alert")
    assert alert["message"].startswith("plateau:") and tutor.step_count == alert["step"] == 4
    assert any(e["message"] == "stop requested by alert (plateau)" for e in events(tutor.run_dir, "info"))
    assert runfiles.latest_step(tutor.run_dir) == 4  # saved on the way out: --resume continues it


# --- what a command forks, and what it writes, stays bounded (issue 25, item 14) ---------------------------


def alive(pid: int) -> bool:
    """A process that exists and is not a zombie (a killed orphan may wait for a reaper that never comes)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def forker(tmp_path: Path, detach: bool) -> tuple[str, Path]:
    """A command that leaves a grandchild sleeping: detached from its stderr (the command ends at once) or not."""
    pidfile = tmp_path / "grandchild.pid"
    script = tmp_path / "forker.py"
    script.write_text(textwrap.dedent(f"""
        import subprocess, sys, time
        out = subprocess.DEVNULL if {detach} else None
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"], stdout=out, stderr=out)
        open({str(pidfile)!r}, "w").write(str(child.pid))
        {"" if detach else "time.sleep(300)"}
    """))
    return f"{sys.executable} {script}", pidfile


def test_a_command_that_forks_is_killed_with_what_it_forked_at_its_timeout(tmp_path):
    command, pidfile = forker(tmp_path, detach=False)
    failures: list[str] = []
    run_command(command, "x", 1.5, failures.append).join(30)
    assert failures == [f"alerts.command '{sys.executable}' killed after 1.5 s (alerts.command_timeout)"]
    wait(lambda: not alive(int(pidfile.read_text())), timeout=10)


def test_what_a_command_forked_is_killed_when_the_run_ends(tmp_path):
    command, pidfile = forker(tmp_path, detach=True)
    commands = Commands()
    failures: list[str] = []
    commands.run(command, "x", 30, failures.append).join(30)  # the command itself is done at once ...
    grandchild = int(pidfile.read_text())
    assert failures == [] and alive(grandchild)  # ... what it forked is not
    commands.close(grace=0.2)
    wait(lambda: not alive(grandchild), timeout=10)


def test_a_run_that_ends_kills_what_its_alert_command_forked(make_cfg, tmp_path):
    command, pidfile = forker(tmp_path, detach=True)
    cfg = make_cfg(*quiet("alerts.plateau_evals=1", "train.eval_every=1", "train.lr=1e-12", "train.min_lr=0",
                          "train.steps=4", f"alerts.command={json.dumps(command)}"))
    assert Tutor(cfg, tmp_path / "run", say=lambda _m: None).run() == "finished"
    wait(pidfile.exists)
    wait(lambda: not alive(int(pidfile.read_text())), timeout=10)


def test_a_command_flooding_its_stderr_costs_a_bounded_tail():
    flood = (f"{sys.executable} -c 'import sys; [sys.stderr.write(\"x\" * 1048575 + \"\\n\") for _ in range(300)];"
             f" sys.stderr.write(\"the last line\\n\"); sys.exit(3)'")
    code = textwrap.dedent(f"""
        import resource
        from babyllm.school.alerts import run_command
        failures = []
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        run_command({flood!r}, "x", 120, failures.append).join(120)
        print(failures[0])
        print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
    """)
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    failure, grew_kib = r.stdout.strip().splitlines()
    assert failure == f"alerts.command '{sys.executable}' exited 3: the last line"
    assert int(grew_kib) < 64 * 1024  # 300 MB went through; a few KB were kept


# --- the cockpit and the viewer ------------------------------------------------------------------


def status_text(app: CockpitApp) -> str:
    return str(app.query_one(StatusBar).render())


async def test_cockpit_alert_banner_bell_event_and_pause(make_cfg, tmp_path, monkeypatch):
    cfg = make_cfg(*quiet("alerts.plateau_evals=1", "train.eval_every=1", "train.lr=1e-12", "train.min_lr=0",
                          "alerts.pause=true"))
    run_dir = tmp_path / "run"
    app = CockpitApp(lambda publish, say: Tutor(cfg, run_dir, publish=publish, say=say), handle_signals=False)
    bells: list[int] = []
    monkeypatch.setattr(app, "bell", lambda: bells.append(1))
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot_wait(pilot, lambda: app.snapshot is not None and app.snapshot.state == "paused")
        await pilot_wait(pilot, lambda: "plateau" in status_text(app))
        banner = status_text(app)
        assert "PAUSED" in banner and "a ⚠ plateau: no new best validation loss in 1 evaluations" in banner
        assert bells == [1]
        assert any(t.startswith("      1 alert      plateau:") for t in app.pane("events").lines)  # type: ignore[attr-defined]
        [alert] = events(run_dir, "alert")
        assert alert["step"] == app.tutor.step_count == 1
        await pilot.press("a")  # dismissed: the status line is the plain one again
        await pilot_wait(pilot, lambda: "plateau" not in status_text(app))
        assert "PAUSED" in status_text(app)
        await pilot.press("q", "y")
        await pilot_wait(pilot, lambda: not app.is_running)
    assert app.join_tutor(timeout=20)


async def test_viewer_shows_an_alert_from_the_run_files_with_a_banner_and_a_bell(tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    made: dict = {}

    def factory(publish, say):
        made["w"] = Watcher(run, publish=publish, say=say, poll=0.05)
        return made["w"]

    app = CockpitApp(factory, viewer=True, handle_signals=False)
    bells: list[int] = []
    monkeypatch.setattr(app, "bell", lambda: bells.append(1))
    async with app.run_test(size=(100, 30)) as pilot:
        append(run / runfiles.METRICS_FILE, "".join(line(s) for s in range(1, 11)))
        await pilot_wait(pilot, lambda: app.snapshot is not None and app.snapshot.step == 10)
        text = "divergence: the loss (mean of the last 100 steps) is 6.1000, 61% above its lowest 3.8000"
        append(run / runfiles.EVENTS_FILE, json.dumps({"step": 10, "kind": "alert", "message": text,
                                                       "time": time.time()}) + "\n")
        await pilot_wait(pilot, lambda: "divergence" in status_text(app))
        assert bells == [1]
        assert any(text in t for t in app.pane("events").lines)  # type: ignore[attr-defined]
        await pilot.press("a")
        await pilot_wait(pilot, lambda: "divergence" not in status_text(app))


def test_headless_prints_the_alert_line(make_cfg, corpus, cache, tmp_path, capsys):
    from babyllm.commands.cli import main as cli_main

    run = tmp_path / "run"
    sets = quiet("alerts.plateau_evals=1", "train.eval_every=1", "train.lr=1e-12", "train.min_lr=0",
                 f"data.cache_dir={cache}")
    assert cli_main(["train", "--config", "tiny", "--corpus", str(corpus), "--steps", "2", "--run-dir", str(run),
                     *[x for s in sets for x in ("--set", s)]]) == 0
    out = capsys.readouterr().out
    assert "[alert] step 1: plateau: no new best validation loss in 1 evaluations (best " in out
    assert "finished at step 2" in out


def test_the_readme_table_lists_every_alerts_key_with_its_default():
    readme = (Path(__file__).parent.parent / "README.md").read_text(encoding="utf-8")
    table = readme.split("| key (default) | rule |", 1)[1].split("\n\n", 1)[0]
    shown = dict(re.findall(r"`(\w+)` \(([^):]+)", table))

    def text(v: object) -> str:
        return json.dumps(v) if isinstance(v, (bool, str)) else str(v)

    assert shown == {k: text(v) for k, v in vars(AlertsConfig()).items()}
