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
skipped up to its newline). Snapshots travel as plain JSON (snapshot_to_json), with non-finite
numbers as null; a snapshot's ``system`` holds the training process's readings (keys and units in
babyllm.system.READINGS; absent in an older run's snapshots: read as none), its ``gate_hist`` the
memories' gate histograms (name -> counts). The socket is the run's
owner's (mode 0600; a peer of another uid, root excepted, gets one ``{ok: false, error}`` line and is
closed); the server is babyllm.socket.endpoint.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from typing import Any

from babyllm import control
from babyllm.snapshot import Corpus, Event, Sample, Snapshot

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
    return json.dumps(_finite(obj), separators=(",", ":"), allow_nan=False).encode() + b"\n"


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


def _finite(x: Any) -> Any:
    if isinstance(x, float):
        return x if math.isfinite(x) else None
    if isinstance(x, dict):
        return {str(k): _finite(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_finite(v) for v in x]
    return x


def _number(x: Any, default: float = math.nan) -> float:
    return float(x) if isinstance(x, int | float) and not isinstance(x, bool) else default


# --- snapshots ------------------------------------------------------------------------------------


def snapshot_to_json(snap: Snapshot) -> dict[str, Any]:
    """A Snapshot as plain JSON values (the inverse of snapshot_from_json)."""
    out = asdict(snap)
    out["best_val"] = snap.best_val if math.isfinite(snap.best_val) else None
    return out


def snapshot_from_json(obj: dict[str, Any]) -> Snapshot:
    """A Snapshot from snapshot_to_json's output (null stats back to nan; unknown keys ignored)."""
    sample = obj.get("sample")
    corpus = obj.get("corpus")
    best = obj.get("best_val")
    return Snapshot(
        step=int(obj.get("step") or 0), tokens=int(obj.get("tokens") or 0), state=obj.get("state") or "idle",
        stats={str(k): _number(v) for k, v in (obj.get("stats") or {}).items()},
        max_steps=int(obj.get("max_steps") or 0),
        sample=Sample(int(sample["step"]), str(sample["context"]), tuple(sample["guesses"]),
                      tuple(sample["truths"])) if isinstance(sample, dict) else None,
        events=tuple(Event(int(e["step"]), e["kind"], str(e["message"]), _number(e.get("time"), 0.0))
                     for e in obj.get("events") or ()),
        event_count=int(obj.get("event_count") or 0), error=obj.get("error"),
        device=str(obj.get("device") or ""), config_name=str(obj.get("config_name") or ""),
        run_dir=str(obj.get("run_dir") or ""), dtype=str(obj.get("dtype") or ""),
        params=int(obj.get("params") or 0),
        corpus=Corpus(str(corpus["root"]), int(corpus["train_tokens"]), int(corpus["val_tokens"]))
        if isinstance(corpus, dict) else None,
        best_val=_number(best, math.inf), best_val_step=int(obj.get("best_val_step") or 0),
        last_save_step=obj.get("last_save_step"), last_save_path=obj.get("last_save_path"),
        last_save_error=obj.get("last_save_error"),
        system={str(k): _number(v) for k, v in (obj.get("system") or {}).items()},
        overrides=dict(obj["overrides"]) if isinstance(obj.get("overrides"), dict) else {},
        settings=dict(obj["settings"]) if isinstance(obj.get("settings"), dict) else {},
        gate_hist=_histograms(obj.get("gate_hist")))


def _histograms(obj: Any) -> dict[str, tuple[int, ...]]:
    """gate_hist's histograms (lists of counts); a damaged one is left out."""
    items = obj.items() if isinstance(obj, dict) else ()
    return {str(k): tuple(v) for k, v in items
            if isinstance(v, list) and all(isinstance(c, int) and not isinstance(c, bool) for c in v)}
