"""The run directory's format: its file names, the header, the metrics and event records, and its one validator.

A run directory (``runs/NAME/``) holds::

    header.json               who trains it: config name, device, dtype, versions, start time, pid (each start)
    tokenizer.json            the run's tokenizer (written once, checked against every save)
    metrics.jsonl             one JSON object of stats per training step (non-finite values as null), every
                              few seconds with a "system" object of readings (babyllm.system's keys), and
                              {"rollback_to": STEP} where later steps were discarded
    events.jsonl              saves, checkpoints, validation results, alarms, errors: {step, kind, message, time}
    samples.jsonl             guess-versus-truth samples: {step, text, truth, guess, time} (truth and guess one
                              token each per position), and rollback markers as in metrics.jsonl
    debug.log                 the Counsellor's debug log (for people: nothing parses it)
    chat.log                  the cockpit's and `babyllm chat`'s conversations
    train.lock                held by the one process that trains the run (babyllm.run.runlock)
    control.sock              the live run's control socket (babyllm.socket.wire), owner-only; gone once it stops
    screenshots/              the cockpit's SVG screenshots (the S key)
    tensorboard/              TensorBoard event files ([log] tensorboard = true; babyllm.run.tboard), one per start
    wandb/                    Weights & Biases' own files ([log] wandb = true; babyllm.run.wandb_mirror)
    save-00000500/            rolling resume points (the last train.keep are kept)
    checkpoint-00001000/      step-numbered snapshots, never pruned
    best/                     the weights with the lowest validation loss (model only, not resumable)

The Tutor writes through babyllm.run.writer.RunWriter (with the records made here); the follower, a resume,
`runs`, `plot` and `--compare` read through the parse functions and Replay here, so a record's shape and a
rollback's meaning are defined once. Nothing here imports torch.
"""

from __future__ import annotations

import json
import math
import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, NamedTuple

from babyllm.errors import BabyError, CheckpointError
from babyllm.safefile import read_bounded, read_tail
from babyllm.snapshot import Event, History, Sample

HEADER_FILE = "header.json"
TOKENIZER_FILE = "tokenizer.json"
METRICS_FILE = "metrics.jsonl"
EVENTS_FILE = "events.jsonl"
SAMPLES_FILE = "samples.jsonl"
DEBUG_LOG = "debug.log"
CHAT_LOG = "chat.log"
LOCK_FILE = "train.lock"
CONTROL_SOCKET = "control.sock"
SCREENSHOTS = "screenshots"
TENSORBOARD = "tensorboard"
WANDB = "wandb"
BEST = "best"
RESUMABLE_KINDS = ("save", "checkpoint")
# Inside a save folder:
MODEL_FILE = "model.safetensors"
STATE_FILE = "state.pt"
META_FILE = "meta.json"
# Any of these (or a save) makes a directory a run.
RUN_FILES = (HEADER_FILE, METRICS_FILE, EVENTS_FILE, TOKENIZER_FILE, DEBUG_LOG)
RUNS = Path("runs")
HISTORY_TAIL_BYTES = 32 << 20  # a resume rebuilds History from at most this much of metrics.jsonl
RECENT_EVENTS = 50  # events a Snapshot carries (and a resume reloads)
ALL_STEPS = 1 << 62  # replay every step the log holds
TIME = "time"  # every metrics record's wall clock (seconds since the epoch)
ROLLBACK_TO = "rollback_to"  # a rollback marker's step
SYSTEM = "system"  # a metrics record's readings of the machine (every few seconds)
UNKNOWN = "unknown"  # a header field its record lacks (or has in an unusable form)

_SAVE_NAME = re.compile(r"^(save|checkpoint)-(\d+)$")


# --- save folders ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class SaveInfo:
    """One resumable save folder, found by its name (not yet read or checked)."""

    path: Path
    kind: str  # save | checkpoint
    step: int


def save_name(kind: str, step: int) -> str:
    return BEST if kind == BEST else f"{kind}-{step:08d}"


def list_saves(run_dir: Path) -> list[SaveInfo]:
    """Resumable saves in a run directory, newest first (a rolling save before a checkpoint of the same step)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for p in run_dir.iterdir():
        m = _SAVE_NAME.match(p.name)
        if m and p.is_dir():
            found.append(SaveInfo(p, m.group(1), int(m.group(2))))
    return sorted(found, key=lambda s: (s.step, s.kind == "save"), reverse=True)


def latest_step(run_dir: Path) -> int | None:
    saves = list_saves(run_dir)
    return saves[0].step if saves else None


def is_save_folder(path: Path) -> bool:
    """A save folder (e.g. runs/NAME/best) rather than a run directory."""
    return (Path(path) / META_FILE).exists()


# --- the one validator ----------------------------------------------------------------------------

Use = Literal["train", "resume", "read", "watch"]  # a new run | continuing one | chat/sample | the viewer


def check_run_dir(path: Path, use: Use, flag: str = "--run-dir", runs_root: Path = RUNS) -> Path:
    """`path` if it can serve `use`; CheckpointError (one line) if not.

    train/resume may name a directory not made yet (whether it has saves is rundir.check_start's business);
    read and watch need it to exist; read also takes one save folder; watch waits on an empty directory.
    """
    d = Path(path).expanduser()
    if not d.exists():
        if use in ("train", "resume"):
            return d
        raise CheckpointError(f"{d}: no such run directory ({_missing_hint(use, d, runs_root)})")
    if not d.is_dir():
        raise CheckpointError(f"{d}: not a directory ({flag} wants a run directory, e.g. runs/NAME)")
    if use != "read" and is_save_folder(d):
        raise CheckpointError(f"{d}: is one save folder; name its run directory: {flag} {d.parent}")
    return _check_watchable(d) if use == "watch" else d


def run_name_dir(run: str, runs_root: Path = RUNS) -> Path:
    """--run NAME -> runs_root/NAME (a name, never a path)."""
    if "/" in run or run in (".", ".."):
        raise BabyError(f"--run {run}: a run name cannot contain '/'; use --run-dir for a path")
    return Path(runs_root) / run


def _missing_hint(use: Use, d: Path, runs_root: Path) -> str:
    if use == "watch":
        return f"start the training first, e.g. babyllm train --run-dir {d}"
    known = sorted(p.name for p in Path(runs_root).iterdir() if p.is_dir()) if Path(runs_root).is_dir() else []
    return f"runs in {runs_root}/: {', '.join(known)}" if known else "train one first with `babyllm train`"


def _check_watchable(d: Path) -> Path:
    try:
        entries = list(os.scandir(d))
    except OSError as e:
        raise CheckpointError(f"{d}: cannot read the directory ({e.strerror or e})") from None
    if not entries or any((d / name).is_file() for name in RUN_FILES) or list_saves(d):
        return d  # (an empty directory: a run about to start writing here, waited on)
    raise CheckpointError(f"{d}: not a babyllm run (no metrics.jsonl, events.jsonl, tokenizer.json or saves)")


# What a file read whole may hold (a save's weights and state: by its config, babyllm.school.soul); the logs
# are read by their tail (HISTORY_TAIL_BYTES), never whole. A tokenizer of 65,535 tokens is a few MB.
READ_LIMITS: Mapping[str, int] = MappingProxyType({HEADER_FILE: 1 << 20, META_FILE: 16 << 20, TOKENIZER_FILE: 64 << 20})


# --- the header -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Header:
    """Who trains the run: written to header.json each time a Tutor starts (the follower reads it)."""

    config_name: str = UNKNOWN
    device: str = UNKNOWN
    dtype: str = UNKNOWN
    babyllm_version: str = UNKNOWN
    torch_version: str = UNKNOWN
    started: float = 0.0  # seconds since the epoch
    pid: int = 0
    resume: bool = False
    world_size: int = 1
    format: int = 1

    @classmethod
    def now(cls, config_name: str, device: str, dtype: str, torch_version: str, resume: bool = False,
            world_size: int = 1) -> Header:
        from babyllm import __version__

        return cls(config_name, device, dtype, __version__, torch_version, time.time(), os.getpid(), resume,
                   world_size)

    @classmethod
    def from_record(cls, rec: Any) -> Header | None:
        """The header a JSON object describes; None if it is not one. Unknown keys are ignored, odd values defaulted."""
        if not isinstance(rec, dict):
            return None
        base = cls()
        kept = {k: rec[k] for k in asdict(base) if k in rec and isinstance(rec[k], type(getattr(base, k)))
                and not (isinstance(rec[k], bool) and not isinstance(getattr(base, k), bool))}
        if isinstance(rec.get("started"), int) and not isinstance(rec["started"], bool):
            kept["started"] = float(rec["started"])
        return cls(**kept)


def write_header(run_dir: Path, header: Header) -> None:
    """Replace header.json atomically (a reader sees the old header or the new one, never half of one)."""
    path = Path(run_dir) / HEADER_FILE
    tmp = path.with_name(f".{HEADER_FILE}.tmp-{os.getpid()}")  # (soul.clean_temp removes one a crash left)
    try:
        with open(tmp, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(asdict(header)) + "\n")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        raise


def read_header(run_dir: Path) -> Header | None:
    """The run's header; None when there is none (a run started before headers existed) or it is unreadable."""
    try:
        return Header.from_record(json.loads(read_bounded(Path(run_dir) / HEADER_FILE, READ_LIMITS[HEADER_FILE])))
    except (OSError, ValueError, RecursionError, CheckpointError):
        return None


# --- records --------------------------------------------------------------------------------------


def metrics_record(stats: dict[str, float], when: float | None = None,
                   system: Mapping[str, float] | None = None) -> dict[str, Any]:
    """One step's stats as written: non-finite values as null, plus the wall clock when recorded and, when given,
    the machine's readings (a nested object: readers of stats skip it)."""
    rec: dict[str, Any] = _finite(stats)
    rec[TIME] = time.time() if when is None else when
    if system:
        rec[SYSTEM] = _finite(system)
    return rec


def _finite(values: Mapping[str, float]) -> dict[str, float | None]:
    return {k: (v if math.isfinite(v) else None) for k, v in values.items()}


def record_system(record: dict[str, Any]) -> dict[str, float]:
    """A metrics record's readings of the machine ({} when it carries none; a null reading -> nan)."""
    system = record.get(SYSTEM)
    return metrics_values(system) if isinstance(system, dict) else {}


def sample_record(sample: Sample, when: float | None = None) -> dict[str, Any]:
    """A guess-versus-truth sample as samples.jsonl holds it."""
    return {"step": sample.step, "text": sample.context, "truth": list(sample.truths), "guess": list(sample.guesses),
            TIME: time.time() if when is None else when}


def parse_sample(record: dict[str, Any]) -> Sample | None:
    """A samples.jsonl record as a Sample; None for a damaged one (or a rollback marker)."""
    step, text, truth, guess = (record.get(k) for k in ("step", "text", "truth", "guess"))
    if not (isinstance(step, int) and not isinstance(step, bool) and step >= 0 and isinstance(text, str)
            and isinstance(truth, list) and isinstance(guess, list)
            and all(isinstance(t, str) for t in (*truth, *guess))):
        return None
    return Sample(step, text, tuple(guess), tuple(truth))


def rollback_record(step: int) -> dict[str, Any]:
    """The marker that every logged step after `step` was discarded (a rollback or a resume)."""
    return {ROLLBACK_TO: step, TIME: time.time()}


def event_record(ev: Event) -> dict[str, Any]:
    return {"step": ev.step, "kind": ev.kind, "message": ev.message, "time": ev.time}


def record_stats(record: dict[str, Any]) -> dict[str, float]:
    """A metrics.jsonl record's stats: its values without the wall clock it was recorded at."""
    values = metrics_values(record)
    values.pop(TIME, None)
    return values


def metrics_values(record: dict[str, Any]) -> dict[str, float]:
    """A metrics.jsonl record as stats: null (a non-finite value) -> nan; non-numbers are left out."""
    out: dict[str, float] = {}
    for k, v in record.items():
        if v is None:
            out[k] = math.nan
        elif _is_real(v):
            out[k] = float(v)
    return out


def rollback_step(record: dict[str, Any]) -> int | None:
    """The step a rollback marker goes back to, or None for any other record."""
    back = record.get(ROLLBACK_TO)
    return back if _is_real(back) and isinstance(back, int) and back >= 0 else None


def record_step(values: dict[str, float]) -> int | None:
    """The step of a metrics record's values (None for a damaged record)."""
    step = values.get("step")
    return int(step) if step is not None and math.isfinite(step) and step >= 0 else None


def parse_event(record: dict[str, Any], default_time: float | None = None) -> Event | None:
    """An events.jsonl record as an Event; None for a damaged one."""
    try:
        when = record.get("time")
        return Event(int(record.get("step", 0)), str(record.get("kind", "info")),  # type: ignore[arg-type]
                     str(record.get("message", "")),
                     float(when if when is not None else (time.time() if default_time is None else default_time)))
    except (TypeError, ValueError):
        return None


def read_jsonl(path: Path, tail_bytes: int = HISTORY_TAIL_BYTES) -> list[dict[str, Any]]:
    """The JSON objects in the last `tail_bytes` of a JSON-lines log; torn or damaged lines are skipped."""
    try:
        data, size = read_tail(path, 0, tail_bytes)
    except (OSError, CheckpointError):
        return []
    lines = data.split(b"\n")
    if size > tail_bytes:
        lines = lines[1:]  # the tail of a line that began before where reading began
    return _parse_lines(lines)


def read_jsonl_since(path: Path, offset: int = 0,
                     tail_bytes: int = HISTORY_TAIL_BYTES) -> tuple[list[dict[str, Any]], int]:
    """The JSON objects in the whole lines after byte `offset` (at most the last `tail_bytes` of them) and
    the offset after the last whole line: a follower reads only what was appended since. A torn last line
    (still being written) is left for the next read. OSError if the file cannot be read."""
    data, size = read_tail(path, offset, tail_bytes)
    start = max(offset, size - tail_bytes)
    end = data.rfind(b"\n") + 1
    lines = data[:end].split(b"\n")
    if start > offset:
        lines = lines[1:]  # the tail of a line that began before where reading began
    return _parse_lines(lines), start + end


def _parse_lines(lines: list[bytes]) -> list[dict[str, Any]]:
    out = []
    for line in lines:
        try:
            rec = json.loads(line)
        except (ValueError, RecursionError):
            continue
        if isinstance(rec, dict):
            out.append(rec)
    return out


class Fed(NamedTuple):
    """What a batch of metrics records did: the newest added step's stats (None: none), steps added, damaged."""

    latest: dict[str, float] | None
    added: int
    damaged: int


@dataclass
class Replay:
    """metrics.jsonl read into a History as the log means it, a batch of records at a time (a follower feeds
    what was appended since): a rollback marker drops the steps after it, and a step logged again (after a
    resume or a rollback) replaces what was recorded from it on. ``upto``: steps after it are left out (a
    resume's live branch ends at its save); ``keep``: the stats kept (None: all)."""

    history: History
    upto: int = ALL_STEPS
    keep: frozenset[str] | None = None
    last_step: int | None = None  # of the live branch: the step last added, or a rollback marker's
    beyond: bool = False  # the records leave steps after `upto` (a branch a resume discards)

    def feed(self, records: Iterable[dict[str, Any]]) -> Fed:
        latest, added, damaged = None, 0, 0
        for rec in records:
            back = rollback_step(rec)
            values = record_stats(rec)
            step = record_step(values)
            if back is not None:
                self.history.rewind(back + 1)
                self.last_step, self.beyond = back, self.beyond and back > self.upto
            elif step is None:
                damaged += 1
            elif step > self.upto:
                self.beyond = True
            else:
                if self.last_step is not None and step <= self.last_step:
                    self.history.rewind(step)  # (every point is at last_step or before)
                kept = values if self.keep is None else {k: v for k, v in values.items() if k in self.keep}
                self.history.add(step, kept)
                self.last_step, latest, added = step, values, added + 1
        return Fed(latest, added, damaged)

    def restart(self) -> None:
        """The log started over (a new run in the same directory): forget what it said."""
        self.history.clear()
        self.last_step, self.beyond = None, False


def replay_metrics(run_dir: Path, history: History, upto: int = ALL_STEPS, keep: frozenset[str] | None = None,
                   tail_bytes: int = HISTORY_TAIL_BYTES) -> Replay:
    """`history` filled from the last `tail_bytes` of the run's metrics.jsonl (see Replay)."""
    replay = Replay(history, upto, keep)
    replay.feed(read_jsonl(Path(run_dir) / METRICS_FILE, tail_bytes))
    return replay


def replay_history(run_dir: Path, history: History, step: int) -> tuple[bool, list[Event]]:
    """After a resume: fill `history` from metrics.jsonl up to `step` (the live branch); the recent events.

    Returns (whether the log holds steps after `step`, a branch now discarded; the last RECENT_EVENTS events).
    """
    beyond = replay_metrics(run_dir, history, step).beyond
    events = [ev for ev in (parse_event(rec, 0.0) for rec in read_jsonl(Path(run_dir) / EVENTS_FILE)
                            if "step" in rec and "kind" in rec and "message" in rec) if ev is not None]
    return beyond, events[-RECENT_EVENTS:]


def _is_real(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
