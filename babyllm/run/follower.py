"""The follower: reads a run directory another process trains, read-only, and implements TutorControl.

A run trained by another process (`babyllm train` in another SSH session, `torchrun ... babyllm train`)
writes the files babyllm.run.runfiles describes. The ``Watcher`` follows them:

- it only ever opens files read-only (``os.open(O_RDONLY)``, one ``pread`` per poll), takes no locks
  and writes nothing anywhere, so the training processes cannot notice it;
- it tails by remembering each file's offset and reading the new *complete* lines every POLL_S
  seconds (a partly written last line waits for its newline); a file that shrinks, is replaced (new
  inode) or whose first bytes change (rewritten in place by a new run) is read again from the start;
  a file that does not exist yet is waited for;
- a step number that repeats (the trainer resumed from a save, or rolled back) replaces what was
  recorded from that step on: the later line wins (runfiles.Replay);
- the config name and device come from header.json (a run from before headers: from its saved config,
  else they are left blank);
- it runs in a worker thread (``run()``) and publishes Snapshots through a Board. The state is derived
  from the data: "waiting" (no metrics yet), "running" (new steps recently), "idle" (no new step for a
  while: paused, stopped, or slow), "finished" (train.steps reached, known from the saved config).

Pause, resume, save, checkpoint and roll back are not possible from a follower: its control methods do
nothing (they are only recorded in ``refused``). Its chat session (SavedChat) loads the run's newest
save into this process, on the CPU, at the first message (never touching the trainer); ``reload()``
makes the next message load the newest save again.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from babyllm.board import Board
from babyllm.control import DEFAULT_BY, Controls, Request
from babyllm.durations import duration
from babyllm.errors import BabyError, CheckpointError
from babyllm.events import EventKind
from babyllm.run import runfiles
from babyllm.run.tails import JsonlTail
from babyllm.snapshot import Event, History, Publish, Sample, Say, Snapshot, State

POLL_S = 0.5  # seconds between looks at the run's files
PUBLISH_EVERY = 0.25  # at most this often a snapshot while catching up on a long file
IDLE_AFTER_S = 15.0  # no new step for this long (or 5 step times, if longer): "idle"
METRICS_TAIL = 48 << 20  # a metrics.jsonl longer than this is read from this far before its end
SAMPLES_TAIL = 1 << 20  # only the newest sample is shown: a long samples.jsonl is read from this far before its end


# --- following a file another process appends to ------------------------------------------------


# --- the Watcher --------------------------------------------------------------------------------


class Watcher(Controls):
    """Follows a run directory read-only and implements TutorControl for the cockpit (see the module doc).

    ``run()`` polls until ``stop()`` (the app runs it in its worker thread); ``start()`` runs it in a
    thread of its own. ``poll_once()`` is one look, for tests.
    """

    def __init__(self, run_dir: Path, *, publish: Publish | None = None, say: Say | None = None,
                 poll: float = POLL_S, idle_after: float = IDLE_AFTER_S, publish_every: float = PUBLISH_EVERY) -> None:
        self.run_dir = Path(run_dir)
        self.poll = poll
        self.idle_after = idle_after
        self._board = Board(publish, publish_every)
        self._say = say
        self.history = History()
        self.replay = runfiles.Replay(self.history)  # metrics.jsonl as the log means it (rollbacks, resumes)
        self.metrics = JsonlTail(self.run_dir / runfiles.METRICS_FILE, start_within=METRICS_TAIL)
        self.events_tail = JsonlTail(self.run_dir / runfiles.EVENTS_FILE, start_within=METRICS_TAIL)
        self.samples = JsonlTail(self.run_dir / runfiles.SAMPLES_FILE, start_within=SAMPLES_TAIL)
        self.sample: Sample | None = None  # the newest of the live branch (a stopped run's too)
        self.refused: list[Request] = []  # control requests a viewer cannot carry out
        self.lines = 0  # metrics lines taken in
        self.stats: dict[str, float] = {}
        self.step = 0
        self.tokens = 0
        self.save_step: int | None = None
        self.save_error: str | None = None  # the latest save_error event's message, until a save is written
        self.save_seconds = math.nan  # the newest save's training time (for a budget of train.minutes)
        self.max_minutes = 0.0
        self.header: runfiles.Header | None = None  # None: not written yet, or a run from before headers
        self.config_name = ""
        self.device = ""
        self.max_steps = 0
        self.note = ""
        self._header_id: tuple[int, int, float] | None = None
        self._alarm: Event | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending = False
        self._waiting_said = False
        self._have_config = False
        self._state: State = "waiting"
        self._board.offer(self._fields, force=True)

    # -- TutorControl ----------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        assert self._board.current is not None  # published once in __init__
        return self._board.current

    def chat_session(self) -> SavedChat:
        """A chat with the run's newest save, loaded on the CPU here at its first message."""
        return SavedChat(self.run_dir)

    def _request(self, what: Request, by: str) -> None:  # (pause, resume, ... from Controls)
        self.refused.append(what)  # nothing else: the training process is not ours to steer

    def stop(self, by: str = DEFAULT_BY) -> None:
        """End the watching (run() returns within one poll); the training process is not told anything."""
        self._stop.set()

    def debug_log(self, text: str) -> None:
        """Nothing: a viewer writes nothing into the run it watches."""

    # -- running -----------------------------------------------------------------------------------

    def run(self) -> State:
        while not self._stop.is_set():
            more = self.poll_once()
            if not more:
                self._stop.wait(self.poll)
        return "stopped"

    def start(self) -> Watcher:
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
        sample_changed = self._read_samples()
        header_changed = self._read_header()
        saves_changed = self._check_saves()
        changed = changed or ev_changed or sample_changed or header_changed or saves_changed
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
        if changed or self._pending:  # while catching up on a long file, throttled; otherwise at once
            self._pending = not self._board.offer(self._fields, force=forced or not more)
        return more

    def _fields(self) -> dict[str, Any]:
        """The Snapshot's fields (the board adds the recent events)."""
        return dict(step=self.step, tokens=self.tokens, state=self._state, stats=self.stats,
                    max_steps=self.max_steps, sample=self.sample, device=self.device,
                    config_name=self.config_name, run_dir=str(self.run_dir),
                    dtype=self.header.dtype if self.header is not None else "",
                    last_save_step=self.save_step, last_save_error=self.save_error)

    def _local_event(self, kind: EventKind, message: str) -> None:
        self._add_event(Event(self.step, kind, message))

    def _add_event(self, ev: Event) -> None:
        self._board.add(ev)
        if ev.kind == "alarm":
            self._alarm = ev
        elif ev.kind == "save_error":  # (its kind says so: the message is passed on, never read)
            self.save_error = ev.message
        elif ev.kind in runfiles.RESUMABLE_KINDS:
            self.save_error = None

    # -- the files ---------------------------------------------------------------------------------

    def _read_metrics(self) -> tuple[bool, bool]:
        records, restarted, more = self.metrics.records()
        if restarted:
            self.replay.restart()
            self.stats, self.step, self.tokens, self._alarm = {}, 0, 0, None
            self._local_event("info", f"{self.metrics.path.name} started over (a new run?): reading it again")
        if records and self.lines == 0 and self.metrics.skipped:
            self._local_event("info", f"(the first {self.metrics.skipped / 2**20:,.0f} MB of "
                                      f"{self.metrics.path.name} were skipped: the plots show its last part)")
        latest, added, damaged = self.replay.feed(records)
        self.lines += added
        self.metrics.bad_lines += damaged
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
            ev = runfiles.parse_event(rec)
            if ev is None:
                self.events_tail.bad_lines += 1
                continue
            self._add_event(ev)
        return bool(records) or restarted, more

    def _read_samples(self) -> bool:
        """The newest sample of the live branch (a rollback marker drops a newer one); whether it changed."""
        records, restarted, _more = self.samples.records()
        before = self.sample
        if restarted:
            self.sample = None
        for rec in records:
            back = runfiles.rollback_step(rec)
            if back is not None:
                if self.sample is not None and self.sample.step > back:
                    self.sample = None
            else:
                self.sample = runfiles.parse_sample(rec) or self.sample
        return self.sample is not before

    def _read_header(self) -> bool:
        """The config name and device from header.json, read again whenever the trainer rewrites it."""
        try:
            st = os.stat(self.run_dir / runfiles.HEADER_FILE)
        except OSError:
            return False  # not written yet, or a run from before headers: the saved config fills in
        ident = (st.st_dev, st.st_ino, st.st_mtime)
        if ident == self._header_id:
            return False
        header = runfiles.read_header(self.run_dir)
        if header is None:
            return False  # unreadable: looked at again at the next poll
        self._header_id, self.header = ident, header
        self.config_name, self.device = header.config_name, header.device
        return True

    def _check_saves(self) -> bool:
        """The newest save's step; the config (name, train.steps) from its meta.json, or best/'s before one."""
        from babyllm.school.soul import config_from_dict, read_meta, saved_config  # (torch: only once saves appear)

        try:
            saves = runfiles.list_saves(self.run_dir)
        except OSError:
            return False
        step = saves[0].step if saves else None
        changed = step != self.save_step
        self.save_step = step
        try:
            if changed and step is not None:
                self._take_config(saved_config(self.run_dir))
                seconds = read_meta(saves[0].path).get("train_seconds")
                self.save_seconds = float(seconds) if isinstance(seconds, int | float) else math.nan
            elif not self._have_config and runfiles.is_save_folder(self.run_dir / runfiles.BEST):
                meta = read_meta(self.run_dir / runfiles.BEST)
                self._take_config(config_from_dict(meta["config"], meta.get("config_name", "saved")))
                changed = True
        except (CheckpointError, OSError):
            pass
        return changed

    def _take_config(self, cfg: Any) -> None:
        self._have_config = True
        self.max_steps = int(cfg.train.steps)
        self.max_minutes = float(cfg.train.minutes)
        if self.header is None:  # a run from before headers: the saved config is the best guess
            self.config_name = self.config_name or cfg.name
            self.device = self.device or str(cfg.train.device)

    def _derive(self) -> tuple[State, str]:
        """(state, status-bar note) from what the files say."""
        save = f"save {self.save_step:,}" if self.save_step is not None else "no save yet"
        if self.replay.last_step is None:
            name, folder = self.metrics.path.name, self.metrics.path.parent  # (the name first: a line cuts the end)
            if not self.metrics.exists:
                return "waiting", f"waiting for {name} in {folder}"
            return "waiting", f"waiting for the first step in {name} in {folder}"
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
        if not (self.run_dir / runfiles.CONTROL_SOCKET).exists():  # the trainer let go of the run (a killed one
            if self.max_minutes and self.save_seconds >= 60 * self.max_minutes:  # leaves it: "idle" says so)
                return "finished", f"viewer · the {self.max_minutes:g} minutes' budget was spent · {save}"
            return "stopped", f"viewer · stopped at step {self.step:,} · {save}"
        return "idle", f"no new step for {duration(quiet)} · {save}"


# --- chat: the newest save, loaded in this process ----------------------------------------------


class SavedChat:
    """Chat with the run's newest save, loaded on the CPU in this process at the first message.

    A ChatSession (``stream``, ``command``, ``notices``, ``hit_limit``), plus ``/reload``: the next
    message loads the newest save again (a fresh conversation, same settings).
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

    @property
    def hit_limit(self) -> bool:
        return bool(self.infer is not None and self.infer.hit_limit)

    def stream(self, prompt: str) -> Iterator[str]:
        """A generator: the loading (if due) happens in the thread that iterates it."""
        with self._lock:
            if self.needs_load:
                self._load()
            infer = self.infer
        yield from infer.stream(prompt)

    def _load(self) -> None:
        from babyllm.infer2 import Infer2, Settings
        from babyllm.school.soul import load_for_inference

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
        what = "save" if runfiles.latest_step(self.run_dir) is not None else "best weights"  # no save yet: best/
        self.notices.append(f"{'re' if again else ''}loaded the {what} of step {step:,} on the CPU in this viewer"
                            f"{' (a fresh conversation)' if again else ''}; /reload takes a newer one")

    def reload(self) -> str:
        self._reload = True
        newest = runfiles.latest_step(self.run_dir)
        if newest is None:
            best = _best_step(self.run_dir)
            if best is None:
                return "no save yet: the chat loads one at the next message once the trainer has saved"
            return f"no save yet: the next message loads the best weights so far (step {best:,})"
        now = f" (the chat has step {self.step:,})" if self.step is not None else ""
        return f"the next message loads the newest save, step {newest:,}{now}"

    def command(self, line: str) -> str:
        from babyllm.infer2.commands import RELOAD, help_line

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
    from babyllm.school.soul import read_meta

    try:
        return int(read_meta(Path(run_dir) / runfiles.BEST)["step"])
    except (CheckpointError, OSError, ValueError, TypeError):
        return None
