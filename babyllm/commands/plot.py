"""`babyllm plot`: the loss curves of one or more runs drawn to a PNG, SVG or PDF, with no terminal.

Reads each run's metrics.jsonl through runfiles (rollbacks honoured: only the live branch is drawn) and
draws with matplotlib, an optional extra (`pip install -e ".[plot]"`), imported only here.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from babyllm.errors import BabyError
from babyllm.run.curves import X_AXES, Curves, read_curves

FORMATS = (".png", ".svg", ".pdf")


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
