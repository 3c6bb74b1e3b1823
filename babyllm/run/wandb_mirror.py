"""Weights & Biases as one of the run's mirrors (babyllm.run.mirrors): `[log] wandb = true`, the [wandb] extra.

One W&B run per start of training (a new run, then each resume), named after the run directory (a resume as
NAME@STEP) and grouped by it, with the config and how the run is trained (device, dtype, versions). Its
rows: every step's stats against babyLLM's `step` (W&B's own step only grows, and a rollback sends the
run's steps back), a validation's only where it changes (val_bpb: the validation batches in bits per
byte), each sample as a one-row table under "samples" (step, text, truth, guess, right, of: W&B's step
slider walks through them; one growing INCREMENTAL table slowed a tiny run's steps 50-fold) and the
machine's readings as system/<key>. W&B cannot forget rows: a rollback, or a resume from an older save,
logs {"rollback_to": STEP} at the step it went back to, the marker metrics.jsonl holds.

W&B's files go into the run directory's wandb/. W&B's own settings decide online or offline
(WANDB_MODE=offline writes only local files; `wandb sync` uploads them later). It never prompts: online
without a login is a one-line error. Its console capture and messages are off (the cockpit owns the
terminal); where the run goes is said as an event.
"""


from __future__ import annotations

import contextlib
import io
import math
from typing import Any

import wandb

from babyllm.errors import ConfigError
from babyllm.run.mirrors import SAMPLE_COLUMNS, SYSTEM_PREFIX, Mirror, Rows, Start, sample_text
from babyllm.run.runfiles import ROLLBACK_TO, WANDB
from babyllm.snapshot import Sample, Say

OFFLINE_MODES = ("offline", "dryrun", "disabled")


def open_mirror(start: Start, failed: Say) -> WandbMirror:
    """This start's W&B run (a one-line ConfigError when W&B would have to ask for a login)."""
    if wandb.setup().settings.mode not in OFFLINE_MODES and not _logged_in():
        raise ConfigError("log.wandb = true: not logged in to Weights & Biases; run `wandb login` once, or set "
                          "WANDB_MODE=offline to log to files in the run directory (`wandb sync` uploads them)")
    folder = start.run_dir / WANDB
    folder.mkdir(exist_ok=True)
    run = wandb.init(project=start.project, name=f"{start.name}@{start.step}" if start.step else start.name,
                     group=start.name, job_type="train", config=start.config, dir=str(start.run_dir),
                     reinit="create_new", settings=wandb.Settings(console="off", silent=True))
    return WandbMirror(run, _where(run))


def _logged_in() -> bool:
    with contextlib.redirect_stderr(io.StringIO()):  # (it says where it found the key)
        return bool(wandb.login(prompt=False, verify=False))


def _where(run: Any) -> str:
    if run.settings.mode in OFFLINE_MODES:
        return f"W&B offline, {run.dir.removesuffix('/files')} (upload: wandb sync {run.dir.removesuffix('/files')})"
    return f"W&B {run.url}"


class WandbMirror(Mirror):
    """Rows, samples and readings to one W&B run; `close` finishes it."""

    def __init__(self, run: Any, where: str) -> None:
        self._run = run
        self.where = where
        self._rows = Rows()
        run.define_metric("step")
        run.define_metric("*", step_metric="step")  # babyLLM's step is every chart's x axis

    def add(self, stats: dict[str, float]) -> None:
        self._run.log(self._rows.row(stats))

    def restart(self, step: int) -> None:
        self._rows.forget()
        self._run.log({"step": step, ROLLBACK_TO: step})

    def sample(self, sample: Sample) -> None:
        row = sample_text(sample)
        table = wandb.Table(columns=list(SAMPLE_COLUMNS), data=[[row[c] for c in SAMPLE_COLUMNS]])
        self._run.log({"step": sample.step, "samples": table})

    def system(self, step: int, readings: dict[str, float]) -> None:
        self._run.log({"step": step, **{SYSTEM_PREFIX + k: v for k, v in readings.items() if math.isfinite(v)}})

    def close(self) -> None:
        self._run.finish()
