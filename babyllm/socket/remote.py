"""RemoteTutor: a live run's TutorControl over its control socket (the protocol is babyllm.socket.wire).

`babyllm-tui --attach RUN_DIR` drives the cockpit with one, and `--watch` with a read-only one while the
run is live. Three connections (babyllm.socket.client), so that no one waits on another:

- control: pause, resume, save, checkpoint, rollback, stop, sent by a thread of their own (the caller
  returns at once, as TutorControl promises; a refusal or a lost run is said through ``say``);
- stream: subscribed to the run's snapshots; its subscribe reply fills ``history`` and run() reads the
  stream, feeding ``publish`` and ``history``, until the run ends or the connection is lost;
- chat: one per chat_session(), the live model's replies piece by piece (chat, chat_command).

Every request carries the client's name (``name (pid N)``), so the run's events say who asked. close()
(a detach) ends the connections only; the run goes on.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from queue import SimpleQueue
from typing import Any

from babyllm.control import DEFAULT_BY, Controls, Request
from babyllm.errors import BabyError
from babyllm.run.follower import SavedChat
from babyllm.snapshot import ChatSession, History, Publish, Say, Snapshot, State
from babyllm.socket import wire
from babyllm.socket.client import ControlClient, NoLiveRun, RunRefused, socket_path

CONNECT_S = 5.0  # how long a request may wait for the run's answer
ENDING: tuple[State, ...] = ("stopping", "stopped", "finished", "error")  # a stream closed after these: it stopped
SOCKET_GONE_S = 1.0  # after the stream ends: how long the run may take to remove its socket (a clean stop)
RUN_STOPPED = "the run stopped"
CONNECTION_LOST = "connection lost"


class _Connection(ControlClient):
    """A ControlClient that another thread can interrupt (close() alone does not wake a blocked recv)."""

    def wait_forever(self) -> None:
        """No read timeout: a paused run sends no snapshot for as long as it stays paused."""
        self._sock.settimeout(None)

    def interrupt(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self.close()


class RemoteTutor(Controls):
    """TutorControl for a run trained by another process, over its control socket.

    Raises NoLiveRun (a BabyError) when nothing answers at ``run_dir``. ``read_only``: a viewer's (the
    controls are recorded in ``refused`` and never sent; the chat loads the newest save here instead of
    talking to the live model).
    """

    def __init__(self, run_dir: Path, *, name: str = "cockpit", publish: Publish | None = None,
                 say: Say | None = None, read_only: bool = False, timeout: float = CONNECT_S) -> None:
        self.run_dir = Path(run_dir)
        self.name, self.read_only, self.timeout = name, read_only, timeout
        self.history = History()
        self.refused: list[str] = []
        self.debug_lines: list[str] = []  # the UI's own faults (the run's debug.log is its process's)
        self.note = ""  # what a viewer's status line says of the connection
        self.ended = ""  # how following ended: "" (not yet), "detached", RUN_STOPPED or CONNECTION_LOST (why)
        self._publish = publish or (lambda _s: None)
        self._say = say or (lambda _t: None)
        self._closed = threading.Event()
        self._chats: list[_Connection] = []
        self._control = _Connection(self.run_dir, name, timeout)
        self._stream: _Connection | None = None
        try:
            self.pid, self.world_size = self._control.hello()
            self._latest = self._control.status()
            self._stream = _Connection(self.run_dir, name, timeout)
            self._fill_history(self._stream.call("subscribe").get("history") or {})
        except BaseException:
            self.close()
            raise
        self._stream.wait_forever()
        self._last_step = self._latest.step
        self._ops: SimpleQueue[tuple[str, dict[str, Any]] | None] = SimpleQueue()
        self._sender = threading.Thread(target=self._send_ops, name="remote-control", daemon=True)
        self._sender.start()

    def listen(self, publish: Publish | None = None, say: Say | None = None) -> RemoteTutor:
        """Where snapshots and words go (the cockpit's, once it is up); itself, as a TutorFactory returns."""
        if publish is not None:
            self._publish = publish
        if say is not None:
            self._say = say
        return self

    # --- what the cockpit reads -------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        return self._latest

    def run(self) -> State:
        """Follow the run's snapshots until it ends (its state then) or the connection is lost ("error")."""
        assert self._stream is not None
        lost = ""
        try:
            for msg in self._stream.messages():
                if msg.get("type") == "snapshot" and isinstance(msg.get("snapshot"), dict):
                    try:
                        snap = wire.snapshot_from_json(msg["snapshot"])
                    except (KeyError, TypeError, ValueError) as e:  # a damaged one is skipped, not fatal
                        self.debug_log(f"bad snapshot from the run skipped: {type(e).__name__}: {e}")
                        continue
                    self._take(snap)
        except NoLiveRun as e:
            lost = str(e)
        return self._ended(lost)

    def _take(self, snap: Snapshot) -> None:
        if snap.step < self._last_step:  # a rollback went back: the plots keep only the live branch
            self.history.rewind(snap.step + 1)
        if snap.stats and snap.step != self._last_step:
            self.history.add(snap.step, snap.stats)
        self._last_step = snap.step
        self._latest = snap
        self._publish(snap)

    def _ended(self, lost: str) -> State:
        last = self._latest
        if self._closed.is_set():  # we left (a detach): the run goes on
            self.ended = self.ended or "detached"
            return "stopped"
        if last.state in ENDING or self._socket_removed():
            final: State = last.state if last.state in ENDING and last.state != "stopping" else "stopped"
            self._latest = dataclasses.replace(last, state=final)
            self.note = self.ended = RUN_STOPPED
            self._say(f"{RUN_STOPPED} ({final} at step {last.step})")
        else:
            final = "error"
            self.note = CONNECTION_LOST
            self.ended = f"{CONNECTION_LOST} ({lost})"
            self._latest = dataclasses.replace(last, state="error", error=(
                f"{CONNECTION_LOST} to the run at {self.run_dir} ({lost}); if it still trains, attach again "
                f"with babyllm-tui --attach {self.run_dir}"))
        self._publish(self._latest)
        return final

    def _socket_removed(self) -> bool:
        """Whether the run removed its socket (it closes it on the way out; a killed process leaves it):
        the last snapshot before a quick stop (nothing left to save) may never have reached us."""
        deadline = time.monotonic() + SOCKET_GONE_S
        while socket_path(self.run_dir).exists():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    def _fill_history(self, points: dict[str, Any]) -> None:
        """The subscribe reply's {stat: [[step, value], ...]} into history, step by step."""
        rows: dict[int, dict[str, float]] = {}
        for name, series in points.items():
            for pair in series if isinstance(series, list) else ():
                with contextlib.suppress(TypeError, ValueError, IndexError):
                    value = pair[1]
                    rows.setdefault(int(pair[0]), {})[str(name)] = math.nan if value is None else float(value)
        for step in sorted(rows):
            self.history.add(step, rows[step])

    # --- controls (each returns at once; the sender thread talks to the run) ------------------------

    def _request(self, what: Request, by: str) -> None:  # (pause, resume, ... from Controls; stop: the run
        self._queue(what)  # saves and stops, and run() returns; close() leaves it training instead)

    def set_settings(self, items: Sequence[tuple[str, str]], by: str = DEFAULT_BY) -> None:
        """Ask the run to change live settings (babyllm.live); it checks them, and a refusal is said."""
        self._queue(wire.SET_OP, {"settings": dict(items)})

    def _queue(self, op: str, fields: dict[str, Any] | None = None) -> None:
        if self.read_only:
            self.refused.append(op)  # a viewer never steers the run
        elif not self._closed.is_set():
            self._ops.put((op, fields or {}))

    def _send_ops(self) -> None:
        while (item := self._ops.get()) is not None:
            op, fields = item
            try:
                self._control.call(op, **fields)
            except RunRefused as e:
                self._say(f"{op} refused by the run: {e}")
            except NoLiveRun as e:
                if not self._closed.is_set():
                    self._say(f"{op} not sent: {e}")

    def debug_log(self, text: str) -> None:
        self.debug_lines.append(text)

    # --- chat -------------------------------------------------------------------------------------

    def chat_session(self) -> ChatSession:
        """A conversation with the live model on a connection of its own (a viewer's: the newest save, here)."""
        if self.read_only:
            return SavedChat(self.run_dir)
        conn = _Connection(self.run_dir, self.name, self.timeout)
        conn.wait_forever()  # (a long reply on a busy trainer must not time out between pieces)
        self._chats.append(conn)
        return RemoteChat(conn)

    # --- leaving ----------------------------------------------------------------------------------

    def close(self) -> None:
        """Close every connection (run() returns); the run trains on."""
        self.ended = self.ended or "detached"
        self._closed.set()
        with contextlib.suppress(AttributeError):
            self._ops.put(None)
        for conn in (self._stream, *self._chats):
            if conn is not None:
                conn.interrupt()
        self._control.interrupt()


class RemoteChat:
    """ChatSession over one connection: the conversation lasts as long as the connection."""

    def __init__(self, conn: _Connection) -> None:
        self._conn = conn
        self.notices: list[str] = []
        self._hit_limit = False
        self._busy = threading.Lock()  # one request at a time on the connection

    @property
    def hit_limit(self) -> bool:
        return self._hit_limit

    def stream(self, prompt: str) -> Iterator[str]:
        """The live model's reply, piece by piece; BabyError when it could not be written (or the run went)."""
        if not self._busy.acquire(blocking=False):
            raise BabyError("a reply is already being written")
        try:
            want = self._conn.send("chat", prompt=prompt)
            ended = False
            try:
                for msg in self._conn.messages():
                    if msg.get("id") == want:
                        ended = True
                        self._end(msg)
                        return
                    if msg.get("type") == "chat":
                        yield str(msg.get("text") or "")
            finally:
                if not ended:  # the reader stopped early: the run stops writing, the connection stays usable
                    self._cancel(want)
        finally:
            self._busy.release()

    def _end(self, msg: dict[str, Any]) -> None:
        self._hit_limit = bool(msg.get("hit_limit"))
        self.notices.extend(str(n) for n in msg.get("notices") or ())
        if not msg.get("ok") and not msg.get("cancelled"):
            raise BabyError(str(msg.get("error") or "the reply could not be written"))

    def _cancel(self, want: int) -> None:
        with contextlib.suppress(BabyError):
            self._conn.send("chat_cancel")
            for msg in self._conn.messages():
                if msg.get("id") == want:
                    return

    def command(self, line: str) -> str:
        """/temp 0.8, /help, ... on the live model's chat settings (as in the chat pane)."""
        if not self._busy.acquire(blocking=False):
            raise BabyError("a reply is being written: try the command when it ends")
        try:
            reply = self._conn.request("chat_command", line=line)
        finally:
            self._busy.release()
        self.notices.extend(str(n) for n in reply.get("notices") or ())
        if not reply.get("ok"):
            raise BabyError(str(reply.get("error") or f"{line}: refused"))
        return str(reply.get("reply") or "")
