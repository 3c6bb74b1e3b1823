"""`babyllm plot`: the loss curves (or, with --system, the machine's readings) of one or more runs drawn to a
PNG, SVG or PDF, with no terminal.

Reads each run's metrics.jsonl through runfiles (rollbacks honoured: only the live branch is drawn) and
draws with matplotlib, an optional extra (`pip install "babyllm-tui[plot]"`), imported only here.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from babyllm.errors import BabyError
from babyllm.run import runfiles
from babyllm.run.curves import X_AXES, Curves, read_curves
from babyllm.system import READINGS

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
        raise BabyError('babyllm plot needs matplotlib: pip install "babyllm-tui[plot]" '
                        '(from a checkout: pip install -e ".[plot]")') from None
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
    _save(fig, out)


def _save(fig: Any, out: Path) -> None:
    """Write the figure to `out` (a one-line error where it cannot be written) and let it go."""
    plt = _pyplot()

    fig.tight_layout()
    try:
        fig.savefig(out)
    except OSError as e:
        raise BabyError(f"-o {out}: cannot be written ({e.strerror or e})") from None
    finally:
        plt.close(fig)


# --- the machine's readings (--system) -------------------------------------------------------------

SIZES = ("cpu_cores", "mem_total_gib", "gpu_mem_total_gib")  # the machine's sizes: constants, not curves
Series = dict[str, tuple[list[int], list[float]]]  # reading key -> (steps, values)


def read_system(run_dir: Path) -> Series:
    """The readings metrics.jsonl carries every few seconds, on the live branch; BabyError when there are none."""
    run_dir = runfiles.check_run_dir(run_dir, "read", flag="babyllm plot")
    points: list[tuple[int, dict[str, float]]] = []
    for rec in runfiles.read_jsonl(run_dir / runfiles.METRICS_FILE):
        back = runfiles.rollback_step(rec)
        step = runfiles.record_step(runfiles.record_stats(rec))
        readings = runfiles.record_system(rec)
        if back is not None:
            points = [p for p in points if p[0] <= back]
        elif step is not None and readings:
            points = [p for p in points if p[0] < step] + [(step, readings)]  # (a step logged again replaces)
    series: Series = {}
    for r in READINGS:
        if r.key not in SIZES and any(r.key in got for _, got in points):
            kept = [(step, got[r.key]) for step, got in points if r.key in got]
            series[r.key] = ([s for s, _ in kept], [v for _, v in kept])
    if not series:
        raise BabyError(f"{run_dir}: no system readings in {runfiles.METRICS_FILE} (runs trained before "
                        "babyllm 0.1 wrote them, or not trained yet)")
    return series


def draw_system(runs: list[tuple[str, Series]], out: Path) -> None:
    """One panel per reading (CPU, memory, GPU ...), one colour per run, against the step."""
    plt = _pyplot()
    keys = [r.key for r in READINGS if any(r.key in series for _, series in runs)]
    fig, axes = plt.subplots(len(keys), 1, figsize=(10, 1.9 * len(keys) + 0.8), dpi=120, sharex=True, squeeze=False)
    for ax, key in zip(axes[:, 0], keys, strict=True):
        reading = next(r for r in READINGS if r.key == key)
        for i, (name, series) in enumerate(runs):
            if key in series:
                ax.plot(*series[key], color=f"C{i % 10}", linewidth=1.0, marker="o", markersize=2, label=name)
        ax.set_ylabel(f"{reading.label} ({reading.unit})" if reading.unit else reading.label)
        ax.grid(True, alpha=0.3)
    axes[0, 0].legend(fontsize="small")
    axes[0, 0].set_title("babyLLM, the training machine: " + ", ".join(name for name, _ in runs))
    axes[-1, 0].set_xlabel("step")
    _save(fig, out)


def plot_main(args: argparse.Namespace) -> int:
    out = check_output(Path(args.output))
    plural = "s" if len(args.run_dirs) != 1 else ""
    if args.system:
        draw_system([(Path(d).name, read_system(Path(d))) for d in args.run_dirs], out)
        print(f"wrote {out} ({len(args.run_dirs)} run{plural}, system readings by step)")
        return 0
    runs = [read_curves(Path(d)) for d in args.run_dirs]
    draw(runs, out, x_axis=args.x, log=args.log)
    print(f"wrote {out} ({len(runs)} run{plural}, x by {args.x})")
    return 0


def add_plot_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR", help="run directories to draw")
    p.add_argument("-o", "--output", required=True, metavar="FILE", help="FILE.png, FILE.svg or FILE.pdf")
    p.add_argument("--x", choices=X_AXES, default="step", help="x axis: step (default) or tokens")
    p.add_argument("--log", action="store_true", help="log-scale loss axis")
    p.add_argument("--system", action="store_true",
                   help="draw the training machine's readings (CPU, memory, GPU use, temperature, power) instead")
