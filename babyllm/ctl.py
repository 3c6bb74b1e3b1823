"""`babyllm ctl` and `babyllm runs`: a script's view of runs, through the control socket and the run's files.

``babyllm ctl RUN ACTION`` sends one request (babyllm.wire) to the live run's control socket and prints
one line: a sentence, or one JSON object with ``--json`` (status: wire's snapshot plus the run's pid and
world_size; errors too: ``{"ok": false, "error": ...}``).
RUN is a run directory or a run name under runs/. Exit codes (cli.exit_code): 0 done, 1 the run
refused (or ``--wait`` ran out of time), 2 no live run answers or RUN is not a run directory.

``babyllm runs`` lists the run directories under runs/, newest first: a live run's state and step come
from its socket, everything else from its files (header.json, the tail of metrics.jsonl, events.jsonl,
the save folders), read only, so listing never disturbs a run; a damaged one shows its problem in its row.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from babyllm import live, runfiles, wire
from babyllm.cli import exit_code
from babyllm.client import ControlClient, NoLiveRun, RunRefused, is_live, socket_path
from babyllm.control import WAITING
from babyllm.durations import duration
from babyllm.errors import BabyError
from babyllm.snapshot import History, Snapshot

CLIENT = "ctl"  # the name the run's events give this client
ACTIONS = ("status", *wire.CONTROL_OPS, wire.SET_OP)
WAITABLE = ("pause", "stop")  # the actions --wait can see through to their end
WAIT_S = 60.0  # --wait's default patience (a stop's final save can take a while)
WAIT_POLL_S = 0.1
LIVE_TIMEOUT_S = 0.5  # how long `runs` waits for each run's socket to answer
METRICS_TAIL = 8 << 20  # `runs` reads the last this many bytes of metrics.jsonl (its best val is of that part)
EVENTS_TAIL = 256 << 10
NOTED_KINDS = ("error", "alarm")  # a stopped run whose last event is one of these shows it
NONE = "-"  # an empty cell
SILENT = "not answering"  # the state of a run whose socket takes connections but answers nothing in time


# --- arguments ------------------------------------------------------------------------------------


def add_ctl_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="run directory, or a run name under runs/")
    p.add_argument("action", choices=ACTIONS, help="what to ask of the live run")
    p.add_argument("settings", nargs="*", metavar="KEY=VALUE",
                   help=f"with {wire.SET_OP}: settings to change mid-run, e.g. train.lr=0.0015 (as --set)")
    p.add_argument("--json", action="store_true", help="one JSON object (status: the snapshot plus pid and world_size)")
    p.add_argument("--wait", action="store_true",
                   help="pause: return once paused; stop: once the run's process has let go of it")
    p.add_argument("--timeout", type=float, metavar="S",
                   help=f"with --wait: give up after S seconds (exit 1; default {WAIT_S:g})")


def add_runs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", type=Path, default=runfiles.RUNS, metavar="D",
                   help=f"the folder of runs (default: {runfiles.RUNS}/)")
    p.add_argument("--json", action="store_true", help="one JSON object per run")
    p.add_argument("--compare", nargs="+", type=Path, metavar="RUN",
                   help="instead: these runs side by side (best validation loss and bpb, steps, tokens, "
                        "time) and the config keys that differ")


def resolve_run(text: str, runs_root: Path = runfiles.RUNS) -> Path:
    """RUN as given: a path, or (when no such path exists) a run name under runs_root; checked."""
    path = Path(text).expanduser()
    if not path.exists() and "/" not in text:
        named = runfiles.run_name_dir(text, runs_root)
        path = named if named.exists() else path
    # A missing directory gets read's hint (the runs there); one that exists must be a run, not a save.
    use: runfiles.Use = "watch" if path.exists() else "read"
    return runfiles.check_run_dir(path, use, flag="RUN", runs_root=runs_root)


# --- ctl ------------------------------------------------------------------------------------------


def ctl_main(args: argparse.Namespace) -> int:
    try:
        if args.timeout is not None and not args.wait:
            raise BabyError("--timeout goes with --wait")
        if bool(args.settings) != (args.action == wire.SET_OP):
            raise BabyError(f"{wire.SET_OP} takes KEY=VALUE settings (e.g. train.lr=0.0015); the other actions none")
        line = ctl(resolve_run(args.run), args.action, as_json=args.json,
                   wait=(WAIT_S if args.timeout is None else args.timeout) if args.wait else None,
                   settings=args.settings)
    except BabyError as e:
        if not args.json:
            raise  # cli.run_command prints it as one line
        print(json.dumps({"ok": False, "error": str(e)}))
        return exit_code(e)
    print(line)
    return 0


def ctl(run_dir: Path, action: str, *, as_json: bool = False, wait: float | None = None,
        settings: Sequence[str] = ()) -> str:
    """Ask the live run in `run_dir` for `action`; the line to print. wait: seconds --wait may take;
    settings: set's KEY=VALUE items (sent as one request: all are applied, or RunRefused says why none is)."""
    if wait is not None and action not in WAITABLE:
        raise BabyError(f"--wait goes with {' or '.join(WAITABLE)}, not {action}")
    changes = dict(live.parse_items(settings)) if settings else {}
    with ControlClient(run_dir, name=CLIENT) as client:
        pid, ranks = hello(client)
        if action == "status":
            snap = client.call("status")["snapshot"]
            return json.dumps({**snap, "pid": pid, "world_size": ranks}) if as_json else status_line(
                wire.snapshot_from_json(snap), pid, ranks, run_dir)
        if changes:
            client.call(wire.SET_OP, settings=changes)
        else:
            client.call(action)
        done: dict[str, Any] = {"ok": True, "action": action, "run_dir": str(run_dir), "pid": pid}
        if wait is not None and action == "pause":
            snap_now = wait_paused(client, wait)
            done.update(state=snap_now.state, step=snap_now.step)
    if wait is not None and action == "stop":
        wait_gone(run_dir, wait)
        done["state"] = "stopped"
    return json.dumps(done) if as_json else action_line(done)


def hello(client: ControlClient) -> tuple[int, int]:
    """The run's (pid, world size), once it is known to speak this protocol."""
    reply = client.call("hello")
    if reply.get("protocol") != wire.PROTOCOL:
        raise BabyError(f"{client.run_dir}: the run speaks control protocol {reply.get('protocol')!r}, this "
                        f"babyllm speaks {wire.PROTOCOL}; use the babyllm that is training it")
    pid, ranks = reply.get("pid"), reply.get("world_size")
    return pid if isinstance(pid, int) else 0, ranks if isinstance(ranks, int) else 1


def wait_paused(client: ControlClient, patience: float) -> Snapshot:
    """The run's snapshot once it waits between steps (paused, or stopped at an alarm)."""
    deadline = time.monotonic() + patience
    while True:
        snap = client.status()
        if snap.state in WAITING:
            return snap
        if time.monotonic() >= deadline:
            raise RunRefused(f"{client.run_dir}: still {snap.state} at step {snap.step:,} after "
                             f"{patience:g}s of --wait (it pauses between steps; a long step or save delays it)")
        time.sleep(WAIT_POLL_S)


def wait_gone(run_dir: Path, patience: float) -> None:
    """Return once nothing answers on the run's socket (its process saved and let go of the run)."""
    deadline = time.monotonic() + patience
    while is_live(run_dir, timeout=max(WAIT_POLL_S, min(1.0, patience))):
        if time.monotonic() >= deadline:
            raise RunRefused(f"{run_dir}: still answering after {patience:g}s of --wait "
                             "(it stops between steps, after its final save)")
        time.sleep(WAIT_POLL_S)


def action_line(done: dict[str, Any]) -> str:
    who = f"{done['run_dir']} (pid {done['pid']})"
    if done.get("state") == "stopped":
        return f"stopped: {who} saved and let go of the run"
    if "state" in done:
        return f"{done['state']} at step {done['step']:,}: {who}"
    return f"{done['action']}: asked {who}; it acts between steps"


def status_line(snap: Snapshot, pid: int, ranks: int, run_dir: Path) -> str:
    """state, step/max, tokens, loss, best val @step, last save, pid, config and device (, its error)."""
    step = f"step {snap.step:,}" + (f"/{snap.max_steps:,}" if snap.max_steps else "")
    parts = [snap.state, step, f"tokens {snap.tokens:,}", f"loss {number(snap.stats.get('loss'))}",
             f"best val {best_text(snap.best_val, snap.best_val_step)}",
             f"last save {live_save_text(snap, run_dir)}", f"pid {pid}" + (f" ({ranks} ranks)" if ranks > 1 else ""),
             f"config {snap.config_name or NONE} on {snap.device or NONE}" + (f" ({snap.dtype})" if snap.dtype else "")]
    if snap.overrides:  # live changes: the values that differ from the run's config
        parts.append("set " + " ".join(f"{k}={v}" for k, v in snap.overrides.items()))
    if snap.last_save_error:
        parts.append(f"save failed: {snap.last_save_error}")
    if snap.error:
        parts.append(snap.error)
    return "  ".join(parts)


def live_save_text(snap: Snapshot, run_dir: Path) -> str:
    if snap.last_save_path is None:
        return NONE
    name = Path(snap.last_save_path).name
    for info in runfiles.list_saves(run_dir):
        if info.path.name == name:
            return save_text(info, time.time())
    return f"step {snap.last_save_step:,}" if snap.last_save_step is not None else name


# --- formatting shared by both commands ------------------------------------------------------------


def number(x: float | None) -> str:
    return f"{x:.4g}" if x is not None and math.isfinite(x) else NONE


def best_text(val: float | None, step: int | None) -> str:
    if val is None or not math.isfinite(val):
        return NONE
    return f"{val:.4f} @{step or 0:,}"


def save_age(info: runfiles.SaveInfo, now: float) -> float | None:
    try:
        return max(0.0, now - info.path.stat().st_mtime)
    except OSError:  # pruned since it was listed
        return None


def save_text(info: runfiles.SaveInfo, now: float) -> str:
    """kind-step and age: checkpoint-1,000 3m07s ago."""
    age = save_age(info, now)
    return f"{info.kind}-{info.step:,}" + (f" {duration(age)} ago" if age is not None else "")


# --- runs -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRow:
    """One run directory as `babyllm runs` shows it."""

    name: str
    run_dir: Path
    state: str  # a live run's snapshot state, "stopped", "never started", SILENT or "?" (unreadable)
    pid: int | None = None  # set while a process trains it
    step: int | None = None
    best_val: float | None = None
    best_val_step: int | None = None
    last_save: runfiles.SaveInfo | None = None
    config_name: str = ""
    device: str = ""
    started: float = 0.0  # header's start time, or the directory's mtime (for sorting)
    note: str = ""  # what is wrong with it, or its last error

    @property
    def live(self) -> bool:
        return self.pid is not None


def runs_main(args: argparse.Namespace) -> int:
    if args.compare:
        from babyllm.compare import compare_main

        return compare_main([resolve_run(str(r), args.root) for r in args.compare], args.json)
    rows = list_runs(args.root)
    if not rows:
        hint = f"no runs in {args.root}/: start one with `babyllm train` or `babyllm-tui`"
        print(hint, file=sys.stderr if args.json else sys.stdout)
        return 0
    now = time.time()
    lines = [json.dumps(row_json(r, now)) for r in rows] if args.json else runs_table(rows, now)
    print("\n".join(lines))
    return 0


def list_runs(root: Path, skip: Path | None = None) -> list[RunRow]:
    """Every directory under root (but `skip`) as a row, newest first; [] when root is missing or empty."""
    try:
        dirs = [p for p in Path(root).iterdir() if p.is_dir() and not (skip and _same_dir(p, skip))]
    except FileNotFoundError:
        return []
    except OSError as e:
        raise BabyError(f"{root}: cannot list the runs ({e.strerror or e})") from None
    return sorted((run_row(d) for d in dirs), key=lambda r: (r.started, r.name), reverse=True)


def _same_dir(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:
        return False


def run_row(d: Path) -> RunRow:
    """One directory's row; whatever is wrong with it goes into the note, never an exception."""
    try:
        return _row(d)
    except (OSError, BabyError) as e:
        text = str(e) if isinstance(e, BabyError) else f"cannot read it ({e.strerror or e})"
        return RunRow(d.name, d, "?", started=_mtime(d), note=_drop_prefix(text, d))


def _row(d: Path) -> RunRow:
    runfiles.check_run_dir(d, "watch", flag="--root")
    header = runfiles.read_header(d)
    saves = runfiles.list_saves(d)
    step, best, best_step, notes = _metrics_view(d)
    if header is None and (d / runfiles.HEADER_FILE).exists():
        notes.append(f"{runfiles.HEADER_FILE} unreadable")
    base = RunRow(d.name, d, "stopped" if step is not None or saves else "never started", None, step, best,
                  best_step, saves[0] if saves else None, header.config_name if header else "",
                  header.device if header else "", header.started if header and header.started else _mtime(d))
    live, trouble = _live_view(d)
    if trouble:
        notes.append(trouble)
    if isinstance(live, str):  # SILENT
        return replace(base, state=SILENT, note="; ".join(notes))
    if live is None:
        last = _last_event(d)
        if last is not None and last.kind in NOTED_KINDS:
            notes.append(f"{last.kind} at step {last.step:,}: {last.message}")
        return replace(base, note="; ".join(notes))
    pid, snap = live
    return replace(base, state=snap.state, pid=pid, step=snap.step,
                 best_val=snap.best_val if math.isfinite(snap.best_val) else None,
                 best_val_step=snap.best_val_step if math.isfinite(snap.best_val) else None,
                 config_name=snap.config_name or base.config_name, device=snap.device or base.device,
                 note="; ".join(notes + ([snap.error] if snap.error else [])))


def _live_view(d: Path) -> tuple[tuple[int, Snapshot] | str | None, str]:
    """((pid, snapshot) of the process training `d`, SILENT, or None when nothing is there; a note on why)."""
    if not socket_path(d).exists():
        return None, ""
    try:
        client = ControlClient(d, name=CLIENT, timeout=LIVE_TIMEOUT_S)
    except NoLiveRun:  # nothing listens: a socket left by a killed process
        return None, f"{runfiles.CONTROL_SOCKET} left behind (its process was killed?)"
    except BabyError as e:  # another user's run
        return None, _drop_prefix(str(e), d)
    try:
        with client:
            return (hello(client)[0], client.status()), ""
    except NoLiveRun as e:  # something listens but does not answer (a hung or stopped process)
        return SILENT, f"{runfiles.CONTROL_SOCKET}: {_drop_prefix(str(e), d)}"
    except BabyError as e:  # it answered but would not tell (another protocol)
        return None, _drop_prefix(str(e), d)


def _metrics_view(d: Path) -> tuple[int | None, float | None, int | None, list[str]]:
    """(last step of the live branch, best val loss in the tail and its step, problems) from metrics.jsonl."""
    path = d / runfiles.METRICS_FILE
    records = runfiles.read_jsonl(path, METRICS_TAIL)
    history = History()  # keeps val_loss only where it changes: a point per validation
    step: int | None = None
    for rec in records:
        back = runfiles.rollback_step(rec)
        if back is not None:  # the steps after `back` were discarded
            history.rewind(back + 1)
            step = back
            continue
        values = runfiles.metrics_values(rec)
        at = runfiles.record_step(values)
        if at is None:
            continue
        if step is not None and at <= step:
            history.rewind(at)  # resumed or rolled back: the later line wins
        history.add(at, {"val_loss": values.get("val_loss", math.nan)})
        step = at
    notes = [] if step is not None or not _size(path) else [f"{runfiles.METRICS_FILE} has no readable step"]
    best = min(((v, s) for s, v in zip(*history.series("val_loss", max_points=1 << 30), strict=True)
                if math.isfinite(v)), default=None)
    return step, best[0] if best else None, best[1] if best else None, notes


def _last_event(d: Path) -> Any:
    for rec in reversed(runfiles.read_jsonl(d / runfiles.EVENTS_FILE, EVENTS_TAIL)):
        ev = runfiles.parse_event(rec, 0.0)
        if ev is not None:
            return ev
    return None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _mtime(d: Path) -> float:
    try:
        return d.stat().st_mtime
    except OSError:
        return 0.0


def _drop_prefix(text: str, d: Path) -> str:
    """A validator's message without the directory it starts with (the row names it already)."""
    return text.removeprefix(f"{d}: ")


COLUMNS = ("NAME", "STATE", "STEP", "BEST VAL", "LAST SAVE", "CONFIG", "NOTE")


def runs_table(rows: Sequence[RunRow], now: float) -> list[str]:
    """The rows as aligned columns under a heading (the note, the last column, is not padded)."""
    cells = [COLUMNS, *(_cells(r, now) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS) - 1)]
    return ["  ".join([*(c[i].ljust(w) for i, w in enumerate(widths)), c[-1]]).rstrip() for c in cells]


def _cells(r: RunRow, now: float) -> tuple[str, ...]:
    state = f"{r.state} pid {r.pid}" if r.live else r.state
    return (r.name, state, f"{r.step:,}" if r.step is not None else NONE, best_text(r.best_val, r.best_val_step),
            save_text(r.last_save, now) if r.last_save else NONE, r.config_name or NONE, r.note)


def row_json(r: RunRow, now: float) -> dict[str, Any]:
    save = r.last_save
    return {"name": r.name, "run_dir": str(r.run_dir), "state": r.state, "live": r.live, "pid": r.pid,
            "step": r.step, "best_val": r.best_val, "best_val_step": r.best_val_step,
            "last_save": None if save is None else {"kind": save.kind, "step": save.step, "path": str(save.path),
                                                   "age_s": save_age(save, now)},
            "config_name": r.config_name, "device": r.device, "started": r.started, "note": r.note}

