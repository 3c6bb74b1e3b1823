"""A run's loss curves (training loss, validation loss and bits per byte) from its History or its metrics.jsonl:
what `babyllm plot` draws and the loss pane overlays."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from babyllm.errors import BabyError
from babyllm.run import runfiles
from babyllm.snapshot import History
from babyllm.stats import REGISTRY

MAX_POINTS = 4000  # per curve: more than a figure's width in pixels, so thinning never shows


X_AXES = ("step", "tokens")


@dataclass(frozen=True)
class Curves:
    """One run's curves: training loss per step, validation loss (and bits per byte) per evaluation."""

    name: str
    steps: list[int]
    train: list[float]
    tokens: list[float]  # tokens seen at each of `steps`
    val_steps: list[int]
    val: list[float]
    val_bpb: list[float]

    def x(self, axis: str, steps: list[int]) -> list[float]:
        """`steps` on the chosen x axis (tokens: interpolated along the training steps, which log them; a
        validation step that thinning left out of those still gets its place)."""
        return [float(s) for s in steps] if axis == "step" else tokens_at(steps, self.steps, self.tokens)


def tokens_at(steps: list[int], known_steps: list[int], known_tokens: list[float]) -> list[float]:
    """Tokens seen at each of `steps`, interpolated between the steps that logged them (steps themselves
    when none did: a log from before tokens were logged)."""
    known = [(s, t) for s, t in zip(known_steps, known_tokens, strict=True) if math.isfinite(t)]
    if not known:
        return [float(s) for s in steps]
    at, tokens = zip(*known, strict=True)
    return [float(t) for t in np.interp(steps, at, tokens)]


def read_curves(run_dir: Path) -> Curves:
    """A run's curves; BabyError when it has no training steps logged."""
    run_dir = runfiles.check_run_dir(run_dir, "read", flag="babyllm plot")
    history = History(maxlen=10_000_000)
    runfiles.replay_metrics(run_dir, history)
    curves = curves_from_history(run_dir.name, history, MAX_POINTS)
    if not curves.steps:
        raise BabyError(f"{run_dir}: no training steps in {runfiles.METRICS_FILE} yet (nothing to plot)")
    return curves


CURVE_STATS = REGISTRY.where(lambda s: s.curve)  # the stats the curves are drawn from


def curves_from_history(name: str, history: History, max_points: int) -> Curves:
    """A run's curves from its History, each thinned to at most `max_points` (steps: none logged yet)."""
    series = {stat: history.series(stat, max_points) for stat in CURVE_STATS}
    (steps, train), (tok_steps, tokens) = series["loss"], series["tokens"]
    (val_steps, val), (bpb_steps, bpb) = series["val_loss"], series["val_bpb"]
    tokens_at = dict(zip(tok_steps, tokens, strict=True))
    bpb_at = dict(zip(bpb_steps, bpb, strict=True))
    keep = [i for i, v in enumerate(val) if v == v]  # nan: not validated yet
    return Curves(name, steps, train, [tokens_at.get(s, float("nan")) for s in steps],
                  [val_steps[i] for i in keep], [val[i] for i in keep],
                  [bpb_at.get(val_steps[i], float("nan")) for i in keep])
