"""The runs under a folder, one row each, as `babyllm runs` and the cockpit's run picker show them.

A live run's state and step come from its socket, everything else from its files (header.json, the tail of
metrics.jsonl, events.jsonl, the save folders), read only, so listing never disturbs a run; a damaged one
shows its problem in its row."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from babyllm.durations import duration
from babyllm.errors import BabyError
from babyllm.events import FAILURE_KINDS
from babyllm.run import runfiles
from babyllm.snapshot import History, Snapshot
from babyllm.socket.client import ControlClient, NoLiveRun, socket_path

LIVE_TIMEOUT_S = 0.5  # how long `runs` waits for each run's socket to answer


METRICS_TAIL = 8 << 20  # `runs` reads the last this many bytes of metrics.jsonl (its best val is of that part)


EVENTS_TAIL = 256 << 10


NOTED_KINDS = FAILURE_KINDS  # a stopped run whose last event is one of these shows it


NONE = "-"  # an empty cell


SILENT = "not answering"  # the state of a run whose socket takes connections but answers nothing in time


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
        client = ControlClient(d, timeout=LIVE_TIMEOUT_S)
    except NoLiveRun:  # nothing listens: a socket left by a killed process
        return None, f"{runfiles.CONTROL_SOCKET} left behind (its process was killed?)"
    except BabyError as e:  # another user's run
        return None, _drop_prefix(str(e), d)
    try:
        with client:
            return (client.hello()[0], client.status()), ""
    except NoLiveRun as e:  # something listens but does not answer (a hung or stopped process)
        return SILENT, f"{runfiles.CONTROL_SOCKET}: {_drop_prefix(str(e), d)}"
    except BabyError as e:  # it answered but would not tell (another protocol)
        return None, _drop_prefix(str(e), d)


def _metrics_view(d: Path) -> tuple[int | None, float | None, int | None, list[str]]:
    """(last step of the live branch, best val loss in the tail and its step, problems) from metrics.jsonl."""
    path = d / runfiles.METRICS_FILE
    history = History()  # keeps val_loss only where it changes: a point per validation
    step = runfiles.replay_metrics(d, history, keep=frozenset({"val_loss"}), tail_bytes=METRICS_TAIL).last_step
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
