"""`babyllm train`: headless training that prints Calligraphist lines (for nohup, CI and plain terminals).

The Tutor runs in a worker thread; the main thread handles signals and printing. SIGINT, SIGTERM and
SIGHUP ask the Tutor to stop (it saves and the command exits 0, naming the saved step); a second
signal exits at once, which never damages the last save (saves are written atomically).

Under torchrun (RANK/WORLD_SIZE set) every rank runs this: rank 0 picks the config and run directory
and sends them to the others, rank 0 alone prints (the others print only errors), and a stop on any
rank stops all of them at the same step. A copy of the same signal within SIGNAL_ECHO_S of the first
is not a "second signal": Ctrl-C reaches each rank both from the terminal and from torchrun.
"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from rich.console import Console
from rich.text import Text

from babyllm.calligraphist import Calligraphist, colour_depth
from babyllm.commands.runsetup import make_tutor, prepare_run
from babyllm.commands.startup import Interrupted, caught_before, second_signal
from babyllm.config import Config
from babyllm.durations import duration
from babyllm.errors import BabyError
from babyllm.events import EVENT_STYLES
from babyllm.model.runtime import release_openmp_threads
from babyllm.snapshot import Snapshot, TutorControl

if TYPE_CHECKING:  # the Librarian imports torch, which waits until the arguments are known to be good
    from babyllm.school.librarian import Progress

SIGNAL_ECHO_S = 3.0
SIGNALS = tuple(s for s in (getattr(signal, n, None) for n in ("SIGINT", "SIGTERM", "SIGHUP")) if s is not None)


class _Printer:
    """Prints header, event and summary lines; a lost terminal (SIGHUP) silences it instead of crashing."""

    def __init__(self, quiet: bool = False) -> None:
        self.out = Console(highlight=False, soft_wrap=True)
        self.err = Console(stderr=True, highlight=False, soft_wrap=True)
        self.broken = False
        self.quiet = quiet  # ranks other than 0: errors only

    def __call__(self, *parts: Any, err: bool = False, style: str | None = None) -> None:
        if self.broken or (self.quiet and not err):
            return
        try:
            (self.err if err else self.out).print(*parts, style=style, markup=False)
        except (OSError, ValueError):
            self.broken = True


class ProgressLine:
    """Shows corpus preparation on stderr: one line redrawn in place on a terminal; in a log file
    (nohup, CI) a line every `every` seconds, so a quick preparation prints nothing there."""

    def __init__(self, stream: TextIO, every: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.stream, self.every, self.clock = stream, every, clock
        self.tty = stream.isatty()
        self.last = clock()
        self.open = False  # a terminal line is drawn and not yet ended
        self.printed = False
        self.shown: Progress | None = None

    def __call__(self, p: Progress) -> None:
        done = p.total > 0 and p.done >= p.total and p.stage == "encoding"
        if p == self.shown:
            return
        self.shown = p
        if self.tty:
            self._write(f"\r{p.line()}\x1b[K" + ("\n" if done else ""))
            self.open = not done
        elif self.clock() - self.last >= self.every or (done and self.printed):
            self.last = self.clock()
            self.printed = True
            self._write(p.line() + "\n")

    def finish(self) -> None:
        if self.open:
            self._write("\n")
            self.open = False

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # a lost terminal silences it (as _Printer)
            self.tty, self.every = False, float("inf")


def main(args: argparse.Namespace) -> int:
    from babyllm.school import distributed  # (torch: only once the arguments are known to be good)

    rank, world, _ = distributed.init_from_env()  # (0, 1, 0) outside torchrun
    try:
        code = _main(args, rank, world)
    except RuntimeError as e:
        if world > 1 and distributed.is_comm_failure(e):  # a rank died while the ranks were starting
            raise BabyError(distributed.lost_contact(e, None)) from None
        raise
    if world > 1 and code == 0:
        distributed.shutdown()
    return code


def _main(args: argparse.Namespace, rank: int, world: int) -> int:
    from babyllm.school import distributed

    show = _Printer(quiet=rank > 0)
    cfg, run_dir = distributed.share(lambda: prepare_run(args))
    resume = bool(getattr(args, "resume", False))
    show(f"run dir {run_dir} · config {cfg.name}" + (" · resuming" if resume else "")
         + (f" · {world} ranks" if world > 1 else ""))

    signals_seen: list[tuple[int, float]] = []
    holder: dict[str, Any] = {}

    def on_signal(signum: int, _frame: Any) -> None:
        now = time.monotonic()
        if world > 1 and signals_seen and signals_seen[0][0] == signum and now - signals_seen[0][1] < SIGNAL_ECHO_S:
            return  # torchrun's copy of a Ctrl-C the terminal already delivered
        signals_seen.append((signum, now))
        if len(signals_seen) > 1:
            second_signal(signum)
        tutor = holder.get("tutor")
        if tutor is not None:
            tutor.stop(by=_stopped_by(signum))
        # (still starting: remembered, and acted on where stopping is clean; see commands.startup)

    in_main = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, on_signal) for s in SIGNALS} if in_main else {}
    try:
        early = caught_before(previous.values())  # one that came while the command started
        if early is not None:
            raise Interrupted(early)
        progress = ProgressLine(sys.stderr, cfg.stats.print_every) if rank == 0 else None

        def say(message: str) -> None:
            if progress is not None:
                progress.finish()  # a warning starts on a line of its own, not after the progress line
                show(message, err=True, style="yellow")

        def preparing(p: Progress) -> None:  # called often while the corpus is prepared: a clean place to stop
            if signals_seen:
                raise Interrupted(signals_seen[0][0])  # (the Tutor removes a run directory it made)
            if progress is not None:
                progress(p)

        try:
            tutor = make_tutor(cfg, run_dir, resume, say=say, rank=rank, world_size=world, progress=preparing)
        finally:
            if progress is not None:
                progress.finish()
        holder["tutor"] = tutor
        if signals_seen:  # one came after the corpus was ready: the usual stop, at the first step boundary
            tutor.stop(by=_stopped_by(signals_seen[0][0]))
        return _watch(tutor, cfg, show, signals_seen, resume)
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _stopped_by(signum: int) -> str:
    return f"{signal.Signals(signum).name} to babyllm train (pid {os.getpid()})"


def _header_line(snap: Snapshot, cfg: Config, resumed: bool) -> str:
    """What the built Tutor is: device, size, corpus, the save it resumed from, how long it trains."""
    c = snap.corpus
    corpus = f" · corpus {c.root} ({c.train_tokens:,} training / {c.val_tokens:,} validation tokens)" if c else ""
    batch = f" · global batch {snap.global_batch:,} sequences" if snap.global_batch else ""
    return f"device {snap.device} · {snap.dtype} · {snap.params:,} parameters{batch}{corpus} · {_budget(cfg)}"


def _budget(cfg: Config) -> str:
    """How long the run trains: a step count, a training-time budget, both (whichever comes first), or neither."""
    t = cfg.train
    parts = ([f"step {t.steps:,}"] if t.steps else []) + ([f"{duration(t.minutes * 60)} of training"]
                                                           if t.minutes else [])
    return "until " + " or ".join(parts) if parts else "until stopped"


def _watch(tutor: TutorControl, cfg: Config, show: _Printer, signals_seen: list[Any], resumed: bool) -> int:
    first = tutor.snapshot()
    show(_header_line(first, cfg, resumed))

    result: list[str] = []
    thread = threading.Thread(target=lambda: result.append(tutor.run()), name="tutor", daemon=True)
    calli = Calligraphist(window=cfg.stats.window, depth=colour_depth(os.environ))  # (Rich drops colour off a tty)
    start = time.monotonic()
    next_line = start + cfg.stats.print_every
    seen_step: float | None = -1
    summarised: float | None = -1
    printed, told_stop, alarm_handled = first.history_events, False, False  # (a resume's old events: not news)
    release_openmp_threads()  # the main thread's pool would slow the Tutor's (see runtime)
    thread.start()

    def poll() -> None:
        nonlocal seen_step, printed, told_stop, alarm_handled, next_line, summarised
        snap = tutor.snapshot()
        if snap.stats and snap.stats.get("step") != seen_step:
            calli.observe(snap.stats)
            seen_step = snap.stats.get("step")
        new = snap.event_count - printed
        if new > 0:
            for ev in snap.events[-new:] if new <= len(snap.events) else snap.events:
                if not ev.said:  # (a warning said as it happened, while the corpus was prepared: once is enough)
                    show(f"[{ev.kind}] step {ev.step}: {ev.message}", style=EVENT_STYLES.get(ev.kind))
            printed = snap.event_count
        if signals_seen and not told_stop:
            told_stop = True
            show("stopping: saving, then exiting (a second signal exits at once)", style="yellow")
        if snap.state == "alarm" and not alarm_handled:
            alarm_handled = True
            show(f"alarm: {snap.error}; saving the last good state and exiting", style="bold red")
            tutor.stop(by="babyllm train (it exits on an alarm)")
        now = time.monotonic()
        if now >= next_line and snap.stats and snap.state == "running" and snap.stats.get("step") != summarised:
            show(calli.summary(snap.stats))
            summarised = snap.stats.get("step")
            next_line = now + cfg.stats.print_every

    while thread.is_alive():
        time.sleep(0.1)  # signals interrupt the sleep and run their handler here, in the main thread
        poll()
    thread.join()
    poll()
    final = result[0] if result else "error"
    snap = tutor.snapshot()
    stats = snap.stats
    elapsed = time.monotonic() - start
    line = Text(f"{final} at step {snap.step} · {snap.tokens:,} tokens · {elapsed:.0f} s")
    for key in calli.registry.closing:
        if key in stats:
            line.append(f" · {calli.registry.label(key)} ")
            line.append_text(calli.text(key, stats[key]))
    if math.isfinite(snap.best_val):
        line.append(f" · best val {snap.best_val:.4f} @{snap.best_val_step}")
    show(line)
    if snap.last_save_path is not None and snap.last_save_step == snap.step:
        show(f"saved step {snap.last_save_step} to {snap.last_save_path}", style="green")
    if snap.last_save_error:
        show(f"error: {snap.last_save_error}", err=True, style="red")
        return 1
    if final == "error":
        show(f"error: {snap.error}", err=True, style="red")
        return 1
    if final == "alarm":
        return 1
    return 0
