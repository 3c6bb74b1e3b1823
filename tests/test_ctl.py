"""`babyllm ctl` and `babyllm runs`: argument errors, exit codes, round trips with a live run, the runs table."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from runhelpers import append, line, wait_for, write_save

from babyllm.commands.cli import main as cli_main
from babyllm.commands.ctl import ACTIONS
from babyllm.run import runfiles
from babyllm.run.listing import list_runs
from babyllm.run.runfiles import Header, write_header
from babyllm.socket import wire
from babyllm.socket.client import RunRefused, is_live

ROOT = Path(__file__).resolve().parents[1]


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    rc = cli_main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def one_line(text: str) -> str:
    assert text.endswith("\n") and text.count("\n") == 1, repr(text)
    return text.strip()


def stopped_run(d: Path, steps: int = 30, config: str = "tiny", started: float = 1_000.0) -> Path:
    """A run directory as a finished process leaves it: header, metrics with validations, a save."""
    d.mkdir(parents=True)
    write_header(d, Header(config_name=config, device="cpu", started=started))
    for step in range(1, steps + 1):
        append(d / runfiles.METRICS_FILE, line(step, val_loss=3.0 - step / 100 if step <= 20 else 2.9))
    write_save(d, steps)
    return d


# --- a stand-in peer, for what a single-process run never says ---------------------------------------


@contextlib.contextmanager
def fake_run(run_dir: Path, answer):
    """A socket at the run's control.sock answering each request with answer(request) (wire's lines)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_header(run_dir, Header(config_name="tiny", device="cpu", pid=4242))
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(run_dir / runfiles.CONTROL_SOCKET))
    server.listen()
    done = threading.Event()

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn, conn.makefile("rb") as lines:
                for raw in lines:
                    req = wire.decode(raw.rstrip(b"\n"))
                    conn.sendall(wire.encode({"id": req["id"], **answer(req)}))

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        yield
    finally:
        done.set()
        with contextlib.suppress(OSError):
            server.shutdown(socket.SHUT_RDWR)  # wakes the accept()
        server.close()
        th.join(5)
        (run_dir / runfiles.CONTROL_SOCKET).unlink(missing_ok=True)


def hello_then(reply: dict, protocol: int = wire.PROTOCOL):
    def answer(req: dict) -> dict:
        if req["op"] == "hello":
            return {"ok": True, "pid": 4242, "run_dir": "x", "world_size": 2, "protocol": protocol}
        return reply
    return answer


# --- argument errors and no live run ---------------------------------------------------------------


def test_actions_come_from_the_wire_protocol():
    assert ("status", *wire.CONTROL_OPS, wire.SET_OP) == ACTIONS


def test_a_bad_run_dir_is_one_line_and_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out, err = run_cli(capsys, "ctl", str(tmp_path / "nope"), "status")
    assert rc == 2 and out == "" and "nope: no such run directory" in one_line(err)
    save = write_save(tmp_path / "run", 10)
    rc, _, err = run_cli(capsys, "ctl", str(save), "pause")
    assert rc == 2 and "is one save folder; name its run directory: RUN" in one_line(err)
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("hi")
    rc, _, err = run_cli(capsys, "ctl", "plain", "status")
    assert rc == 2 and "not a babyllm run" in one_line(err)
    # A run name under runs/: a missing one names the runs there.
    stopped_run(tmp_path / "runs" / "alpha")
    rc, _, err = run_cli(capsys, "ctl", "beta", "status")
    assert rc == 2 and "runs in runs/: alpha" in one_line(err)
    rc, out, _ = run_cli(capsys, "ctl", "beta", "status", "--json")
    assert rc == 2 and "no such run directory" in json.loads(one_line(out))["error"]


def test_an_unknown_action_is_argparse_s_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        cli_main(["ctl", str(tmp_path), "explode"])
    assert e.value.code == 2 and "invalid choice: 'explode'" in capsys.readouterr().err


def test_no_live_run_is_exit_2_with_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = stopped_run(tmp_path / "runs" / "done")
    for target in ("done", str(run)):
        rc, out, err = run_cli(capsys, "ctl", target, "pause")
        assert rc == 2 and out == "" and "no live run answers" in one_line(err)
    rc, out, err = run_cli(capsys, "ctl", "done", "status", "--json")
    assert rc == 2 and err == ""
    assert json.loads(one_line(out)) == {"ok": False, "error": f"{Path('runs/done')}: no live run answers "
                                         "(nothing is training it, or its process was killed)"}
    # A socket file left by a killed process: nothing listens, the same answer.
    left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    left.bind(str(run / runfiles.CONTROL_SOCKET))
    left.close()
    rc, _, err = run_cli(capsys, "ctl", str(run), "status")
    assert rc == 2 and "no live run answers" in one_line(err)
    rc, _, err = run_cli(capsys, "ctl", str(run), "status", "--wait")
    assert rc == 2 and "--wait goes with pause or stop, not status" in one_line(err)
    rc, _, err = run_cli(capsys, "ctl", str(run), "pause", "--timeout", "3")
    assert rc == 2 and one_line(err) == "error: --timeout goes with --wait"


@contextlib.contextmanager
def endpoint(run_dir: Path, control, world_size: int = 1):
    """The real control endpoint serving `control` (a FakeTutor, a Watcher) in run_dir."""
    from babyllm.socket.endpoint import Endpoint

    run_dir.mkdir(parents=True, exist_ok=True)
    write_header(run_dir, Header(config_name="tiny", device="cpu", pid=os.getpid()))
    server = Endpoint(run_dir, control, world_size=world_size)
    server.start()
    try:
        yield server
    finally:
        server.close()


def test_a_refusal_is_exit_1(tmp_path, capsys):
    from babyllm.control import refusal
    from tui.fake import FakeTutor

    run = tmp_path / "run"
    with endpoint(run, FakeTutor(), world_size=2):  # a run on two ranks cannot roll back
        why = refusal("rollback", 2)
        rc, out, err = run_cli(capsys, "ctl", str(run), "rollback")
        assert rc == 1 and out == "" and one_line(err) == f"error: {why}"
        rc, out, err = run_cli(capsys, "ctl", str(run), "rollback", "--json")
        assert rc == 1 and err == "" and json.loads(one_line(out)) == {"ok": False, "error": why}
        rc, out, _ = run_cli(capsys, "ctl", str(run), "status")
        assert rc == 0 and f"pid {os.getpid()} (2 ranks)" in one_line(out)


def test_a_foreign_protocol_is_exit_2(tmp_path, capsys):
    run = tmp_path / "run"
    with fake_run(run, hello_then({"ok": True}, protocol=99)):
        rc, _, err = run_cli(capsys, "ctl", str(run), "status")
        assert rc == 2 and "speaks control protocol 99, this babyllm speaks 1" in one_line(err)


def test_pause_wait_gives_up_with_exit_1(tmp_path, capsys):
    from babyllm.run.follower import Watcher

    run = tmp_path / "run"
    with endpoint(run, Watcher(run)):  # a control that never pauses (a viewer's)
        t0 = time.monotonic()
        rc, _, err = run_cli(capsys, "ctl", str(run), "pause", "--wait", "--timeout", "0.3")
        assert rc == 1 and "still waiting at step 0 after 0.3s of --wait" in one_line(err)
        assert time.monotonic() - t0 < 5


def test_ctl_and_runs_import_no_torch(tmp_path):
    code = ("import sys; from babyllm.commands.cli import main; "
            f"codes = main(['runs', '--root', {str(tmp_path)!r}]), main(['ctl', {str(tmp_path)!r}, 'status']); "
            "assert codes == (0, 2), codes; assert 'torch' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=60, capture_output=True)


def test_exit_codes_are_one_table():
    from babyllm.errors import CheckpointError, exit_code
    from babyllm.socket.client import NoLiveRun

    assert [exit_code(e) for e in (RunRefused("x"), NoLiveRun("x"), CheckpointError("x"))] == [1, 2, 2]


# --- babyllm runs over files -----------------------------------------------------------------------


def test_runs_without_runs_is_a_one_line_hint(tmp_path, capsys):
    for root in (tmp_path / "missing", tmp_path):
        rc, out, _ = run_cli(capsys, "runs", "--root", str(root))
        assert rc == 0 and "no runs in" in one_line(out) and "babyllm train" in out
    rc, out, err = run_cli(capsys, "runs", "--root", str(tmp_path), "--json")
    assert rc == 0 and out == "" and "no runs in" in one_line(err)


def test_runs_table_stopped_never_started_and_damaged(tmp_path, capsys):
    root = tmp_path / "runs"
    stopped_run(root / "old", steps=30, started=1_000.0)
    newer = stopped_run(root / "newer", steps=40, config="cpu", started=2_000.0)
    append(newer / runfiles.METRICS_FILE, json.dumps(runfiles.rollback_record(25)) + "\n")  # steps 26.. discarded
    append(newer / runfiles.EVENTS_FILE, json.dumps({"step": 25, "kind": "error", "message": "step 25: boom",
                                                     "time": 2_100.0}) + "\n")
    (root / "fresh").mkdir()
    (root / "torn").mkdir()
    (root / "torn" / runfiles.METRICS_FILE).write_bytes(b"\x00\xff garbage\nnot json either\n")
    (root / "torn" / runfiles.HEADER_FILE).write_text("{half")
    (root / "stray").mkdir()
    (root / "stray" / "notes.txt").write_text("not a run")
    (root / "a-file.txt").write_text("ignored: not a directory")

    rc, out, err = run_cli(capsys, "runs", "--root", str(root))
    assert rc == 0 and err == ""
    head, *rows = out.splitlines()
    assert head.split()[:3] == ["NAME", "STATE", "STEP"]
    by_name = {r.split()[0]: r for r in rows}
    assert set(by_name) == {"old", "newer", "fresh", "torn", "stray"}
    assert [r.split()[0] for r in rows].index("newer") < [r.split()[0] for r in rows].index("old")
    old = by_name["old"].split()
    assert old[1:3] == ["stopped", "30"] and "2.8000 @20" in by_name["old"] and "tiny" in old
    assert "save-30 " in by_name["old"] and " ago" in by_name["old"]
    assert by_name["newer"].split()[1:3] == ["stopped", "25"] and "cpu" in by_name["newer"]
    assert "error at step 25: step 25: boom" in by_name["newer"]
    assert by_name["fresh"].split()[1:3] == ["never", "started"]
    assert "metrics.jsonl has no readable step" in by_name["torn"] and "header.json unreadable" in by_name["torn"]
    assert by_name["stray"].split()[1] == "?" and "not a babyllm run" in by_name["stray"]

    rc, out, _ = run_cli(capsys, "runs", "--root", str(root), "--json")
    recs = {r["name"]: r for r in map(json.loads, out.splitlines())}
    assert recs["old"]["state"] == "stopped" and recs["old"]["live"] is False and recs["old"]["pid"] is None
    assert (recs["old"]["step"], recs["old"]["best_val_step"]) == (30, 20)
    assert abs(recs["old"]["best_val"] - 2.8) < 1e-9 and recs["old"]["config_name"] == "tiny"
    assert recs["old"]["last_save"]["kind"] == "save" and recs["old"]["last_save"]["step"] == 30
    assert recs["fresh"]["state"] == "never started" and recs["stray"]["note"].startswith("not a babyllm run")


def test_runs_row_of_a_run_that_answers_another_protocol(tmp_path):
    run = stopped_run(tmp_path / "runs" / "other")
    with fake_run(run, hello_then({"ok": True}, protocol=99)):
        [row] = list_runs(tmp_path / "runs")
    assert (row.state, row.step, row.config_name, row.live) == ("stopped", 30, "tiny", False)
    assert row.note.startswith("the run speaks control protocol 99")


def test_runs_rows_of_a_killed_and_a_hung_run(tmp_path):
    root = tmp_path / "runs"
    killed, hung = stopped_run(root / "killed"), stopped_run(root / "hung", started=2_000.0)
    left = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    left.bind(str(killed / runfiles.CONTROL_SOCKET))
    left.close()  # the file stays; nothing listens
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as silent:
        silent.bind(str(hung / runfiles.CONTROL_SOCKET))
        silent.listen()  # connections are taken (by the kernel) and never answered
        t0 = time.monotonic()
        rows = {r.name: r for r in list_runs(root)}
        assert time.monotonic() - t0 < 5
    assert (rows["killed"].state, rows["killed"].step) == ("stopped", 30)
    assert rows["killed"].note == "control.sock left behind (its process was killed?)"
    assert (rows["hung"].state, rows["hung"].live) == ("not answering", False)
    assert rows["hung"].note == "control.sock: the run did not answer in time"


def test_runs_row_of_an_unreadable_run_dir(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root reads every directory")
    locked = stopped_run(tmp_path / "runs" / "locked")
    locked.chmod(0)
    try:
        [row] = list_runs(tmp_path / "runs")
    finally:
        locked.chmod(0o755)
    assert row.name == "locked" and row.state == "?" and "cannot read" in row.note


# --- round trips with a live run (the Tutor serves the real endpoint) ---------------------------------


@pytest.fixture
def live_tutor(make_cfg, tmp_path):
    """A tiny Tutor training in a thread (until stopped) in tmp_path/runs/live, serving its socket."""
    from babyllm.school.tutor import Tutor

    run = tmp_path / "runs" / "live"
    tutor = Tutor(make_cfg("train.steps=100000", "train.save_every=0", "train.eval_every=5"), run,
                  say=lambda m: None, publish_every=0.0)
    th = threading.Thread(target=tutor.run, daemon=True)
    th.start()
    try:
        wait_for(lambda: is_live(run) and tutor.snapshot().best_val_step > 0)
        yield run, tutor, th
    finally:
        tutor.stop()
        th.join(60)


def status(capsys, run: Path) -> dict:
    rc, out, err = run_cli(capsys, "ctl", str(run), "status", "--json")
    assert rc == 0 and err == "", err
    return json.loads(one_line(out))


@pytest.mark.slow
def test_ctl_round_trips_with_a_live_tutor(live_tutor, tmp_path, capsys, monkeypatch):
    run, tutor, th = live_tutor
    pid = os.getpid()
    rc, out, err = run_cli(capsys, "ctl", str(run), "status")
    text = one_line(out)
    assert rc == 0 and err == "" and text.startswith("running  step ") and "/100,000  tokens " in text
    assert f"pid {pid}  config tiny on cpu (fp32)" in text and "best val " in text and "best val -" not in text
    snap = status(capsys, run)
    assert (snap["state"], snap["pid"], snap["world_size"], snap["config_name"]) == ("running", pid, 1, "tiny")
    assert snap["max_steps"] == 100000 and snap["step"] > 0 and snap["run_dir"] == str(run)

    # pause: --wait returns once the loop waits; the step then holds still.
    rc, out, _ = run_cli(capsys, "ctl", str(run), "pause", "--wait")
    assert rc == 0 and one_line(out).startswith("paused at step ") and f"{run} (pid {pid})" in out
    held = status(capsys, run)
    assert held["state"] == "paused" and status(capsys, run)["step"] == held["step"]
    assert any(e["message"] == f"pause requested by ctl (pid {pid})" for e in held["events"])

    # save and checkpoint, by run name from the runs/ folder, with and without --json.
    monkeypatch.chdir(tmp_path)
    rc, out, _ = run_cli(capsys, "ctl", "live", "save")
    assert rc == 0 and one_line(out) == f"save: asked {Path('runs/live')} (pid {pid}); it acts between steps"
    rc, out, _ = run_cli(capsys, "ctl", "live", "checkpoint", "--json")
    assert rc == 0 and json.loads(one_line(out)) == {"ok": True, "action": "checkpoint",
                                                     "run_dir": str(Path("runs/live")), "pid": pid}
    step = held["step"]
    wait_for(lambda: {s.kind for s in runfiles.list_saves(run) if s.step == step} == {"save", "checkpoint"})
    wait_for(lambda: status(capsys, run)["last_save_step"] == step)
    rc, out, _ = run_cli(capsys, "ctl", "live", "status")
    assert rc == 0 and "  paused  " not in out and one_line(out).startswith("paused  ")
    assert "last save checkpoint-" in out or "last save save-" in out

    # rollback goes to the newest save (paused there); resume trains on.
    rc, out, _ = run_cli(capsys, "ctl", "live", "rollback")
    assert rc == 0 and one_line(out).startswith("rollback: asked")
    wait_for(lambda: any("rolled back to" in e["message"] for e in status(capsys, run)["events"]))
    rc, out, _ = run_cli(capsys, "ctl", "live", "resume", "--json")
    assert rc == 0 and json.loads(out)["action"] == "resume"
    wait_for(lambda: status(capsys, run)["step"] > step + 2)

    # stop --wait: back once the process let go (final save written, socket gone); then nothing answers.
    rc, out, _ = run_cli(capsys, "ctl", "live", "stop", "--wait", "--json")
    assert rc == 0 and json.loads(one_line(out)) == {"ok": True, "action": "stop", "run_dir": str(Path("runs/live")),
                                                     "pid": pid, "state": "stopped"}
    assert not is_live(run) and not (run / runfiles.CONTROL_SOCKET).exists()
    th.join(30)
    final = tutor.snapshot()
    assert not th.is_alive() and final.state == "stopped" and final.last_save_step == final.step
    rc, out, err = run_cli(capsys, "ctl", "live", "status")
    assert rc == 2 and out == "" and "no live run answers" in one_line(err)


@pytest.mark.slow
def test_runs_lists_a_live_a_stopped_and_a_damaged_run(live_tutor, tmp_path, capsys):
    run, tutor, _ = live_tutor
    root = run.parent
    stopped_run(root / "older", started=1_000.0)
    (root / "broken").mkdir()
    (root / "broken" / runfiles.METRICS_FILE).write_text("{torn\n")
    rc, out, err = run_cli(capsys, "runs", "--root", str(root))
    assert rc == 0 and err == ""
    head, *rows = out.splitlines()
    names = [r.split()[0] for r in rows]
    assert names.index("live") < names.index("older")  # newest first: live started just now
    live = next(r for r in rows if r.startswith("live"))
    assert f"running pid {os.getpid()}" in live and " tiny" in live
    assert "stopped" in next(r for r in rows if r.startswith("older"))
    assert "metrics.jsonl has no readable step" in next(r for r in rows if r.startswith("broken"))
    rc, out, _ = run_cli(capsys, "runs", "--root", str(root), "--json")
    rec = next(r for r in map(json.loads, out.splitlines()) if r["name"] == "live")
    assert rec["live"] is True and rec["pid"] == os.getpid() and rec["state"] == "running"
    assert rec["step"] > 0 and rec["best_val_step"] > 0 and rec["best_val"] > 0


@pytest.mark.slow
def test_ctl_stops_a_babyllm_train_process(corpus, cache, tmp_path):
    """The scripts' view end to end: `babyllm train` in a process of its own, `babyllm ctl` from another."""
    run = tmp_path / "runs" / "proc"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    train = subprocess.Popen(
        [sys.executable, "-m", "babyllm.commands.cli", "train", "--config", "tiny", "--corpus", str(corpus), "--set",
         f"data.cache_dir={cache}", "--set", "train.save_every=0", "--steps", "100000", "--run-dir", str(run)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=tmp_path)

    def ctl(*argv: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "babyllm.commands.cli", *argv], capture_output=True, text=True,
                              env=env, cwd=tmp_path, timeout=120)

    try:
        wait_for(lambda: is_live(run) or train.poll() is not None, timeout=120)
        assert train.poll() is None, train.stderr.read() if train.stderr else ""
        got = ctl("ctl", "proc", "status", "--json")
        snap = json.loads(one_line(got.stdout))
        assert got.returncode == 0 and snap["pid"] == train.pid and snap["config_name"] == "tiny"
        rows = ctl("runs").stdout
        assert f"running pid {train.pid}" in rows or f"starting pid {train.pid}" in rows
        got = ctl("ctl", str(run), "stop", "--wait")
        assert got.returncode == 0 and one_line(got.stdout) == (
            f"stopped: {run} (pid {train.pid}) saved and let go of the run")
        assert train.wait(60) == 0
        assert runfiles.list_saves(run)[0].kind == "save"
        got = ctl("ctl", "proc", "pause")
        assert got.returncode == 2 and "no live run answers" in one_line(got.stderr)
        assert "stopped" in next(r for r in ctl("runs").stdout.splitlines() if r.startswith("proc"))
    finally:
        if train.poll() is None:
            train.kill()
            train.wait(30)
