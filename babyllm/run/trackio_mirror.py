"""Trackio, Hugging Face's local and free tracker, as one of the run's mirrors (babyllm.run.mirrors):
`[log] trackio = true`, the [trackio] extra.

One Trackio run per start of training (a new run, then each resume), named after the run directory (a
resume as NAME@STEP) and grouped by it, in the project `[log] project`, with the config and how the run
is trained. Its rows: every step's stats at babyLLM's step, a validation's only where it changes
(val_bpb: the validation batches in bits per byte), each sample as a one-row table (step, text, truth,
guess, right, of) and the machine's readings as Trackio's system metrics. Trackio keeps every row: a
rollback, or a resume from an older save, logs {"rollback_to": STEP} at the step it went back to, the
marker metrics.jsonl holds.

Trackio writes a local SQLite database (in $TRACKIO_DIR, by default ~/.cache/huggingface/trackio; no
network); `trackio show --project babyllm` opens its dashboard. Its own messages (printed) are kept off the
terminal the cockpit owns; where the run goes is said as an event.
"""


from __future__ import annotations

import contextlib
import io
import math
from collections.abc import Callable
from typing import Any, TypeVar

import trackio

from babyllm.run.mirrors import SAMPLE_COLUMNS, Mirror, Rows, Start, sample_text
from babyllm.run.runfiles import ROLLBACK_TO
from babyllm.snapshot import Sample, Say

T = TypeVar("T")


def open_mirror(start: Start, failed: Say) -> TrackioMirror:
    run = _quietly(lambda: trackio.init(
        project=start.project, name=f"{start.name}@{start.step}" if start.step else start.name, group=start.name,
        config=start.config, resume="never", embed=False, auto_log_gpu=False, auto_log_cpu=False))
    # trackio.init also makes it the module's current run (for trackio.log, and finished again at exit, loudly):
    # this mirror logs through its own Run and finishes it itself.
    with contextlib.suppress(AttributeError):
        trackio.context_vars.current_run.set(None)
    return TrackioMirror(run, f"Trackio project {start.project} in {trackio.TRACKIO_DIR} "
                              f"(see it: trackio show --project {start.project})")


def _quietly(call: Callable[[], T]) -> T:
    """Trackio prints what it does to stdout: kept off the terminal (the headless lines, the cockpit)."""
    with contextlib.redirect_stdout(io.StringIO()):
        return call()


class TrackioMirror(Mirror):
    """Rows, samples and readings to one Trackio run; `close` finishes it."""

    def __init__(self, run: Any, where: str) -> None:
        self._run = run
        self.where = where
        self._rows = Rows()

    def add(self, stats: dict[str, float]) -> None:
        row = self._rows.row(stats)
        step = int(row.pop("step", stats["step"]))  # ("step" is Trackio's own column)
        self._run.log(row, step=step)

    def restart(self, step: int) -> None:
        self._rows.forget()
        self._run.log({ROLLBACK_TO: step}, step=step)

    def sample(self, sample: Sample) -> None:
        row = sample_text(sample)
        table = trackio.Table(columns=list(SAMPLE_COLUMNS), data=[[row[c] for c in SAMPLE_COLUMNS]])
        self._run.log({"samples": table}, step=sample.step)

    def system(self, step: int, readings: dict[str, float]) -> None:
        self._run.log_system({k: v for k, v in readings.items() if math.isfinite(v)})

    def close(self) -> None:
        _quietly(self._run.finish)
