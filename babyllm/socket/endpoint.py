"""The control endpoint: the server side of a run's control socket (the protocol is babyllm.socket.wire).

Every training process serves one (the Tutor starts it in run() on rank 0): `babyllm ctl`, a cockpit's
--attach and scripts talk to the live run through it. One server thread multiplexes every connection
with `selectors` on non-blocking sockets, so no client can hold up another or the trainer:

- the trainer only hands snapshots over (publish() stores a reference and wakes the selector through a
  socketpair); encoding happens here, once per snapshot, and only the newest snapshot waits per
  subscriber (a slow one misses some, never queues them);
- each connection has a bounded inbox (a line over wire.MAX_LINE gets an error and is skipped to its
  newline) and a bounded outbox (over wire.OUTBOX_LIMIT the client is dropped: it stopped reading);
- a chat reply runs in a worker thread per reply (one at a time per connection), on the live model
  through the control's chat_session(); its pieces come back here to be queued for that client.

Who may connect: the socket is created mode 0600 in the run directory, and each peer's uid is checked
with SO_PEERCRED: the run's owner and root are served (root could read the run's files anyway), any
other uid gets one error line and is closed. A stale socket left by a killed process (nothing answers)
is replaced; a live one refuses the start. The socket is removed on close() if it is still ours (same
inode), so a newer process's socket is never removed by an older one. close() first hands subscribers
the last snapshot published (the run's final state), as far as their sockets take it without waiting.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import stat
import threading
import traceback
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from queue import Empty, SimpleQueue
from types import MappingProxyType
from typing import Any

from babyllm import live
from babyllm.control import CONTROL_OPS, refusal
from babyllm.errors import BabyError, ConfigError
from babyllm.snapshot import ChatSession, LiveSettings, Say, Snapshot, TutorControl
from babyllm.socket import wire
from babyllm.socket.client import socket_path, unix_address
from babyllm.socket.connection import Connection, client_name, peer, take_notices, with_id

# The TutorControl method each control op calls (each takes who asked as `by`), from the op table.
CONTROL_METHODS: Mapping[str, str] = MappingProxyType({op.name: op.method for op in CONTROL_OPS})
RECV_BYTES = 1 << 16
BACKLOG = 16
HISTORY_POINTS = 2000  # per stat in a subscribe reply at most (fewer when the line would pass MAX_LINE)
POINT_BYTES = 32  # about what one [step, value] pair takes in JSON (a first guess at how many fit)
JOIN_S = 5.0  # close(): how long to wait for the server thread
STALE_PROBE_S = 1.0  # start(): how long an existing socket may take to answer before it is called stale


class Endpoint:
    """A run's control socket server: start() binds it and starts the server thread, close() ends both."""

    def __init__(self, run_dir: Path, control: TutorControl, *, world_size: int = 1, log: Say | None = None,
                 allowed_uids: Collection[int] | None = None) -> None:
        self.run_dir = Path(run_dir)
        self.path = socket_path(self.run_dir)
        self.control = control
        self.world_size = world_size
        self._log = log or (lambda _m: None)
        self.owner_uid = os.geteuid()
        # The run's owner and root (who can read the run's files anyway); tests pass others to be refused.
        self.allowed_uids = frozenset((self.owner_uid, 0) if allowed_uids is None else allowed_uids)
        self._sel = selectors.DefaultSelector()
        self._listener: socket.socket | None = None
        self._ident: tuple[int, int] | None = None  # (st_dev, st_ino) of the socket we bound
        self._wake_r, self._wake_w = socket.socketpair()
        for s in (self._wake_r, self._wake_w):
            s.setblocking(False)
        self._posts: SimpleQueue[tuple[Connection, dict[str, Any]]] = SimpleQueue()  # from chat workers
        self._conns: set[Connection] = set()
        self._latest: Snapshot | None = None
        self._version = 0  # bumped by publish(); the server thread encodes each version once
        self._sent_version = 0
        self._snapshot_line = b""
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._handlers: dict[str, Callable[[Connection, dict[str, Any]], dict[str, Any] | None]] = {
            "hello": self._hello, "status": self._status, "subscribe": self._subscribe, "chat": self._chat,
            "chat_command": self._chat_command, "chat_cancel": self._chat_cancel,
            wire.SET_OP: self._set, **{op: self._control_op for op in CONTROL_METHODS}}

    # --- the trainer's side -----------------------------------------------------------------------

    def start(self) -> None:
        """Bind the socket (replacing a stale one) and start serving; BabyError names what went wrong."""
        self._clear_stale()
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            old = os.umask(0o177)  # born 0600: no moment where another user could connect
            try:
                with unix_address(self.path) as address:
                    listener.bind(address)
            finally:
                os.umask(old)
            os.chmod(self.path, 0o600)
            st = os.stat(self.path)
            self._ident = (st.st_dev, st.st_ino)
            listener.listen(BACKLOG)
            listener.setblocking(False)
        except OSError as e:
            listener.close()
            raise BabyError(f"{self.path}: control socket not started ({e.strerror or e})") from None
        self._listener = listener
        self._sel.register(listener, selectors.EVENT_READ, None)
        self._sel.register(self._wake_r, selectors.EVENT_READ, None)
        self._thread = threading.Thread(target=self._serve, name="control-endpoint", daemon=True)
        self._thread.start()

    def publish(self, snap: Snapshot) -> None:
        """Hand the newest snapshot to the server thread (returns at once, whatever the clients do)."""
        self._latest = snap
        self._version += 1
        self._wake()

    def close(self) -> None:
        """Stop serving, drop every client, and remove the socket if it is still the one we bound."""
        self._stopping = True
        self._wake()
        if self._thread is not None:
            self._thread.join(JOIN_S)
        for conn in list(self._conns):
            self._drop(conn)
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.close()
            self._remove_socket()
            self._listener = None
        for s in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                s.close()
        with contextlib.suppress(Exception):
            self._sel.close()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):  # a full wake pipe already wakes the selector
            self._wake_w.send(b"\0")

    def _clear_stale(self) -> None:
        """A socket left by a killed process is removed; one a live process answers on refuses the start."""
        try:
            st = os.lstat(self.path)
        except FileNotFoundError:
            return
        except OSError as e:
            raise BabyError(f"{self.path}: cannot be checked ({e.strerror or e})") from None
        if not stat.S_ISSOCK(st.st_mode):
            raise BabyError(f"{self.path}: exists and is not a socket; move it away to serve this run's controls")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        probe.settimeout(STALE_PROBE_S)
        try:
            with unix_address(self.path) as address:
                probe.connect(address)
        except (ConnectionRefusedError, FileNotFoundError):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)  # stale: its process is gone
            return
        except OSError as e:
            raise BabyError(f"{self.path}: cannot be checked ({e.strerror or e})") from None
        finally:
            probe.close()
        raise BabyError(f"run {self.run_dir}: another live process already serves its control socket "
                        f"({self.path}); stop that process first")

    def _remove_socket(self) -> None:
        try:
            st = os.lstat(self.path)
            if (st.st_dev, st.st_ino) == self._ident:
                os.unlink(self.path)
        except OSError:
            pass  # gone already, or the folder is: nothing of ours to remove

    # --- the server thread ------------------------------------------------------------------------

    def _serve(self) -> None:
        while not self._stopping:
            try:
                for key, mask in self._sel.select(timeout=1.0):
                    self._ready(key, mask)
                self._round()
            except Exception as e:  # noqa: BLE001 - the server must outlive any one fault
                self._log(f"control socket: {type(e).__name__}: {e}\n{traceback.format_exc()}")
        try:  # closing: the run's last snapshot (its final state) goes to whoever takes it now, unwaited
            self._round()
        except Exception as e:  # noqa: BLE001
            self._log(f"control socket: {type(e).__name__}: {e}")

    def _round(self) -> None:
        self._drain_posts()
        self._deliver_snapshot()

    def _ready(self, key: selectors.SelectorKey, mask: int) -> None:
        conn: Connection | None = key.data
        if conn is None:
            if key.fileobj is self._listener:
                self._accept()
            else:
                with contextlib.suppress(OSError):
                    while self._wake_r.recv(4096):
                        pass
            return
        try:
            if mask & selectors.EVENT_READ and not conn.closed:
                self._read(conn)
            if mask & selectors.EVENT_WRITE and not conn.closed:
                self._flush(conn)
        except OSError as e:  # a dead peer (reset, broken pipe): that client only
            self._drop(conn, f"connection lost ({e.strerror or e})")

    def _accept(self) -> None:
        assert self._listener is not None
        while True:
            try:
                sock, _ = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:  # e.g. out of file descriptors: that client waits or gives up
                self._log(f"control socket: accept failed ({e.strerror or e})")
                return
            sock.setblocking(False)
            pid, uid = peer(sock)
            if uid is not None and uid not in self.allowed_uids:
                with contextlib.suppress(OSError):
                    sock.send(wire.encode({"ok": False, "error": f"uid {uid} may not control this run "
                                           f"(it belongs to uid {self.owner_uid})"}))
                sock.close()
                self._log(f"control socket: refused pid {pid} (uid {uid})")
                continue
            conn = Connection(sock, pid if pid is not None else 0)
            conn.name = f"pid {conn.pid}"
            self._conns.add(conn)
            self._sel.register(sock, selectors.EVENT_READ, conn)

    def _read(self, conn: Connection) -> None:
        data = conn.sock.recv(RECV_BYTES)
        if not data:
            self._drop(conn)
            return
        while data and not conn.closed:
            cut = data.find(b"\n")
            if conn.skipping:  # the rest of a line that was too long
                if cut < 0:
                    return
                conn.skipping, data = False, data[cut + 1:]
                continue
            if cut < 0:
                conn.inbox += data
                if len(conn.inbox) > wire.MAX_LINE:
                    conn.inbox.clear()
                    conn.skipping = True
                    self._send(conn, {"ok": False, "error": f"line longer than {wire.MAX_LINE} bytes: skipped"})
                return
            line = bytes(conn.inbox) + data[:cut]
            conn.inbox.clear()
            data = data[cut + 1:]
            self._line(conn, line)

    def _line(self, conn: Connection, line: bytes) -> None:
        """Answer one request line (never raising for anything the client sent)."""
        if not line.strip():
            return  # a blank line (a person typing at the socket)
        obj: dict[str, Any] = {}
        try:
            obj = wire.decode(line)
            op = wire.request_op(obj)
            conn.name = client_name(obj.get("client"), conn.pid)
            reply = self._handlers[op](conn, obj)
        except (wire.WireError, BabyError) as e:
            reply = {"ok": False, "error": str(e)}
        except Exception as e:  # noqa: BLE001 - a bug here answers that request, never ends the server
            self._log(f"control socket: {type(e).__name__}: {e}\n{traceback.format_exc()}")
            reply = {"ok": False, "error": f"internal error ({type(e).__name__}: {e}); see the run's debug.log"}
        if reply is not None:
            self._send(conn, with_id(reply, obj))

    def _send(self, conn: Connection, obj: dict[str, Any]) -> None:
        self._queue(conn, wire.encode(obj))

    def _queue(self, conn: Connection, data: bytes) -> None:
        if conn.closed:
            return
        if len(conn.outbox) + len(data) > wire.OUTBOX_LIMIT:
            self._drop(conn, f"it stopped reading ({len(conn.outbox)} bytes waiting)")
            return
        conn.outbox += data
        try:
            self._flush(conn)
        except OSError as e:
            self._drop(conn, f"connection lost ({e.strerror or e})")

    def _flush(self, conn: Connection) -> None:
        """Send what the socket takes now; the newest snapshot follows once the outbox is empty."""
        while True:
            if conn.outbox:
                try:
                    sent = conn.sock.send(conn.outbox)
                except (BlockingIOError, InterruptedError):
                    sent = 0
                del conn.outbox[:sent]
                if conn.outbox:
                    break
            if conn.snapshot_waiting and self._snapshot_line:
                conn.snapshot_waiting = False
                conn.outbox += self._snapshot_line
                continue
            break
        want = bool(conn.outbox)
        if want != conn.writing:
            conn.writing = want
            self._sel.modify(conn.sock, selectors.EVENT_READ | (selectors.EVENT_WRITE if want else 0), conn)

    def _drop(self, conn: Connection, why: str = "") -> None:
        if conn.closed:
            return
        conn.closed = True
        conn.cancel.set()  # a reply being written ends at its next piece
        self._conns.discard(conn)
        with contextlib.suppress(KeyError, ValueError, OSError):
            self._sel.unregister(conn.sock)
        with contextlib.suppress(OSError):
            conn.sock.close()
        if why:
            self._log(f"control socket: dropped {conn.name}: {why}")

    def _drain_posts(self) -> None:
        """Queue what chat workers wrote for their clients."""
        while True:
            try:
                conn, obj = self._posts.get_nowait()
            except Empty:
                return
            if obj.get("type") == "chat_end":
                conn.chatting = False  # before it is sent: the client may ask again as soon as it reads it
            self._send(conn, obj)

    def _deliver_snapshot(self) -> None:
        """Encode the newest snapshot once; each subscriber gets it when its outbox is empty."""
        version = self._version
        if version == self._sent_version or self._latest is None:
            return
        self._sent_version = version
        subscribers = [c for c in self._conns if c.subscribed]
        if not subscribers:
            self._snapshot_line = b""
            return
        self._snapshot_line = wire.encode({"type": "snapshot", "snapshot": wire.snapshot_to_json(self._latest)})
        for conn in subscribers:
            conn.snapshot_waiting = True  # replaces any older one still waiting
            self._queue(conn, b"")

    # --- requests ---------------------------------------------------------------------------------

    def _hello(self, conn: Connection, obj: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "pid": os.getpid(), "run_dir": str(self.run_dir), "world_size": self.world_size,
                "protocol": wire.PROTOCOL}

    def _snapshot(self) -> Snapshot:
        return self._latest if self._latest is not None else self.control.snapshot()

    def _status(self, conn: Connection, obj: dict[str, Any]) -> dict[str, Any]:
        return {"ok": True, "snapshot": wire.snapshot_to_json(self._snapshot())}

    def _control_op(self, conn: Connection, obj: dict[str, Any]) -> dict[str, Any]:
        op = obj["op"]
        refused = refusal(op, self.world_size)
        if refused is not None:
            return {"ok": False, "error": refused}
        getattr(self.control, CONTROL_METHODS[op])(by=conn.name)
        return {"ok": True}

    def _set(self, conn: Connection, obj: dict[str, Any]) -> dict[str, Any]:
        settings = obj.get("settings")
        if (not isinstance(settings, dict) or not settings
                or not all(isinstance(v, str | int | float | bool) for v in settings.values())):
            return {"ok": False,
                    "error": 'set needs {"settings": {"section.key": value, ...}}, e.g. {"train.lr": 0.001}'}
        if not isinstance(self.control, LiveSettings):
            return {"ok": False, "error": "this run cannot change its settings mid-run"}
        try:
            self.control.set_settings([(k, live.value_text(v)) for k, v in settings.items()], by=conn.name)
        except ConfigError as e:
            return {"ok": False, "error": str(e)}
        return {"ok": True}

    def _subscribe(self, conn: Connection, obj: dict[str, Any]) -> dict[str, Any] | None:
        conn.subscribed = True
        self._send(conn, with_id({"ok": True, "history": self._history()}, obj))
        if self._snapshot_line and self._sent_version == self._version:
            conn.snapshot_waiting = True  # the newest is encoded already: it follows the history
            self._queue(conn, b"")
            return None
        if self._latest is None:
            self._latest = self.control.snapshot()
        self._sent_version = -1  # encode the newest at the end of this round (no one was subscribed)
        return None

    def _history(self) -> dict[str, list[tuple[int, float]]]:
        """Every stat's points, thinned so the subscribe reply fits in one line."""
        history = self.control.history
        names = max(1, len(history.names()))
        n = max(1, min(HISTORY_POINTS, wire.MAX_LINE // (POINT_BYTES * names)))
        while True:
            points = history.points(n)
            if n == 1 or len(wire.encode({"ok": True, "id": 0, "history": points})) < wire.MAX_LINE - 64:
                return points
            n //= 2

    def _chat(self, conn: Connection, obj: dict[str, Any]) -> dict[str, Any] | None:
        prompt = obj.get("prompt")
        end: dict[str, Any] = with_id({"type": "chat_end", "ok": False, "hit_limit": False, "notices": []}, obj)
        if not isinstance(prompt, str):
            return {**end, "error": "chat: the request needs a prompt (text)"}
        if conn.chatting:
            return {**end, "error": "a reply is already being written on this connection (chat_cancel ends it)"}
        conn.chatting = True
        conn.cancel.clear()
        threading.Thread(target=self._write_reply, args=(conn, prompt, end), name="control-chat",
                         daemon=True).start()
        return None

    def _write_reply(self, conn: Connection, prompt: str, end: dict[str, Any]) -> None:
        """A chat worker: streams one reply from the live model into the client's outbox."""
        end = dict(end, ok=True)
        try:
            session = self._session(conn)
            pieces = session.stream(prompt)
            try:
                for piece in pieces:
                    if conn.cancel.is_set():
                        end["cancelled"] = True
                        break
                    self._post(conn, {"type": "chat", "text": piece})
            finally:
                close = getattr(pieces, "close", None)
                if close is not None:
                    close()  # the session's reply lock is released before chat_end goes out
            end["hit_limit"] = bool(session.hit_limit) and not end.get("cancelled")
            end["notices"] = take_notices(session)
        except BabyError as e:
            end.update(ok=False, error=str(e))
        except Exception as e:  # noqa: BLE001 - a failed reply is reported to its client, never fatal
            self._log(f"control socket: chat failed: {type(e).__name__}: {e}\n{traceback.format_exc()}")
            end.update(ok=False, error=f"chat failed ({type(e).__name__}: {e}); see the run's debug.log")
        self._post(conn, end)

    def _post(self, conn: Connection, obj: dict[str, Any]) -> None:
        self._posts.put((conn, obj))
        self._wake()

    def _session(self, conn: Connection) -> ChatSession:
        """The connection's conversation with the live model (made at its first chat or command)."""
        with conn.session_lock:
            if conn.session is None:
                conn.session = self.control.chat_session()
            return conn.session

    def _chat_command(self, conn: Connection, obj: dict[str, Any]) -> dict[str, Any]:
        line = obj.get("line")
        if not isinstance(line, str):
            return {"ok": False, "error": "chat_command: the request needs a line (text, e.g. /help)"}
        session = self._session(conn)
        reply = session.command(line)
        return {"ok": True, "reply": reply, "notices": take_notices(session)}

    def _chat_cancel(self, conn: Connection, obj: dict[str, Any]) -> dict[str, Any]:
        if conn.chatting:
            conn.cancel.set()
        return {"ok": True}


