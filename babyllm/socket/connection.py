"""One client connection of the control socket: its buffers and chat state, who is on the other end (pid, uid,
the name its events give it), and the small reply helpers."""

from __future__ import annotations

import socket
import struct
import threading
from dataclasses import dataclass, field
from typing import Any

from babyllm.snapshot import ChatSession

NAME_LIMIT = 80  # characters of a client's name kept (it goes into the run's events)


@dataclass(eq=False)
class Connection:
    """One client connection; touched only on the server thread, except `closed` and `cancel` (read by chat)."""

    sock: socket.socket
    pid: int
    inbox: bytearray = field(default_factory=bytearray)
    outbox: bytearray = field(default_factory=bytearray)
    skipping: bool = False  # inside a line that was too long: drop bytes up to its newline
    writing: bool = False  # registered for EVENT_WRITE
    subscribed: bool = False
    snapshot_waiting: bool = False  # the newest snapshot is due to this subscriber once its outbox drains
    chatting: bool = False  # a reply is being written (set and cleared on the server thread)
    cancel: threading.Event = field(default_factory=threading.Event)
    closed: bool = False
    session: ChatSession | None = None
    session_lock: threading.Lock = field(default_factory=threading.Lock)
    name: str = ""


def peer(sock: socket.socket) -> tuple[int | None, int | None]:
    """(pid, uid) of the connecting process (SO_PEERCRED, Linux); (None, None) where not available."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return None, None
    try:
        pid, uid, _gid = struct.unpack("3i", sock.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i")))
    except OSError:
        return None, None
    return pid, uid


def client_name(raw: Any, pid: int) -> str:
    """The request's "client" as it may go into an event: printable, bounded; else the peer's pid."""
    if not isinstance(raw, str) or not raw.strip():
        return f"pid {pid}"
    text = "".join(c if c.isprintable() else "?" for c in raw.strip())
    return text if len(text) <= NAME_LIMIT else text[: NAME_LIMIT - 1] + "…"


def with_id(reply: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
    if "id" in request:
        reply["id"] = request["id"]
    return reply


def take_notices(session: ChatSession) -> list[str]:
    notices = [str(n) for n in session.notices]
    session.notices[:] = []
    return notices
