"""`babyllm-tui --watch RUN_DIR`: the cockpit as a read-only viewer of a run trained elsewhere.

A run trained by another process (`babyllm train` in another SSH session, `torchrun ... babyllm train`)
writes ``metrics.jsonl`` (one JSON object of stats per step, non-finite values as null), ``events.jsonl``
(saves, validation results, alarms), ``debug.log`` and save folders into its run directory. The
``Watcher`` follows those files and implements TutorControl for the cockpit:

- it only ever opens files read-only (``os.open(O_RDONLY)``, one ``pread`` per poll), takes no locks
  and writes nothing anywhere, so the training processes cannot notice it;
- it tails by remembering each file's offset and reading the new *complete* lines every POLL_S
  seconds (a partly written last line waits for its newline); a file that shrinks, is replaced (new
  inode) or whose first bytes change (rewritten in place by a new run) is read again from the start;
  a file that does not exist yet is waited for;
- a step number that repeats (the trainer resumed from a save, or rolled back) replaces what was
  recorded from that step on: the later line wins;
- it runs in the app's worker thread (``run()``) and publishes Snapshots through the same coalescing
  SnapshotReady messages the live mode uses. The state is derived from the data: "waiting" (no
  metrics yet), "running" (new steps recently), "idle" (no new step for a while: paused, stopped, or
  slow), "finished" (train.steps reached, known from the saved config).

Pause, resume, save, checkpoint and roll back are not possible from a viewer: the Watcher's control
methods do nothing (they are only recorded in ``refused``) and the app says so. The chat loads the
run's newest save into this process, on the CPU, at the first message (never touching the trainer);
``/reload`` or ``r`` makes the next message load the newest save again.

RUN_DIR must exist. An empty directory is waited on (a training run is about to write into it); a
non-empty one without any run file (metrics.jsonl, events.jsonl, tokenizer.json, debug.log, a save)
is refused with a one-line error.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any, Callable, Iterator, NamedTuple

from babyllm.errors import BabyError
from babyllm.infer2.commands import RELOAD, help_examples, help_line
from babyllm.snapshot import Event, History, Snapshot
from tui.app import CockpitApp
from tui.widgets.timing import duration

POLL_S = 0.5  # seconds between looks at the run's files
PUBLISH_EVERY = 0.25  # at most this often a snapshot while catching up on a long file
IDLE_AFTER_S = 15.0  # no new step for this long (or 5 step times, if longer): "idle"
CHUNK = 4 << 20  # bytes read per file per look (a long file is caught up on over several looks)
METRICS_TAIL = 48 << 20  # a metrics.jsonl longer than this is read from this far before its end
LOG_TAIL = 256 << 10  # debug.log: only its last part is read (for the config name and device)
MAX_LINE = 16 << 20  # a "line" longer than this (no newline in sight) is dropped as damaged
HEAD_BYTES = 256  # a file whose first bytes change was rewritten by a new run: read it again
RECENT_EVENTS = 50
RUN_FILES = ("metrics.jsonl", "events.jsonl", "tokenizer.json", "debug.log")
_TUTOR_START = re.compile(r"tutor start: config (\S+), device ([^,\s]+)")


# --- following a file another process appends to ------------------------------------------------


class TailRead(NamedTuple):
    lines: list[bytes]  # new complete lines (without their newline)
    restarted: bool  # the file started over (truncated, replaced or rewritten): forget what it said
    more: bool  # there is more to read already (a long file is read CHUNK bytes per look)


class LineTail:
    """The new complete lines of a file another process appends to; opened read-only on every look.

    start_within: on the first look at a file longer than this, start that many bytes before its end
    (at the next line start): a long history is only partly needed.
    """

    def __init__(self, path: Path, start_within: int | None = None, chunk: int = CHUNK) -> None:
        self.path = Path(path)
        self.start_within = start_within
        self.chunk = chunk
        self.exists = False
        self.mtime: float | None = None  # of the last look that found the file
        self.skipped = 0  # bytes not read at the start of a long file
        self.dropped = 0  # over-long fragments dropped
        self._id: tuple[int, int] | None = None
        self._offset = 0
        self._buf = b""
        self._head = b""
        self._skip_partial = False

    def _reset(self) -> None:
        self._id, self._offset, self._buf, self._head, self._skip_partial = None, 0, b"", b"", False
        self.skipped = 0

    def _changed(self, fd: int, st: os.stat_result) -> bool:
        """Is the file at our path no longer the one read so far (replaced, truncated or rewritten)?"""
        return self._id is not None and ((st.st_dev, st.st_ino) != self._id or st.st_size < self._offset
                                         or (bool(self._head) and os.pread(fd, len(self._head), 0) != self._head))

    def read(self) -> TailRead:
        for attempt in range(2):  # a file that looks changed is looked at once more before starting over
            try:
                fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError:  # not there (yet, or any more), or unreadable: wait
                self.exists = False
                return TailRead([], False, False)
            try:
                changed = self._changed(fd, os.fstat(fd))
            except OSError:
                changed = True
            if not changed or attempt:
                break
            os.close(fd)
        try:
            st = os.fstat(fd)
            self.exists, self.mtime = True, st.st_mtime
            ident = (st.st_dev, st.st_ino)
            restarted = False
            if changed:
                self._reset()
                restarted = True
            if self._id is None:
                self._id = ident
                if self.start_within and st.st_size > self.start_within:
                    self._offset = self.skipped = st.st_size - self.start_within
                    self._skip_partial = os.pread(fd, 1, self._offset - 1) != b"\n"
            left = st.st_size - self._offset
            data = os.pread(fd, min(self.chunk, left), self._offset) if left > 0 else b""
            self._offset += len(data)
            if len(self._head) < HEAD_BYTES and self._offset > len(self._head):
                self._head = os.pread(fd, min(HEAD_BYTES, self._offset), 0)
            more = self._offset < st.st_size
        except OSError:
            return TailRead([], False, False)
        finally:
            os.close(fd)
        lines = (self._buf + data).split(b"\n")
        self._buf = lines.pop()  # the part after the last newline: a line still being written
        if len(self._buf) > MAX_LINE:
            self._buf = b""
            self.dropped += 1
        if self._skip_partial and lines:
            lines.pop(0)  # the tail of a line that started before where reading began
            self._skip_partial = False
        return TailRead([ln for ln in lines if ln.strip()], restarted, more)


class JsonlTail(LineTail):
    """LineTail of a JSON-lines file: each new line as a dict (damaged lines are counted and skipped)."""

    def __init__(self, path: Path, start_within: int | None = None, chunk: int = CHUNK) -> None:
        super().__init__(path, start_within, chunk)
        self.bad_lines = 0

    def records(self) -> tuple[list[dict[str, Any]], bool, bool]:
        """(new records, restarted, more) -- see TailRead."""
        import json

        got = self.read()
        out = []
        for line in got.lines:
            try:
                rec = json.loads(line)
            except ValueError:  # half a line from a crash, or not JSON at all
                self.bad_lines += 1
                continue
            if isinstance(rec, dict):
                out.append(rec)
            else:
                self.bad_lines += 1
        return out, got.restarted, got.more


def metrics_values(record: dict[str, Any]) -> dict[str, float]:
    """A metrics.jsonl record as stats: null (a non-finite value) -> nan; non-numbers are left out."""
    out: dict[str, float] = {}
    for k, v in record.items():
        if v is None:
            out[k] = math.nan
        elif isinstance(v, (int, float)) and not isinstance(v, bool):
            out[k] = float(v)
    return out


class WatchHistory(History):
    """History that can also start over (when metrics.jsonl is replaced); rewind() comes from History."""

    def clear(self) -> None:
        with self._lock:
            self._series.clear()


# --- the Watcher --------------------------------------------------------------------------------


class Watcher:
    """Follows a run directory read-only and implements TutorControl for the cockpit (see the module doc).

    ``run()`` polls until ``stop()`` (the app runs it in its worker thread); ``start()`` runs it in a
    thread of its own. ``poll_once()`` is one look, for tests.
    """

    def __init__(self, run_dir: Path, *, publish: Callable[[Snapshot], None] | None = None,
                 say: Callable[[str], None] | None = None, poll: float = POLL_S,
                 idle_after: float = IDLE_AFTER_S, publish_every: float = PUBLISH_EVERY) -> None:
        self.run_dir = Path(run_dir)
        self.poll = poll
        self.idle_after = idle_after
        self.publish_every = publish_every
        self._publish_cb = publish
        self._say = say
        self.history = WatchHistory()
        self.metrics = JsonlTail(self.run_dir / "metrics.jsonl", start_within=METRICS_TAIL)
        self.events_tail = JsonlTail(self.run_dir / "events.jsonl", start_within=METRICS_TAIL)
        self.log_tail = LineTail(self.run_dir / "debug.log", start_within=LOG_TAIL)
        self.refused: list[str] = []  # control requests a viewer cannot carry out
        self.lines = 0  # metrics lines taken in
        self.stats: dict[str, float] = {}
        self.step = 0
        self.tokens = 0
        self.save_step: int | None = None
        self.config_name = ""
        self.device = ""
        self.max_steps = 0
        self.note = ""
        self._last_step: int | None = None
        self._events: deque[Event] = deque(maxlen=RECENT_EVENTS)
        self._event_count = 0
        self._alarm: Event | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_publish = -math.inf
        self._pending = False
        self._waiting_said = False
        self._have_config = False
        self._state = "waiting"
        self._snapshot = self._make_snapshot()

    # -- TutorControl ----------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        return self._snapshot

    def _refuse(self, what: str) -> None:
        self.refused.append(what)  # nothing else: the training process is not ours to steer

    def pause(self) -> None:
        self._refuse("pause")

    def resume(self) -> None:
        self._refuse("resume")

    def request_save(self) -> None:
        self._refuse("save")

    def request_checkpoint(self) -> None:
        self._refuse("checkpoint")

    def rollback(self) -> None:
        self._refuse("rollback")

    def stop(self) -> None:
        """End the watching (run() returns within one poll); the training process is not told anything."""
        self._stop.set()

    # -- running -----------------------------------------------------------------------------------

    def run(self) -> str:
        while not self._stop.is_set():
            more = self.poll_once()
            if not more:
                self._stop.wait(self.poll)
        return "stopped"

    def start(self) -> "Watcher":
        self._thread = threading.Thread(target=self.run, name="watcher", daemon=True)
        self._thread.start()
        return self

    def join(self, timeout: float | None = None) -> bool:
        self.stop()
        if self._thread is not None:
            self._thread.join(timeout)
            return not self._thread.is_alive()
        return True

    def poll_once(self) -> bool:
        """One look at the run's files; publishes a snapshot if anything changed. True: more to read now."""
        changed, more = self._read_metrics()
        ev_changed, ev_more = self._read_events()
        log_changed = self._read_log()
        saves_changed = self._check_saves()
        changed = changed or ev_changed or log_changed or saves_changed
        more = more or ev_more
        state, note = self._derive()
        if state != self._state or note != self.note:
            changed = True
            forced = state != self._state
        else:
            forced = False
        self._state, self.note = state, note
        if state == "waiting" and not self._waiting_said and self._say is not None:
            self._waiting_said = True
            self._say(note)
        if changed or self._pending:
            now = time.monotonic()
            if forced or not more or now - self._last_publish >= self.publish_every:
                self._publish(now)
            else:
                self._pending = True
        return more

    def _publish(self, now: float) -> None:
        self._pending = False
        self._last_publish = now
        snap = self._snapshot = self._make_snapshot()
        if self._publish_cb is not None:
            try:
                self._publish_cb(snap)
            except Exception:  # noqa: BLE001 - a broken reader must not stop the watching
                pass

    def _make_snapshot(self) -> Snapshot:
        return Snapshot(step=self.step, tokens=self.tokens, state=self._state, stats=self.stats,
                        max_steps=self.max_steps, sample=None, events=tuple(self._events),
                        event_count=self._event_count, device=self.device, config_name=self.config_name,
                        run_dir=str(self.run_dir))

    def _local_event(self, kind: str, message: str) -> None:
        self._add_event(Event(self.step, kind, message))

    def _add_event(self, ev: Event) -> None:
        self._events.append(ev)
        self._event_count += 1
        if ev.kind == "alarm":
            self._alarm = ev

    # -- the files ---------------------------------------------------------------------------------

    def _read_metrics(self) -> tuple[bool, bool]:
        records, restarted, more = self.metrics.records()
        if restarted:
            self.history.clear()
            self.stats, self.step, self.tokens, self._last_step, self._alarm = {}, 0, 0, None, None
            self._local_event("info", f"{self.metrics.path.name} started over (a new run?): reading it again")
        if records and self.lines == 0 and self.metrics.skipped:
            self._local_event("info", f"(the first {self.metrics.skipped / 2**20:,.0f} MB of "
                                      f"{self.metrics.path.name} were skipped: the plots show its last part)")
        latest: dict[str, float] | None = None
        for rec in records:
            back = rec.get("rollback_to")
            if isinstance(back, int) and not isinstance(back, bool):  # the trainer discarded later steps
                self.history.rewind(back + 1)
                self._last_step = back
                continue
            values = metrics_values(rec)
            step_v = values.get("step")
            if step_v is None or not math.isfinite(step_v):
                self.metrics.bad_lines += 1
                continue
            step = int(step_v)
            if self._last_step is not None and step <= self._last_step:
                self.history.rewind(step)  # resumed or rolled back: the later line wins
            self.history.add(step, values)
            self._last_step = step
            latest = values
            self.lines += 1
        if latest is not None:
            self.stats = latest
            self.step = int(latest["step"])
            tokens = latest.get("tokens", math.nan)
            self.tokens = int(tokens) if math.isfinite(tokens) else self.tokens
        return restarted or latest is not None, more

    def _read_events(self) -> tuple[bool, bool]:
        records, restarted, more = self.events_tail.records()
        if restarted:
            self._local_event("info", f"{self.events_tail.path.name} started over: reading it again")
        for rec in records:
            try:
                ev = Event(int(rec.get("step", 0)), str(rec.get("kind", "info")), str(rec.get("message", "")),
                           float(rec.get("time", time.time())))
            except (TypeError, ValueError):
                self.events_tail.bad_lines += 1
                continue
            self._add_event(ev)
        return bool(records) or restarted, more

    def _read_log(self) -> bool:
        """The config name and device from the trainer's latest "tutor start" line in debug.log."""
        changed = False
        for _ in range(4):  # a long debug.log: a few chunks per look at most
            got = self.log_tail.read()
            for line in got.lines:
                m = _TUTOR_START.search(line.decode("utf-8", "replace"))
                if m and (m.group(1), m.group(2)) != (self.config_name, self.device):
                    self.config_name, self.device = m.group(1), m.group(2)
                    changed = True
            if not got.more:
                break
        return changed

    def _check_saves(self) -> bool:
        """The newest save's step; the config (name, train.steps) from its meta.json, or best/'s before one."""
        from babyllm.soul import (BEST, META_FILE, CheckpointError, config_from_dict, latest_step, read_meta,
                                  saved_config)

        try:
            step = latest_step(self.run_dir)
        except OSError:
            return False
        changed = step != self.save_step
        self.save_step = step
        try:
            if changed and step is not None:
                self._take_config(saved_config(self.run_dir))
            elif not self._have_config and (self.run_dir / BEST / META_FILE).exists():
                meta = read_meta(self.run_dir / BEST)
                self._take_config(config_from_dict(meta["config"], meta.get("config_name", "saved")))
                changed = True
        except (CheckpointError, OSError):
            pass
        return changed

    def _take_config(self, cfg: Any) -> None:
        self._have_config = True
        self.max_steps = int(cfg.train.steps)
        if not self.config_name:
            self.config_name = cfg.name
        if not self.device:
            self.device = str(cfg.train.device)

    def _derive(self) -> tuple[str, str]:
        """(state, status-bar note) from what the files say."""
        save = f"save {self.save_step:,}" if self.save_step is not None else "no save yet"
        if self._last_step is None:
            if not self.metrics.exists:
                return "waiting", f"waiting for {self.metrics.path}"
            return "waiting", f"waiting for the first step in {self.metrics.path}"
        if self.max_steps and self.step >= self.max_steps:
            return "finished", f"viewer · {save}"
        step_s = self.stats.get("step_ms", math.nan) / 1000.0
        idle_after = max(self.idle_after, 5 * step_s) if math.isfinite(step_s) else self.idle_after
        quiet = time.time() - self.metrics.mtime if self.metrics.mtime is not None else math.inf
        if self._alarm is not None and self._alarm.step >= self.step:
            return ("running" if quiet < idle_after else "idle"), f"alarm at step {self._alarm.step} · {save}"
        if quiet < idle_after:
            return "running", f"viewer · {save}"
        if not self.metrics.exists:
            return "idle", f"{self.metrics.path.name} is gone · {save}"
        return "idle", f"no new step for {duration(quiet)} · {save}"


# --- chat: the newest save, loaded in this process ----------------------------------------------


class WatchChat:
    """Chat with the run's newest save, loaded on the CPU in this process at the first message.

    Offers what the cockpit's chat pane needs of Infer2 (``stream``, ``command``, ``notices``), plus
    ``/reload``: the next message loads the newest save again (a fresh conversation, same settings).
    """

    def __init__(self, run_dir: Path, device: str = "cpu") -> None:
        self.run_dir = Path(run_dir)
        self.device = device
        self.notices: list[str] = []
        self.infer: Any = None
        self.step: int | None = None
        self._reload = False
        self._lock = threading.Lock()

    @property
    def needs_load(self) -> bool:
        return self.infer is None or self._reload

    def stream(self, prompt: str) -> Iterator[str]:
        """A generator: the loading (if due) happens in the thread that iterates it."""
        with self._lock:
            if self.needs_load:
                self._load()
            infer = self.infer
        yield from infer.stream(prompt)

    def _load(self) -> None:
        from babyllm.infer2 import Infer2, Settings
        from babyllm.soul import latest_step, load_for_inference

        try:
            cfg, model, tokenizer, step = load_for_inference(
                self.run_dir, device=self.device, say=lambda m: self.notices.append(m))
        except OSError as e:
            raise BabyError(f"{self.run_dir}: cannot read the run's save ({e.strerror or e})") from None
        except BabyError as e:
            raise BabyError(f"no save to chat with yet: {e}") from None
        settings = self.infer.settings if self.infer is not None else Settings.from_config(cfg.chat)
        self.infer = Infer2(model, tokenizer, settings)
        again = self.step is not None
        self.step, self._reload = step, False
        what = "save" if latest_step(self.run_dir) is not None else "best weights"  # no save yet: best/
        self.notices.append(f"{'re' if again else ''}loaded the {what} of step {step:,} on the CPU in this viewer"
                            f"{' (a fresh conversation)' if again else ''}; /reload takes a newer one")

    def reload(self) -> str:
        from babyllm.soul import latest_step

        self._reload = True
        newest = latest_step(self.run_dir)
        if newest is None:
            best = _best_step(self.run_dir)
            if best is None:
                return "no save yet: the chat loads one at the next message once the trainer has saved"
            return f"no save yet: the next message loads the best weights so far (step {best:,})"
        now = f" (the chat has step {self.step:,})" if self.step is not None else ""
        return f"the next message loads the newest save, step {newest:,}{now}"

    def command(self, line: str) -> str:
        name = (line.split() or [""])[0].lower()
        if name == "/reload":
            return self.reload()
        if name in ("/help", "/?"):
            return help_line(extra=(RELOAD,))
        if self.infer is None:
            raise BabyError(f"{name}: no model loaded yet; send a message first (it loads the run's newest save)")
        return self.infer.command(line)


def _best_step(run_dir: Path) -> int | None:
    """The step of the run's best/ weights (what chat falls back to before the first save), if any."""
    from babyllm.soul import BEST, CheckpointError, read_meta

    try:
        return int(read_meta(Path(run_dir) / BEST)["step"])
    except (CheckpointError, OSError, ValueError, TypeError):
        return None


# --- the command ----------------------------------------------------------------------------------

TRAINING_OPTIONS = (("config", "--config"), ("overrides", "--set"), ("corpus", "--corpus"), ("run", "--run"),
                    ("run_dir", "--run-dir"), ("steps", "--steps"), ("resume", "--resume"))


def check_watch_dir(run_dir: Path) -> Path:
    """RUN_DIR as given if it can be watched; BabyError (one line) if not. An empty directory is waited on."""
    from babyllm.soul import META_FILE, list_saves

    d = Path(run_dir).expanduser()
    if not d.exists():
        raise BabyError(f"{d}: no such run directory (start the training first, e.g. babyllm train --run-dir {d})")
    if not d.is_dir():
        raise BabyError(f"{d}: not a directory (--watch wants a run directory, e.g. runs/NAME)")
    if (d / META_FILE).exists():
        raise BabyError(f"{d}: is one save folder; watch its run directory: --watch {d.parent}")
    try:
        entries = list(os.scandir(d))
    except OSError as e:
        raise BabyError(f"{d}: cannot read the directory ({e.strerror or e})") from None
    if not entries:
        return d  # a run about to start writing here: waited on
    if any((d / name).is_file() for name in RUN_FILES) or list_saves(d):
        return d
    raise BabyError(f"{d}: not a babyllm run (no metrics.jsonl, events.jsonl, tokenizer.json or saves)")


def watch_command(args: argparse.Namespace, *, handle_signals: bool = True) -> int:
    """`babyllm-tui --watch RUN_DIR`: BabyError (exit 2 via run_command) for a bad combination or directory."""
    given = [flag for attr, flag in TRAINING_OPTIONS if getattr(args, attr, None) not in (None, False, [])]
    if given:
        raise BabyError(f"--watch cannot be combined with {', '.join(given)}: the viewer only reads a run; "
                        "training options belong to the training command")
    run_dir = check_watch_dir(args.watch)
    window = 100
    try:
        from babyllm.soul import saved_config

        window = saved_config(run_dir).stats.window
    except (BabyError, OSError):
        pass
    # the same cockpit, as a viewer: no training controls in its keys, help or palette
    app = CockpitApp(lambda publish, say: Watcher(run_dir, publish=publish, say=say),
                     chat_factory=lambda watcher: WatchChat(run_dir), window=window, viewer=True,
                     subtitle=f"viewer · {run_dir}", join_timeout=10.0, handle_signals=handle_signals)
    code = app.run()
    app.join_tutor(timeout=5.0)
    if app.failure:
        print(f"babyllm-tui: {app.failure}", file=sys.stderr)
    return code if isinstance(code, int) else app.exit_code
