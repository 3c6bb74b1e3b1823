"""Other runs' curves for the cockpit's loss pane (the overlay): the runs to pick from, and each picked
run's metrics.jsonl followed: read once when picked, then only the lines appended since (a live run
picked as a reference keeps growing). The curves are babyllm.run.curves (the same reader as `babyllm plot`);
the files are those on this machine, whichever machine trains the current run. No Textual here: the
pane calls these from a worker thread.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from babyllm.run import listing, runfiles
from babyllm.run.curves import CURVE_STATS, Curves, curves_from_history
from babyllm.safefile import Refused
from babyllm.snapshot import History

CURVE_POINTS = 1000  # per curve, as read (the pane thins them further to its width)
MAX_STEPS = 10_000_000  # steps a reference run's History keeps (the whole of any run this project trains)


def runs_root(run_dir: str) -> Path:
    """Where the current run's siblings are: its parent folder, or runs/ (a demo run, a run elsewhere)."""
    parent = Path(run_dir).parent if run_dir else None
    return parent if parent is not None and parent.is_dir() else runfiles.RUNS


def choices(root: Path, current: str = "") -> list[listing.RunRow]:
    """The runs under `root` a user can overlay (all but the current run), as `babyllm runs` lists them."""
    return listing.list_runs(root, skip=Path(current) if current else None)


class ReferenceRun:
    """One picked run: its curves (None until a read finds training steps) and a one-line note on what
    is wrong with its log ("" when nothing is). read() is safe to call from any thread."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.name = self.run_dir.name
        self.curves: Curves | None = None
        self.note = ""
        self._history = History(maxlen=MAX_STEPS)
        # only what the curves need is kept (a long run's other stats would cost memory for nothing)
        self._replay = runfiles.Replay(self._history, keep=frozenset(CURVE_STATS))
        self._offset = 0  # bytes of metrics.jsonl read so far
        self._seen: tuple[int, int] | None = None  # (size, mtime_ns) at the last read
        self._read_once = False
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        return self.run_dir / runfiles.METRICS_FILE

    def changed(self) -> bool:
        """Whether the log differs from the last read (one stat: cheap enough for a timer)."""
        return not self._read_once or _signature(self.path) != self._seen

    def read(self) -> bool:
        """Take in what the log gained since the last read (all of it, the first time, or when it was
        started over: shorter than what was read). Returns whether the curves or the note changed."""
        with self._lock:
            before = (self.curves, self.note)
            self._read_once = True
            self._seen = _signature(self.path)
            try:
                self._take_new_lines()
            except (OSError, Refused) as e:  # (Refused: not a regular file of the run, or a link out of it)
                self.curves, self.note = None, self._missing(e)
                return (self.curves, self.note) != before
            curves = curves_from_history(self.name, self._history, CURVE_POINTS)
            self.curves = curves if curves.steps else None
            self.note = "" if curves.steps else f"{self.name}: no training steps in {runfiles.METRICS_FILE}"
            return True

    def _take_new_lines(self) -> None:
        if self._seen is not None and self._seen[0] < self._offset:  # the log started over
            self._replay.restart()
            self._offset = 0
        records, self._offset = runfiles.read_jsonl_since(self.path, self._offset)
        self._replay.feed(records)

    def _missing(self, error: OSError | Refused) -> str:
        if isinstance(error, FileNotFoundError):
            return f"{self.name}: no {runfiles.METRICS_FILE}: not trained yet?"
        why = error.why if isinstance(error, Refused) else error.strerror or error
        return f"{self.name}: cannot read {runfiles.METRICS_FILE} ({why})"


class Overlay:
    """The runs picked for the loss pane, in the order picked (which gives each its colour)."""

    def __init__(self) -> None:
        self.runs: tuple[ReferenceRun, ...] = ()

    def pick(self, run_dirs: list[Path]) -> None:
        """Show these runs; one picked before keeps what was read of it."""
        kept = {r.run_dir: r for r in self.runs}
        self.runs = tuple(kept.get(Path(d)) or ReferenceRun(Path(d)) for d in run_dirs)

    def stale(self) -> tuple[ReferenceRun, ...]:
        """The picked runs whose logs changed since they were read."""
        return tuple(r for r in self.runs if r.changed())

    @staticmethod
    def read(runs: tuple[ReferenceRun, ...]) -> bool:
        """Read these runs (a worker thread's job); whether any curve or note changed."""
        return any([r.read() for r in runs])


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns
