"""`babyllm ctl` and `babyllm runs`: a script's view of runs, through the control socket and the run's files.

``babyllm ctl RUN ACTION`` sends one request (babyllm.socket.wire) to the live run's control socket and prints
one line: a sentence, or one JSON object with ``--json`` (status: wire's snapshot plus the run's pid and
world_size; errors too: ``{"ok": false, "error": ...}``).
RUN is a run directory or a run name under runs/. Exit codes (babyllm.errors.exit_code): 0 done, 1 the run
refused (or ``--wait`` ran out of time), 2 no live run answers or RUN is not a run directory.

``babyllm runs`` lists the run directories under runs/, newest first: a live run's state and step come
from its socket, everything else from its files (header.json, the tail of metrics.jsonl, events.jsonl,
the save folders), read only, so listing never disturbs a run; a damaged one shows its problem in its row.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Any

from babyllm import live
from babyllm.control import OPS, WAITING
from babyllm.errors import BabyError, exit_code
from babyllm.run import runfiles
from babyllm.run.listing import NONE, best_text, list_runs, number, row_json, runs_table, save_text
from babyllm.snapshot import Snapshot
from babyllm.socket import wire
from babyllm.socket.client import ControlClient, RunRefused, is_live

CLIENT = "ctl"  # the name the run's events give this client
# What `ctl` can ask: the run's status, then the control ops (babyllm.control's op table), each with its help.
ACTION_HELP: Mapping[str, str] = MappingProxyType(
    {"status": "one line on the run (--json: its snapshot)", **{op.name: op.does for op in OPS}})
ACTIONS = tuple(ACTION_HELP)
WAITABLE = ("pause", "stop")  # the actions --wait can see through to their end
WAIT_S = 60.0  # --wait's default patience (a stop's final save can take a while)
WAIT_POLL_S = 0.1


# --- arguments ------------------------------------------------------------------------------------


def add_ctl_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="run directory, or a run name under runs/")
    p.add_argument("action", choices=ACTIONS, help="what to ask of the live run: "
                   + "; ".join(f"{action}: {does}" for action, does in ACTION_HELP.items()))
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
        pid, ranks = client.hello()
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


# --- runs -----------------------------------------------------------------------------------------


def runs_main(args: argparse.Namespace) -> int:
    if args.compare:
        from babyllm.commands.compare import compare_main

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


