"""A client of a live run's control socket (babyllm.socket.wire): `babyllm ctl`, `--attach` and tests use it.

One ControlClient is one connection; requests on it are answered in order. A cockpit uses one
connection for control, one for the snapshot stream and one for chat, so a long reply never holds
up a pause.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from babyllm.errors import BabyError
from babyllm.run.runfiles import CONTROL_SOCKET
from babyllm.snapshot import Snapshot
from babyllm.socket import wire

MAX_UNIX_PATH = 107  # bytes sun_path holds (Linux), less the terminating NUL


class NoLiveRun(BabyError):
    """Nothing answers on the run's socket (it is not training, or the process was killed)."""


class RunRefused(BabyError):
    """The run answered with ok: false (the message is its reason)."""

    exit_status = 1


def socket_path(run_dir: Path) -> Path:
    return Path(run_dir) / CONTROL_SOCKET


@contextlib.contextmanager
def unix_address(path: Path) -> Iterator[str]:
    """An address for `path` that fits sun_path: itself, or the path through an open fd of its folder."""
    text = os.fsencode(path)
    if len(text) <= MAX_UNIX_PATH:
        yield str(path)
        return
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        yield f"/proc/self/fd/{fd}/{path.name}"
    finally:
        os.close(fd)


def is_live(run_dir: Path, timeout: float = 1.0) -> bool:
    """Whether a training process answers on the run's socket."""
    try:
        with ControlClient(run_dir, timeout=timeout) as c:
            c.call("hello")
        return True
    except BabyError:
        return False


class ControlClient:
    """One connection to a run's control socket; every call raises NoLiveRun if the run goes away."""

    def __init__(self, run_dir: Path, name: str = "ctl", timeout: float | None = 5.0) -> None:
        self.run_dir = Path(run_dir)
        self.name = f"{name} (pid {os.getpid()})"
        self._next_id = 0
        self._buffer = b""
        self._unasked: list[dict[str, Any]] = []
        path = socket_path(self.run_dir)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            with unix_address(path) as address:
                sock.connect(address)
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            sock.close()
            raise NoLiveRun(f"{self.run_dir}: no live run answers (nothing is training it, "
                            "or its process was killed)") from None
        except OSError as e:
            sock.close()
            if e.errno in (errno.EACCES, errno.EPERM):
                raise RunRefused(f"{path}: permission denied (the run belongs to another user)") from None
            raise NoLiveRun(f"{path}: cannot connect ({e.strerror or e})") from None
        self._sock = sock

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()

    def __enter__(self) -> ControlClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, op: str, **fields: Any) -> int:
        """Send a request; its id (the reply carries it)."""
        self._next_id += 1
        self._write(wire.encode({"op": op, "id": self._next_id, "client": self.name, **fields}))
        return self._next_id

    def request(self, op: str, **fields: Any) -> dict[str, Any]:
        """Send a request and wait for its reply (unasked messages that arrive first are kept for messages())."""
        want = self.send(op, **fields)
        while True:
            msg = self.read()
            if msg.get("id") == want:
                return msg
            if "type" in msg:
                self._unasked.append(msg)
            elif "id" not in msg and msg.get("ok") is False:  # a refusal of the connection itself (another uid)
                raise RunRefused(str(msg.get("error") or "the run refused this connection"))

    def call(self, op: str, **fields: Any) -> dict[str, Any]:
        """request(), raising RunRefused when the run says no."""
        reply = self.request(op, **fields)
        if not reply.get("ok"):
            raise RunRefused(str(reply.get("error") or f"{op} refused"))
        return reply

    def hello(self) -> tuple[int, int]:
        """The run's (pid, world size), once it is known to speak this protocol."""
        reply = self.call("hello")
        if reply.get("protocol") != wire.PROTOCOL:
            raise BabyError(f"{self.run_dir}: the run speaks control protocol {reply.get('protocol')!r}, this "
                            f"babyllm speaks {wire.PROTOCOL}; use the babyllm that is training it")
        pid, ranks = reply.get("pid"), reply.get("world_size")
        return pid if isinstance(pid, int) else 0, ranks if isinstance(ranks, int) else 1

    def status(self) -> Snapshot:
        return wire.snapshot_from_json(self.call("status")["snapshot"])

    def messages(self) -> Iterator[dict[str, Any]]:
        """Every message as it arrives (a subscription's snapshots, a chat's pieces), until the run goes away."""
        while True:
            if self._unasked:
                yield self._unasked.pop(0)
            else:
                yield self.read()

    def read(self) -> dict[str, Any]:
        """The next line from the run, decoded."""
        while b"\n" not in self._buffer:
            try:
                chunk = self._sock.recv(1 << 16)
            except TimeoutError:
                raise NoLiveRun(f"{self.run_dir}: the run did not answer in time") from None
            except OSError as e:
                raise NoLiveRun(f"{self.run_dir}: the connection was lost ({e.strerror or e})") from None
            if not chunk:
                raise NoLiveRun(f"{self.run_dir}: the run closed the connection (it stopped, or its process died)")
            self._buffer += chunk
            if len(self._buffer) > wire.MAX_LINE and b"\n" not in self._buffer:
                raise NoLiveRun(f"{self.run_dir}: the run sent a line longer than {wire.MAX_LINE} bytes")
        line, self._buffer = self._buffer.split(b"\n", 1)
        try:
            return wire.decode(line)
        except wire.WireError as e:
            raise NoLiveRun(f"{self.run_dir}: the run sent a bad line ({e})") from None

    def _write(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as e:
            # A run that refuses the connection (another uid) writes one line and closes, which can
            # beat our first write: that line is still ours to read, and it is the real answer.
            refusal = self._refusal_left_behind()
            if refusal is not None:
                raise RunRefused(refusal) from None
            raise NoLiveRun(f"{self.run_dir}: the connection was lost ({e.strerror or e})") from None

    def _refusal_left_behind(self) -> str | None:
        """The error of a no-id refusal line the run sent before closing, if one is waiting unread."""
        try:
            msg = self.read()
        except NoLiveRun:
            return None
        if "id" not in msg and msg.get("ok") is False:
            return str(msg.get("error") or "the run refused this connection")
        return None
