"""The control socket's wire format: one JSON object per line, both ways (never pickle).

A client sends requests ``{"op": OP, "id": N, "client": NAME, ...}``; the run replies with objects
carrying the same ``id``. ``ok`` is true or false (with ``error``: one line saying why). Ops:

    hello                 -> {ok, pid, run_dir, world_size, protocol}
    status                -> {ok, snapshot}
    pause | resume | save | checkpoint | rollback | stop   (babyllm.control.OPS: what each does)
                          -> {ok} once queued (the Tutor acts between steps; its event names the client),
                             or {ok: false, error} when the run cannot (e.g. rollback on several ranks)
    set {settings}        -> {ok} once queued (applied together at the next step boundary, on every rank at
                             the same step; an event per key names the client), or {ok: false, error} and
                             none of them queued: a bad value (the same line as --set gives) or a key that
                             cannot change mid-run, with the reason. settings is {"section.key": value, ...}
                             (babyllm.live.LIVE_KEYS); a value is the text after --set KEY= (a JSON number
                             or bool is taken as its TOML text). The snapshot's ``overrides``
                             (key -> value) are the changes that differ from the run's config, its
                             ``settings`` every live setting's value now.
    subscribe             -> {ok, history: {stat: [[step, value], ...]}} then, unasked, a stream of
                             {type: "snapshot", snapshot} (a slow client misses some: only the newest waits);
                             the history is thinned (neighbours averaged) so that its line fits in MAX_LINE
    chat {prompt}         -> {type: "chat", text} pieces as the live model writes them, then
                             {type: "chat_end", id, ok, hit_limit, notices} (ok false with error when the
                             reply could not be written; cancelled: true after a chat_cancel). One reply
                             at a time per connection; the conversation lasts as long as the connection.
    chat_command {line}   -> {ok, reply, notices}      (/help, /temp 0.8, ... as in the chat pane)
    chat_cancel           -> {ok}                       (the reply in progress ends at its next piece)

Unasked lines carry ``type``; replies to a request carry ``id`` (chat_end carries both: request("chat")
returns it, the pieces before it wait in messages()). A line longer than MAX_LINE, not UTF-8, not
JSON or not an object gets ``{ok: false, error}`` and the connection carries on (a line too long is
skipped up to its newline). Snapshots travel as plain JSON: the fields of babyllm.snapshot.Snapshot
(and of its Sample, Corpus and Events), non-finite numbers as null, read back by babyllm.socket.codec's
rules (a field an older run does not send takes its default). The socket is the run's owner's (mode
0600; a peer of another uid, root excepted, gets one ``{ok: false, error}`` line and is closed); the
server is babyllm.socket.endpoint.
"""

from __future__ import annotations

import json
from typing import Any

from babyllm import control
from babyllm.snapshot import Snapshot
from babyllm.socket import codec

PROTOCOL = 1
MAX_LINE = 1 << 20  # bytes in one line, either way
OUTBOX_LIMIT = 4 << 20  # bytes queued for one client before it is dropped (it stopped reading)
SET_OP = control.SET.name
CONTROL_OPS: tuple[str, ...] = tuple(op.name for op in control.CONTROL_OPS)  # (babyllm.control's op table)
OPS = ("hello", "status", *CONTROL_OPS, SET_OP, "subscribe", "chat", "chat_command", "chat_cancel")


class WireError(ValueError):
    """A line that is not a request: the reply's error says why."""


def encode(obj: dict[str, Any]) -> bytes:
    """One line: compact JSON (non-finite floats as null) and a newline."""
    return json.dumps(codec.finite(obj), separators=(",", ":"), allow_nan=False).encode() + b"\n"


def decode(line: bytes) -> dict[str, Any]:
    """A line's object (without its newline); WireError names what is wrong."""
    if len(line) > MAX_LINE:
        raise WireError(f"line longer than {MAX_LINE} bytes")
    try:
        obj = json.loads(line.decode("utf-8"))
    except UnicodeDecodeError:
        raise WireError("line is not UTF-8") from None
    except json.JSONDecodeError as e:
        raise WireError(f"line is not JSON ({e.msg} at column {e.colno})") from None
    if not isinstance(obj, dict):
        raise WireError("line is not a JSON object")
    return obj


def request_op(obj: dict[str, Any]) -> str:
    """The request's op, checked against OPS."""
    op = obj.get("op")
    if op not in OPS:
        raise WireError(f"unknown op {op!r}: one of {', '.join(OPS)}")
    return str(op)


# --- snapshots ------------------------------------------------------------------------------------

_read_snapshot = codec.reader(Snapshot)  # derived from the dataclasses (babyllm.socket.codec's rules)


def snapshot_to_json(snap: Snapshot) -> dict[str, Any]:
    """A Snapshot as plain JSON values, non-finite numbers as null (the inverse of snapshot_from_json)."""
    out: dict[str, Any] = codec.to_json(snap)
    return out


def snapshot_from_json(obj: dict[str, Any]) -> Snapshot:
    """A Snapshot from snapshot_to_json's output, tolerantly: unknown keys ignored, a missing or damaged field
    at its default (null numbers as nan, best_val as inf), a damaged sample or event left out."""
    return _read_snapshot(obj)
