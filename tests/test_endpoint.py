"""The control endpoint (babyllm.socket.endpoint): a live run's socket, driven with ControlClient and raw sockets.

Most tests train a tiny Tutor in a thread (it serves its socket from run()); the protocol-only ones
serve a FakeTutor. Faults a client can cause (garbage, huge or half-sent lines, a client that never
reads or is killed mid-stream) must get an error or a drop, and training must carry on.
"""

import dataclasses
import json
import math
import os
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest
from runhelpers import wait_for

from babyllm.errors import BabyError
from babyllm.school.tutor import Tutor
from babyllm.snapshot import Corpus, Event, Sample, Snapshot
from babyllm.socket import codec, wire
from babyllm.socket.client import ControlClient, NoLiveRun, RunRefused, is_live, socket_path, unix_address
from babyllm.socket.endpoint import CONTROL_METHODS, Endpoint
from babyllm.stats import REGISTRY
from tui.fake import FakeTutor

# wall-clock stats and the machine's readings: differ run to run
TIMING_KEYS = {"time", "tokens_per_s", "step_ms", "mfu", "system", *REGISTRY.timings()}


class Running:
    """A Tutor training in a thread (until stopped unless train.steps says otherwise)."""

    def __init__(self, cfg, run_dir: Path, serves: bool = True, **kwargs):
        self.run_dir = run_dir
        self.tutor = Tutor(cfg, run_dir, say=lambda m: None, **kwargs)
        self.result: list[str] = []
        self.thread = threading.Thread(target=lambda: self.result.append(self.tutor.run()), daemon=True)
        self.thread.start()
        if serves:  # (a stale socket file may be there already: wait for one that answers)
            wait_for(lambda: is_live(run_dir, timeout=0.5) or not self.thread.is_alive(), timeout=60, what="the socket")
        # The socket answers just before run() says "running": tests start from a training run.
        wait_for(lambda: self.tutor.state != "starting" or not self.thread.is_alive(), timeout=60, what="training")

    def step(self) -> int:
        return self.tutor.snapshot().step

    def advances(self, by: int = 5) -> bool:
        start = self.step()
        wait_for(lambda: self.step() >= start + by, what=f"{by} more steps")
        return True

    def finish(self) -> str:
        self.tutor.stop(by="test")
        self.thread.join(30)
        assert not self.thread.is_alive()
        return self.result[0]

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.thread.is_alive():
            self.finish()


@pytest.fixture
def running(make_cfg, tmp_path):
    with Running(make_cfg("train.steps=0", "chat.max_tokens=8"), tmp_path / "run", publish_every=0.0) as r:
        yield r


def raw(run_dir: Path, rcvbuf: int | None = None) -> socket.socket:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if rcvbuf is not None:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(10)
    with unix_address(socket_path(run_dir)) as address:
        s.connect(address)
    return s


def read_line(s: socket.socket, buf: bytearray) -> dict:
    while b"\n" not in buf:
        chunk = s.recv(1 << 16)
        assert chunk, "the run closed the connection"
        buf += chunk
    cut = buf.index(b"\n")
    line = bytes(buf[:cut])
    del buf[: cut + 1]
    return json.loads(line)


def chat(c: ControlClient, prompt) -> tuple[list[str], dict]:
    """One chat request: the reply's pieces and its chat_end."""
    want = c.send("chat", prompt=prompt)
    pieces = []
    for msg in c.messages():
        if msg.get("type") == "chat":
            pieces.append(msg["text"])
        elif msg.get("type") == "chat_end" and msg["id"] == want:
            return pieces, msg


def events(run_dir: Path) -> list[str]:
    return [json.loads(x)["message"] for x in (run_dir / "events.jsonl").read_text().splitlines()]


# --- the socket file ------------------------------------------------------------------------------


def test_the_socket_is_private_answers_hello_and_is_removed_on_exit(running):
    path = socket_path(running.run_dir)
    assert stat.S_ISSOCK(os.stat(path).st_mode) and stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with ControlClient(running.run_dir) as c:
        hello = c.call("hello")
        assert (hello["pid"], hello["run_dir"], hello["world_size"], hello["protocol"]) == (
            os.getpid(), str(running.run_dir), 1, wire.PROTOCOL)
        snap = c.status()
        assert snap.state == "running" and snap.run_dir == str(running.run_dir) and snap.params > 0
    assert running.finish() == "stopped"
    assert not path.exists()
    with pytest.raises(NoLiveRun):
        ControlClient(running.run_dir)


def test_a_subscriber_sees_the_final_state_before_the_socket_closes(running):
    with ControlClient(running.run_dir) as viewer, ControlClient(running.run_dir) as ctl:
        viewer.call("subscribe")
        ctl.call("stop")
        states = []
        with pytest.raises(NoLiveRun, match="closed the connection"):
            for msg in viewer.messages():
                states.append(msg["snapshot"]["state"])
    assert states[-1] == "stopped"
    running.thread.join(30)
    assert not socket_path(running.run_dir).exists()


def test_the_socket_is_removed_when_training_fails(make_cfg, tmp_path):
    with Running(make_cfg("train.steps=0"), tmp_path / "run") as r:
        def boom(overlap=False):
            raise RuntimeError("a bug in a step")

        r.tutor.stepper.step = boom  # (the loop's next step fails)
        r.thread.join(30)
        assert r.result == ["error"] and "a bug in a step" in r.tutor.snapshot().error
    assert not socket_path(r.run_dir).exists()


def test_every_op_has_a_handler_and_every_control_op_a_method():
    ep = Endpoint(Path("/nonexistent"), FakeTutor())
    try:
        assert set(ep._handlers) == set(wire.OPS)
        assert set(CONTROL_METHODS) == set(wire.CONTROL_OPS)
        assert all(callable(getattr(Tutor, m)) for m in CONTROL_METHODS.values())
    finally:
        ep.close()


def test_one_op_table_feeds_the_interface_the_socket_and_ctl(tmp_path):
    """babyllm.control's op table names each op once: the methods TutorControl declares, the wire's ops,
    ctl's actions and their help, the refusals, and what each control method asks for."""
    import inspect
    from typing import get_args

    from babyllm import control
    from babyllm.commands.ctl import ACTION_HELP, ACTIONS
    from babyllm.run.follower import Watcher
    from babyllm.snapshot import LiveSettings, TutorControl

    asks = {n for n, f in vars(TutorControl).items() if callable(f) and "by" in inspect.signature(f).parameters}
    assert asks == {op.method for op in control.CONTROL_OPS} and hasattr(LiveSettings, control.SET.method)
    assert set(get_args(control.Request)) == set(control.OP) == {*wire.CONTROL_OPS, wire.SET_OP}
    assert dict(CONTROL_METHODS) == {"pause": "pause", "resume": "resume", "save": "request_save",
                                     "checkpoint": "request_checkpoint", "rollback": "rollback", "stop": "stop"}
    assert ACTIONS[1:] == tuple(op.name for op in control.OPS) and all(ACTION_HELP[a] for a in ACTIONS)
    assert control.AGREED == ("pause", "resume", "stop")
    assert [op.name for op in control.OPS if control.refusal(op.name, 2)] == ["rollback"]
    assert not any(control.refusal(op.name, 1) for op in control.OPS)
    viewer = Watcher(tmp_path)  # a viewer records what it was asked and does nothing
    for op in control.CONTROL_OPS[:-1]:  # (its stop ends the watching)
        getattr(viewer, op.method)(by="test")
    viewer.rollback()
    assert viewer.refused == [*(op.name for op in control.CONTROL_OPS[:-1]), "rollback"]
    assert Tutor.pause is control.Controls.pause and callable(Tutor.request_save)


# --- the snapshot's wire format (derived from the dataclasses: babyllm.socket.codec) ----------------


def every_field_set() -> Snapshot:
    """A snapshot with every field (and every nested record's) away from its default."""
    return Snapshot(
        step=7, tokens=70, state="paused", stats={"loss": 2.5, "val_loss": math.nan, "lr": 1e-3}, max_steps=100,
        sample=Sample(6, "the kettle", ("the", "sang"), ("a", "sang")),
        events=(Event(1, "save", "saved step 1", 10.5), Event(2, "alarm", "loss is nan", 11.0)), event_count=9,
        history_events=5,
        error="loss is nan", device="cpu", config_name="tiny", run_dir="runs/x", dtype="bf16", params=1234,
        corpus=Corpus("corpora/tiny", 1000, 100), best_val=2.25, best_val_step=5, last_save_step=6,
        last_save_path="runs/x/save-00000006", last_save_error="disk full", system={"cpu_percent": 50.0},
        overrides={"train.lr": 0.002}, settings={"train.lr": 0.002, "chat.stop": None, "train.minutes": 1.5},
        gate_hist={"mem1_gate_short": (1, 2, 3), "mem2_gate_proj": (0, 0, 6)}, global_batch=64)


def wire_trip(snap: Snapshot) -> Snapshot:
    return wire.snapshot_from_json(wire.decode(wire.encode({"snapshot": wire.snapshot_to_json(snap)}))["snapshot"])


def same(a: Snapshot, b: Snapshot) -> bool:
    """Equal, nan equal to nan (a stat not measured yet)."""
    nan = {k for k, v in a.stats.items() if v != v}
    return nan == {k for k, v in b.stats.items() if v != v} and dataclasses.replace(
        a, stats={k: v for k, v in a.stats.items() if k not in nan}) == dataclasses.replace(
        b, stats={k: v for k, v in b.stats.items() if k not in nan})


def test_a_snapshot_with_every_field_set_travels_unchanged():
    snap, blank = every_field_set(), Snapshot()
    assert [f.name for f in dataclasses.fields(Snapshot) if getattr(snap, f.name) == getattr(blank, f.name)] == []
    assert same(wire_trip(snap), snap)
    assert wire_trip(Snapshot()) == Snapshot() and wire.snapshot_to_json(Snapshot())["best_val"] is None  # inf

    @dataclasses.dataclass(frozen=True)
    class Later(Snapshot):  # a field added later needs nothing in wire.py: the dataclass says it all
        mood: tuple[int, ...] = ()

    later = codec.reader(Later)(json.loads(json.dumps(codec.to_json(Later(step=3, mood=(1, 2))))))
    assert later == Later(step=3, mood=(1, 2))


def test_damaged_snapshot_values_are_tolerated():
    """Unknown keys ignored; a missing or unreadable field at its default (null numbers nan, best_val inf);
    a damaged sample, corpus, event or histogram left out; never an exception for a dict."""
    good = wire.snapshot_to_json(every_field_set())
    damaged = {**good, "step": "x", "tokens": None, "state": 5, "stats": {"loss": None, "lr": "fast", "ok": 1},
               "device": ["cpu"], "best_val": None, "last_save_step": "soon", "system": [1], "overrides": 3,
               "sample": {"step": 1, "context": "c", "guesses": ["a"]},  # (no truths)
               "corpus": {"root": "r", "train_tokens": "many", "val_tokens": 1},
               "events": [{"step": 3, "kind": "state", "message": "paused"}, {"kind": "info", "message": "no step"},
                          {"step": 4, "kind": 9, "message": "odd kind"}, "not an event",
                          {"step": 5, "kind": "newer", "message": "a kind from a newer run", "time": None}],
               "gate_hist": {"mem1_gate_short": [1, "x"], "mem1_gate_long": [1, 2], "mem2_gate_input": 5},
               "from_the_future": {"anything": 1}}
    snap = wire.snapshot_from_json(json.loads(json.dumps(damaged)))
    assert (snap.step, snap.tokens, snap.state, snap.device, snap.best_val) == (0, 0, "idle", "", math.inf)
    assert math.isnan(snap.stats["loss"]) and math.isnan(snap.stats["lr"]) and snap.stats["ok"] == 1.0
    assert snap.last_save_step is None and snap.system == {} and snap.overrides == {}
    assert snap.sample is None and snap.corpus is None
    assert [(e.step, e.kind) for e in snap.events] == [(3, "state"), (5, "newer")] and snap.events[0].time > 0
    assert snap.gate_hist == {"mem1_gate_long": (1, 2)} and snap.config_name == "tiny"  # the rest as sent
    assert wire.snapshot_from_json({}) == Snapshot()  # a run that says nothing
    for not_a_snapshot in ([], "x", None):
        with pytest.raises(ValueError):  # (RemoteTutor skips it)
            wire.snapshot_from_json(not_a_snapshot)


def test_a_long_run_dir_path_is_served(make_cfg, tmp_path):
    run = tmp_path / ("x" * 60) / ("y" * 60) / "run"
    assert len(os.fsencode(socket_path(run))) > 107
    with Running(make_cfg("train.steps=0"), run) as r, ControlClient(run) as c:
        assert c.call("hello")["pid"] == os.getpid()
        r.finish()
    assert not socket_path(run).exists()


def test_a_stale_socket_of_a_killed_process_is_replaced(make_cfg, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    code = textwrap.dedent(f"""
        import socket, sys, time
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.bind({str(socket_path(run))!r}); s.listen(1)
        print("ready", flush=True); time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    assert socket_path(run).exists()  # left behind: nothing answers on it now
    with Running(make_cfg("train.steps=0"), run) as r, ControlClient(run) as c:
        assert c.call("hello")["pid"] == os.getpid()
        r.finish()


def test_a_live_socket_refuses_a_second_server_and_close_leaves_a_newer_socket(served, tmp_path):
    run, fake, ep = served
    second = Endpoint(run, fake)
    with pytest.raises(BabyError, match=f"run {run}: another live process already serves"):
        second.start()
    second.close()
    assert ControlClient(run).call("hello")["ok"]  # the first is unharmed
    # Someone replaced the socket file (a newer process): the old server must not remove it.
    os.unlink(socket_path(run))
    newer = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    newer.bind(str(socket_path(run)))
    ep.close()
    assert socket_path(run).exists()
    newer.close()


def test_a_socket_that_cannot_start_is_an_event_and_training_goes_on(make_cfg, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    socket_path(run).write_text("not a socket")
    with Running(make_cfg("train.steps=30"), run, serves=False) as r:
        r.thread.join(60)
        assert r.result == ["finished"]
    assert any("is not a socket" in m and "training goes on without it" in m for m in events(run))
    assert socket_path(run).read_text() == "not a socket"


# --- who may connect ------------------------------------------------------------------------------


def test_a_peer_of_a_uid_not_allowed_gets_one_error_line_and_is_closed(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    ep = Endpoint(run, FakeTutor(), allowed_uids={os.geteuid() + 1})  # (the seam: we are the stranger)
    ep.start()
    try:
        s = raw(run)
        buf = bytearray()
        reply = read_line(s, buf)
        assert reply["ok"] is False and f"uid {os.geteuid()} may not control this run" in reply["error"]
        assert s.recv(100) == b""  # closed
        s.close()
        # babyllm ctl's client says so (exit 1, refused), not "connection lost"
        with ControlClient(run) as c, pytest.raises(RunRefused, match="may not control this run"):
            c.call("status")
    finally:
        ep.close()


def test_a_refused_client_whose_first_write_meets_the_closed_socket_still_hears_why(tmp_path):
    # The race CI once lost: the run refuses and closes before the client has written anything.
    run = tmp_path / "run"
    run.mkdir()
    ep = Endpoint(run, FakeTutor(), allowed_uids={os.geteuid() + 1})
    ep.start()
    try:
        with ControlClient(run) as c:
            probe = raw(run)  # a second stranger: once its refusal and EOF arrive, the first is closed too
            buf = bytearray()
            read_line(probe, buf)
            assert probe.recv(100) == b""
            probe.close()
            with pytest.raises(RunRefused, match="may not control this run"):
                c.call("status")
    finally:
        ep.close()


NOBODY = 65534
PEER = textwrap.dedent("""
    import json, socket, sys
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(10)
    try:
        s.connect(sys.argv[1])
    except PermissionError:
        print("EACCES"); sys.exit()
    data = b""
    while chunk := s.recv(4096):
        data += chunk
    print(data.decode().strip() + " EOF")
""")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a client as another user")
def test_another_user_cannot_connect_and_is_refused_even_when_the_mode_would_let_it():
    base = Path(tempfile.mkdtemp(prefix="babyllm-ep-"))  # (pytest's tmp folders are 0700: nobody can't look in)
    try:
        os.chmod(base, 0o711)
        run = base / "run"
        run.mkdir(mode=0o711)
        ep = Endpoint(run, FakeTutor())
        ep.start()
        # The peer is stdlib only: any Python that uid may run will do (this one may sit in root's home).
        exes = [os.path.realpath(sys.executable), "/usr/bin/python3", "/usr/local/bin/python3"]
        try:
            def as_nobody() -> str:
                for exe in exes:
                    try:
                        out = subprocess.run([exe, "-I", "-c", PEER, str(socket_path(run))], user=NOBODY,
                                             capture_output=True, text=True, timeout=30)
                    except OSError:
                        continue
                    if out.returncode == 0:
                        return out.stdout.strip()
                pytest.skip(f"no Python that uid {NOBODY} may run among {exes}")

            assert as_nobody() == "EACCES"  # mode 0600
            os.chmod(socket_path(run), 0o666)  # even so, SO_PEERCRED turns it away
            reply = as_nobody()
            assert reply.endswith(" EOF")
            msg = json.loads(reply.removesuffix(" EOF"))
            assert msg["ok"] is False and f"uid {NOBODY} may not control this run" in msg["error"]
        finally:
            ep.close()
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=False)


# --- bad input ------------------------------------------------------------------------------------


def test_garbage_binary_huge_and_half_lines_get_errors_and_training_goes_on(running):
    s = raw(running.run_dir)
    buf = bytearray()
    s.sendall(b"garbage\n\xff\xfe\x00\x01\n[1, 2]\n{\"op\": \"launch\", \"id\": 7}\n{\"op\": 3}\n\n")
    replies = [read_line(s, buf) for _ in range(5)]
    assert all(r["ok"] is False for r in replies)
    assert "not JSON" in replies[0]["error"] and "not UTF-8" in replies[1]["error"]
    assert "not a JSON object" in replies[2]["error"]
    assert replies[3]["id"] == 7 and "unknown op 'launch'" in replies[3]["error"]
    assert "unknown op 3" in replies[4]["error"]
    huge = b"x" * (wire.MAX_LINE + 5000)
    s.sendall(huge[: wire.MAX_LINE // 2])
    s.sendall(huge[wire.MAX_LINE // 2:] + b"tail\n")
    assert f"longer than {wire.MAX_LINE} bytes" in read_line(s, buf)["error"]
    s.sendall(b'{"op": "hel')  # half a line, then a pause: nothing waits for the rest
    assert running.advances()
    s.sendall(b'lo", "id": 5}\n')
    reply = read_line(s, buf)
    assert reply["ok"] and reply["id"] == 5 and reply["pid"] == os.getpid()
    s.sendall(b'{"op": "status", "id": 6')
    s.close()  # gone half-way through a line
    with ControlClient(running.run_dir) as c:
        assert c.call("hello")["ok"]
    assert running.advances()
    assert running.tutor.snapshot().state == "running"


# --- control --------------------------------------------------------------------------------------


def test_control_requests_are_acted_on_and_their_events_name_the_client(running):
    with ControlClient(running.run_dir, name="tester") as c:
        who = f"tester (pid {os.getpid()})"
        assert c.call("pause") == {"ok": True, "id": 1}
        wait_for(lambda: c.status().state == "paused", what="paused")
        at = running.step()
        time.sleep(0.3)
        assert running.step() == at
        c.call("checkpoint")
        wait_for(lambda: c.status().last_save_step == at, what="the checkpoint")
        c.call("resume")
        assert running.advances()
        c.call("stop")
        running.thread.join(30)
    assert running.result == ["stopped"]
    said = events(running.run_dir)
    for what in ("pause", "checkpoint", "resume", "stop"):
        assert f"{what} requested by {who}" in said
    assert any(m.startswith(f"saved step {at} ") for m in said)


def test_a_client_name_is_made_printable_and_bounded(served):
    run, fake, _ = served
    s = raw(run)
    buf = bytearray()
    s.sendall(wire.encode({"op": "pause", "id": 1, "client": "evil\x1b[2J\nname" + "z" * 500}))
    assert read_line(s, buf)["ok"]
    s.sendall(wire.encode({"op": "save", "id": 2}))
    assert read_line(s, buf)["ok"]
    s.close()
    assert fake.calls == ["pause", "request_save"]
    name, anonymous = fake.asked_by
    assert name == "evil?[2J?name" + "z" * 66 + "…" and len(name) == 80
    assert anonymous.startswith("pid ") and int(anonymous[4:]) == os.getpid()


def test_two_clients_at_once_one_streaming_one_steering(running):
    assert running.advances()
    with ControlClient(running.run_dir, name="viewer") as viewer, ControlClient(running.run_dir) as ctl:
        reply = viewer.call("subscribe")
        assert {"loss", "step"} <= set(reply["history"]) and reply["history"]["loss"]
        steps = [p[0] for p in reply["history"]["step"]]
        assert steps == sorted(steps)
        ctl.call("pause")
        for msg in viewer.messages():
            assert msg["type"] == "snapshot"
            if msg["snapshot"]["state"] == "paused":
                break
        ctl.call("resume")
        for msg in viewer.messages():
            if msg["snapshot"]["state"] == "running":
                break


def test_the_history_reply_fits_in_one_line_however_long_the_run(served):
    run, fake, _ = served
    for s in range(301, 30_000):
        fake.history.add(s, {"loss": 1.0 / s, "step": float(s), **{f"x{i}": float(i) for i in range(40)}})
    with ControlClient(run) as c:
        history = c.call("subscribe")["history"]
    assert {"loss", "step", "x0"} <= set(history)
    assert 1 < len(history["x0"]) <= 2000
    assert history["step"][-1][0] == 29_999  # thinned, up to the newest step


# --- clients that misbehave -----------------------------------------------------------------------


def test_a_client_that_never_reads_misses_snapshots_and_never_stalls_training(running):
    slow = raw(running.run_dir, rcvbuf=4096)
    slow.sendall(wire.encode({"op": "subscribe", "id": 1}))
    before = running.step()
    assert running.advances(200)  # it reads nothing meanwhile
    published = running.step() - before
    buf = bytearray()
    assert read_line(slow, buf)["id"] == 1  # the history
    now = running.step()
    got = [read_line(slow, buf)["snapshot"]["step"]]
    while got[-1] < now:
        got.append(read_line(slow, buf)["snapshot"]["step"])
    assert got == sorted(got)
    assert len(got) < published / 2  # old ones were replaced, not queued
    slow.close()


def test_a_client_that_floods_requests_without_reading_is_dropped(running):
    flood = raw(running.run_dir, rcvbuf=4096)
    flood.settimeout(30)
    request = wire.encode({"op": "status", "id": 1})
    dropped = False
    try:
        for _ in range(200_000):
            flood.sendall(request * 50)
    except (BrokenPipeError, ConnectionResetError):
        dropped = True
    assert dropped
    assert running.advances()
    with ControlClient(running.run_dir) as c:
        assert c.call("hello")["ok"]


def test_a_client_killed_mid_stream_blocks_nothing(running):
    code = textwrap.dedent(f"""
        import sys
        sys.path[:0] = {sys.path!r}
        from babyllm.socket.client import ControlClient
        c = ControlClient({str(running.run_dir)!r}, name="doomed")
        c.call("subscribe")
        c.send("chat", prompt="The old captain")
        next(c.messages())
        print("streaming", flush=True)
        import time; time.sleep(60)
    """)
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "streaming"
    finally:
        proc.kill()
        proc.wait(10)
    assert running.advances(20)
    with ControlClient(running.run_dir) as c:
        c.call("pause")
        wait_for(lambda: c.status().state == "paused", what="paused")


# --- chat -----------------------------------------------------------------------------------------


def test_chat_streams_a_reply_from_the_live_model_and_takes_commands(running):
    with ControlClient(running.run_dir, name="chatter") as c:
        assert "temperature" in c.call("chat_command", line="/temp 0.5")["reply"]
        assert "/temp" in c.call("chat_command", line="/help")["reply"]
        with pytest.raises(RunRefused, match="unknown command"):
            c.call("chat_command", line="/frobnicate")
        pieces, end = chat(c, "")  # (nothing to continue yet: once a reply was written, "" continues it)
        assert end["ok"] is False and "empty prompt" in end["error"] and pieces == []
        pieces, end = chat(c, "The baker")
        assert end["ok"] and pieces and "".join(pieces) and isinstance(end["hit_limit"], bool)
        assert end["notices"] == []
        _, end = chat(c, 42)
        assert end["ok"] is False and "prompt" in end["error"]
    assert running.advances()


def test_one_reply_at_a_time_per_connection_and_cancel_ends_it(running):
    with ControlClient(running.run_dir) as c:
        c.call("chat_command", line="/max 5000")
        first = c.send("chat", prompt="Once upon a time")
        second = c.send("chat", prompt="again")
        c.send("chat_cancel")
        ends = {}
        for msg in c.messages():
            if msg.get("type") == "chat_end":
                ends[msg["id"]] = msg
                if first in ends:
                    break
        assert ends[second]["ok"] is False and "already being written" in ends[second]["error"]
        assert ends[first]["ok"] and ends[first].get("cancelled") and not ends[first]["hit_limit"]
        c.call("chat_command", line="/max 8")
        assert chat(c, " and")[1]["ok"]  # a new reply once the last has ended


@pytest.mark.slow
def test_training_losses_are_bit_identical_with_a_client_attached_and_chatting(make_cfg, tmp_path):
    cfg = ("train.steps=200", "chat.max_tokens=12", "train.save_every=0")
    with Running(make_cfg(*cfg), tmp_path / "alone") as r:
        r.thread.join(120)
    chats_while_training = 0
    with Running(make_cfg(*cfg), tmp_path / "watched", publish_every=0.0) as r:
        viewer = ControlClient(r.run_dir, name="viewer")
        viewer.call("subscribe")
        with ControlClient(r.run_dir, name="chatter") as c:
            while r.thread.is_alive():
                try:
                    step = c.status().step
                    pieces, end = chat(c, "The kettle")
                    if end["ok"] and pieces and c.status().step > step:
                        chats_while_training += 1
                except NoLiveRun:
                    break
        viewer.close()
        r.thread.join(120)
    assert chats_while_training >= 3
    alone = [json.loads(x) for x in (tmp_path / "alone" / "metrics.jsonl").read_text().splitlines()]
    watched = [json.loads(x) for x in (tmp_path / "watched" / "metrics.jsonl").read_text().splitlines()]
    assert len(alone) == len(watched) == 200
    for a, w in zip(alone, watched, strict=True):
        assert {k: v for k, v in a.items() if k not in TIMING_KEYS} == {
            k: v for k, v in w.items() if k not in TIMING_KEYS}, a["step"]


# --- several ranks --------------------------------------------------------------------------------


@pytest.mark.slow
def test_two_ranks_pause_and_resume_together_through_rank_0s_socket(corpus, cache, tmp_path):
    from test_distributed import assert_same_curve, common, finish, launch, losses

    from babyllm.commands.cli import main as cli_main

    procs = launch(tmp_path, common(corpus, cache, "--run-dir", "run", "--steps", "0"))
    run = tmp_path / "r0" / "run"
    try:
        wait_for(lambda: is_live(run, timeout=0.5) or any(p.poll() is not None for p in procs), timeout=60,
                 what="rank 0's socket")
        assert not (tmp_path / "r1" / "run").exists()  # rank 1 serves nothing (and writes nothing)
        with ControlClient(run, name="ranks") as c:
            assert c.call("hello")["world_size"] == 2
            wait_for(lambda: c.status().step >= 3, what="3 steps")
            with pytest.raises(RunRefused, match="several ranks"):
                c.call("rollback")
            c.call("resume")  # (while running: ignored, as on one rank; it must not undo the pause below)
            c.call("pause")
            wait_for(lambda: c.status().state == "paused", what="both ranks paused")
            at = c.status().step
            time.sleep(1.0)  # rank 1 stepping on alone would hang or break the next all-reduce
            assert c.status().step == at and c.status().state == "paused"
            c.call("save")
            wait_for(lambda: c.status().last_save_step == at, what="rank 0's save")
            c.call("pause")  # (while paused: ignored; it must not pause again right after the resume)
            c.call("resume")
            wait_for(lambda: c.status().step >= at + 5, what="both ranks stepping again")
            c.call("stop")
        (rc0, out0, err0), (rc1, out1, err1) = finish(procs, timeout=60)
    finally:
        for p in procs:  # (a failed check above: end both ranks, keeping that failure's message)
            if p.poll() is None:
                p.kill()
                p.wait(10)
    assert rc0 == 0 and rc1 == 0, (err0, err1)
    assert out1 == "" and err1 == ""
    who = f"ranks (pid {os.getpid()})"
    said = events(run)
    for what in ("pause", "save", "resume", "stop"):
        assert f"{what} requested by {who}" in said
    assert f"rollback requested by {who}" not in said  # refused at the socket: never queued
    got = losses(run)
    stopped = got[-1]["step"]
    assert f"stopped at step {stopped}" in out0 and not socket_path(run).exists()
    assert [x["step"] for x in got] == list(range(1, stopped + 1))
    # Pausing and resuming changed nothing: the curve is one process's with the global batch (compared
    # over the 50 warm-up steps, whose rates do not depend on train.steps; this run had none).
    compared = min(stopped, 50)
    straight = tmp_path / "straight"
    assert cli_main(["train", *common(corpus, cache, "--set", "train.batch=8", "--steps", str(compared),
                                      "--run-dir", str(straight))]) == 0
    assert_same_curve(got[:compared], losses(straight))
