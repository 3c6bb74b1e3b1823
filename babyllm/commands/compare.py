"""`babyllm runs --compare A B ...`: runs side by side, from their files (no torch, no live connection).

Per run: best validation loss (and its step and bits per byte), steps, tokens, the training clock at
the newest save, the wall-clock span of its metrics, the median model FLOPs utilisation, and the config
keys whose values differ between the runs (each run's config is its newest save's).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from babyllm.durations import duration
from babyllm.errors import BabyError
from babyllm.run import runfiles
from babyllm.safefile import read_bounded
from babyllm.snapshot import History

ALL = runfiles.ALL_STEPS  # every step the log holds, unthinned
MISSING = "-"


@dataclass(frozen=True)
class Summary:
    """What `--compare` shows of one run."""

    name: str
    step: int | None = None
    tokens: int | None = None
    best_val: float | None = None
    best_val_step: int | None = None
    best_bpb: float | None = None
    train_seconds: float | None = None  # the training clock at the newest save (steps only, no pauses)
    wall_seconds: float | None = None  # wall clock from the first metrics line to the last (pauses included)
    mfu: float | None = None  # the median of the logged mfu (model FLOPs utilisation) over the live branch
    config: dict[str, Any] = field(default_factory=dict)  # "section.key" -> value (newest save's)


def summarise(run_dir: Path) -> Summary:
    """One run's summary from its metrics log and newest save; BabyError if it is not a run."""
    d = runfiles.check_run_dir(run_dir, "watch", flag="--compare")
    history = History(maxlen=10_000_000)
    runfiles.replay_metrics(d, history)
    steps, tokens = history.series("tokens", max_points=ALL)
    vsteps, vals = history.series("val_loss", max_points=ALL)
    bsteps, bpbs = history.series("val_bpb", max_points=ALL)
    best = min(((v, s) for s, v in zip(vsteps, vals, strict=True) if math.isfinite(v)), default=None)
    bpb_at = dict(zip(bsteps, bpbs, strict=True))
    bpb = bpb_at.get(best[1]) if best else None
    mfus = sorted(v for v in history.series("mfu", max_points=ALL)[1] if math.isfinite(v))
    meta = _newest_meta(d)
    return Summary(
        d.name, steps[-1] if steps else None, int(tokens[-1]) if tokens else None,
        best[0] if best else None, best[1] if best else None,
        bpb if bpb is not None and math.isfinite(bpb) else None,
        _real(meta.get("train_seconds")), _wall_span(d), mfus[len(mfus) // 2] if mfus else None,
        _flatten(meta.get("config") or {}))


def differing_keys(runs: list[Summary]) -> list[str]:
    """Config keys whose values are not the same in every run that has a config (a key one lacks differs)."""
    known = [r for r in runs if r.config]
    keys = sorted({k for r in known for k in r.config})
    return [k for k in keys if len({json.dumps(r.config.get(k), sort_keys=True) for r in known}) > 1]


def compare_table(runs: list[Summary]) -> list[str]:
    """The runs as columns, one row per figure, then one row per differing config key."""
    rows: list[tuple[str, list[str]]] = [
        ("best val loss", [_best(r) for r in runs]),
        ("best val bpb", [f"{r.best_bpb:.3f}" if r.best_bpb is not None else MISSING for r in runs]),
        ("steps", [f"{r.step:,}" if r.step is not None else MISSING for r in runs]),
        ("tokens", [f"{r.tokens:,}" if r.tokens is not None else MISSING for r in runs]),
        ("training time", [duration(r.train_seconds) if r.train_seconds is not None else MISSING for r in runs]),
        ("wall time", [duration(r.wall_seconds) if r.wall_seconds is not None else MISSING for r in runs]),
        ("MFU (median)", [f"{r.mfu:.1%}" if r.mfu is not None else MISSING for r in runs]),
    ]
    differs = differing_keys(runs)
    rows += [(k, [_value(r.config.get(k)) for r in runs]) for k in differs]
    header = ("", [r.name for r in runs])
    widths = [max(len(label) for label, _ in [header, *rows])]
    widths += [max(len(cells[i]) for _, cells in [header, *rows]) for i in range(len(runs))]
    lines = [_line(label, cells, widths) for label, cells in [header, *rows]]
    if differs:
        lines.insert(len(rows) - len(differs) + 1, "config that differs:")
    if not all(r.config for r in runs):
        lines.append("(a run without a save has no config to compare: " + MISSING + ")")
    elif not differs:
        lines.append("(the configs are the same)")
    return lines


def compare_json(runs: list[Summary]) -> dict[str, Any]:
    return {"runs": [{k: v for k, v in r.__dict__.items() if k != "config"} for r in runs],
            "differs": {k: [r.config.get(k) for r in runs] for k in differing_keys(runs)}}


def compare_main(run_dirs: list[Path], as_json: bool) -> int:
    if len(run_dirs) < 2:
        raise BabyError("--compare wants two runs or more, e.g. babyllm runs --compare runs/a runs/b")
    runs = [summarise(Path(d)) for d in run_dirs]
    print(json.dumps(compare_json(runs)) if as_json else "\n".join(compare_table(runs)))
    return 0


def _best(r: Summary) -> str:
    return f"{r.best_val:.4f} @{r.best_val_step:,}" if r.best_val is not None else MISSING


def _value(v: Any) -> str:
    return MISSING if v is None else json.dumps(v) if not isinstance(v, str) else v


def _line(label: str, cells: list[str], widths: list[int]) -> str:
    return "  ".join([label.ljust(widths[0]), *(c.rjust(w) for c, w in zip(cells, widths[1:], strict=True))]).rstrip()


def _real(v: Any) -> float | None:
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) else None


def _flatten(cfg: Any) -> dict[str, Any]:
    if not isinstance(cfg, dict):
        return {}
    return {f"{section}.{key}": value for section, values in cfg.items() if isinstance(values, dict)
            for key, value in values.items()}


def _newest_meta(d: Path) -> dict[str, Any]:
    """The newest readable save's meta.json (checked saves are soul's business; this only reads figures)."""
    for info in runfiles.list_saves(d):
        try:
            meta = json.loads(read_bounded(info.path / runfiles.META_FILE,
                                           runfiles.READ_LIMITS[runfiles.META_FILE], d))
        except (OSError, ValueError, RecursionError, BabyError):
            continue
        if isinstance(meta, dict):
            return meta
    return {}


def _wall_span(d: Path) -> float | None:
    times = [t for rec in runfiles.read_jsonl(d / runfiles.METRICS_FILE)
             if (t := _real(rec.get(runfiles.TIME))) is not None]
    return times[-1] - times[0] if len(times) > 1 else None
