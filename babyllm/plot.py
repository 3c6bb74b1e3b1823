"""`babyllm plot`: the loss curves of one or more runs drawn to a PNG, SVG or PDF, with no terminal.

Reads each run's metrics.jsonl through runfiles (rollbacks honoured: only the live branch is drawn) and
draws with matplotlib, an optional extra (`pip install -e ".[plot]"`), imported only here.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from babyllm import runfiles
from babyllm.errors import BabyError
from babyllm.snapshot import History

FORMATS = (".png", ".svg", ".pdf")
MAX_POINTS = 4000  # per curve: more than a figure's width in pixels, so thinning never shows
ALL_STEPS = 1 << 62  # replay every step the log holds
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
    runfiles.replay_history(run_dir, history, ALL_STEPS)
    curves = curves_from_history(run_dir.name, history, MAX_POINTS)
    if not curves.steps:
        raise BabyError(f"{run_dir}: no training steps in {runfiles.METRICS_FILE} yet (nothing to plot)")
    return curves


CURVE_STATS = ("loss", "tokens", "val_loss", "val_bpb")  # the stats the curves are drawn from


def curves_from_history(name: str, history: History, max_points: int) -> Curves:
    """A run's curves from its History, each thinned to at most `max_points` (steps: none logged yet)."""
    (steps, train), (tok_steps, tokens), (val_steps, val), (bpb_steps, bpb) = (
        history.series(stat, max_points) for stat in CURVE_STATS)
    tokens_at = dict(zip(tok_steps, tokens, strict=True))
    bpb_at = dict(zip(bpb_steps, bpb, strict=True))
    keep = [i for i, v in enumerate(val) if v == v]  # nan: not validated yet
    return Curves(name, steps, train, [tokens_at.get(s, float("nan")) for s in steps],
                  [val_steps[i] for i in keep], [val[i] for i in keep],
                  [bpb_at.get(val_steps[i], float("nan")) for i in keep])


def check_output(path: Path) -> Path:
    if path.suffix.lower() not in FORMATS:
        raise BabyError(f"-o {path}: the file name must end in {', '.join(FORMATS)}")
    if not path.parent.exists():
        raise BabyError(f"-o {path}: no such folder {path.parent}")
    return path


def _pyplot() -> Any:
    try:
        import matplotlib
    except ImportError:
        raise BabyError('babyllm plot needs matplotlib: pip install -e ".[plot]"') from None
    matplotlib.use("Agg")  # files only: never a window, works over SSH
    import matplotlib.pyplot as plt

    return plt


def draw(runs: list[Curves], out: Path, x_axis: str = "step", log: bool = False) -> None:
    """Training loss (thin) and validation loss (dots, joined) of every run, one colour per run."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(10, 5.5), dpi=120)
    for i, run in enumerate(runs):
        colour = f"C{i % 10}"
        ax.plot(run.x(x_axis, run.steps), run.train, color=colour, linewidth=0.8, alpha=0.55,
                label=f"{run.name} train")
        if run.val_steps:
            best = min(run.val)
            ax.plot(run.x(x_axis, run.val_steps), run.val, color=colour, linewidth=1.6, marker="o",
                    markersize=3, label=f"{run.name} val (best {best:.3f})")
    ax.set_xlabel("tokens" if x_axis == "tokens" else "step")
    ax.set_ylabel("loss (nats per token)")
    if log:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title("babyLLM: " + ", ".join(r.name for r in runs))
    fig.tight_layout()
    try:
        fig.savefig(out)
    except OSError as e:
        raise BabyError(f"-o {out}: cannot be written ({e.strerror or e})") from None
    finally:
        plt.close(fig)


def plot_main(args: argparse.Namespace) -> int:
    out = check_output(Path(args.output))
    runs = [read_curves(Path(d)) for d in args.run_dirs]
    draw(runs, out, x_axis=args.x, log=args.log)
    print(f"wrote {out} ({len(runs)} run{'s' if len(runs) != 1 else ''}, x by {args.x})")
    return 0


def add_plot_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories to draw")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="FILE.png, FILE.svg or FILE.pdf")
    p.add_argument("--x", choices=X_AXES, default="step", help="x axis: step (default) or tokens")
    p.add_argument("--log", action="store_true", help="log-scale loss axis")
