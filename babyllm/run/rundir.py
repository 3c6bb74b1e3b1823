"""Which run directory a command means, and claiming it: --run/--run-dir or a new or the newest run,
created writable, never a new run over saves, never a resume without one."""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from babyllm.errors import BabyError, CheckpointError
from babyllm.run import runlock
from babyllm.run.runfiles import (
    META_FILE,
    RUNS,
    check_run_dir,
    latest_step,
    list_saves,
    run_name_dir,
)


def make_run_dir(run_dir: Path) -> bool:
    """Create the run directory (and parents), or say in one line why it cannot be used. True when this call
    made it: of several starts at once exactly one did, and only it may ever remove it (see Claim)."""
    run_dir = check_run_dir(run_dir, "train")
    try:
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            run_dir.mkdir()
            created = True
        except FileExistsError:  # (made before, or by another start a moment ago)
            created = False
            check_run_dir(run_dir, "train")  # (a file put there meanwhile: one line)
    except OSError as e:
        raise BabyError(f"{run_dir}: cannot create the run directory ({e.strerror or e}); "
                        "choose another --run-dir") from None
    if not os.access(run_dir, os.W_OK | os.X_OK):
        raise BabyError(f"{run_dir}: the run directory is not writable; fix its permissions or "
                        "train a copy of it (its saves are untouched)")
    return created


@dataclass
class Claim:
    """A run directory claimed for training: its lock held, and whether this start made the directory."""

    run_dir: Path
    lock: runlock.RunLock
    created: bool

    def abandon(self) -> None:
        """A start that failed: a run directory it made is removed while its lock is still held (no other start
        can be using it), then the lock goes. One it did not make is left as it was."""
        if self.created:
            shutil.rmtree(self.run_dir, ignore_errors=True)
        self.lock.release()


def claim(run_dir: Path, resume: bool, tries: int = 3) -> Claim:
    """Make (or find) the run directory and take its lock; of any number of starts at once exactly one wins and
    the others raise RunLocked, having removed nothing. check_start's refusals come after the lock is taken."""
    for _ in range(tries):
        created = make_run_dir(run_dir)
        try:
            lock = runlock.RunLock(run_dir).acquire()
        except runlock.LockFileGone:  # the directory was removed (a failed start's) as this one took its lock
            continue
        taken = Claim(Path(run_dir), lock, created)
        try:
            check_start(run_dir, resume, owner=True)
        except BaseException:
            taken.abandon()
            raise
        return taken
    raise BabyError(f"{run_dir}: removed again and again as this run started; start it again")


def check_start(run_dir: Path, resume: bool, owner: bool = False) -> None:
    """A new run must not overwrite saves; a resumed run needs one; a run being trained is named as such
    (`owner`: the caller holds the run's lock itself)."""
    if not owner:
        runlock.check_free(run_dir)
    step = latest_step(run_dir)
    if not resume and step is not None:
        raise BabyError(
            f"{run_dir} already has a save at step {step}; pass --resume to continue it, or choose another --run"
        )
    if resume and step is None:
        raise CheckpointError(f"{run_dir}: no save to resume from (start it without --resume)")


def resolve_run_dir(
    run: str | None, run_dir: Path | None, resume: bool, config_name: str, runs_root: Path = RUNS
) -> Path:
    """--run-dir D as given; --run NAME -> runs_root/NAME; neither: the newest saved run (resume) or a new one."""
    runs_root = Path(runs_root)
    if run_dir is not None:
        d = Path(run_dir)
    elif run:
        d = run_name_dir(run, runs_root)
    elif resume:
        best: tuple[float, Path] | None = None
        for candidate in runs_root.iterdir() if runs_root.is_dir() else ():
            saves = list_saves(candidate)
            if saves:
                stamp = max((s.path / META_FILE).stat().st_mtime if (s.path / META_FILE).exists() else 0.0
                            for s in saves)
                if best is None or stamp > best[0]:
                    best = (stamp, candidate)
        if best is None:
            raise CheckpointError(f"{runs_root}: no saved run to resume; pass --run NAME or --run-dir D")
        d = best[1]
    else:
        stem = f"{config_name or 'run'}-{time.strftime('%Y%m%d-%H%M%S')}"
        d, n = runs_root / stem, 2
        while d.exists():
            d, n = runs_root / f"{stem}-{n}", n + 1
    d = check_run_dir(d, "resume" if resume else "train", "--run-dir" if run_dir is not None else "--run", runs_root)
    check_start(d, resume)
    return d
