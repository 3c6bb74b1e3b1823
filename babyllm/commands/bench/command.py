"""`babyllm bench`: the configs to measure (from the arguments), their children, and the output."""

from __future__ import annotations

import argparse
import json
from typing import Any

from babyllm.commands.bench.child import run_child
from babyllm.commands.bench.machine import machine_info
from babyllm.commands.bench.render import render, render_scaling
from babyllm.config import load_config
from babyllm.errors import BabyError

DEFAULT_CONFIGS = ("cpu", "default")



def _specs(args: argparse.Namespace) -> list[dict[str, Any]]:
    names = list(args.config or DEFAULT_CONFIGS)
    batch = _batch_arg(getattr(args, "batch", None))
    overrides = list(args.overrides) + ([f"train.batch={batch}"] if isinstance(batch, int) else [])
    specs = []
    for name in names:
        cfg = load_config(name, overrides)  # errors in configs or --set surface here, before any child
        specs.append(dict(config=name, overrides=overrides, device=args.device or "auto", fill=batch == "auto",
                          dtype=getattr(args, "dtype", None) or cfg.train.dtype,
                          compile=bool(getattr(args, "compile", False)), quick=bool(getattr(args, "quick", False))))
    return specs


def _batch_arg(value: str | None) -> int | str | None:
    """--batch: None (the config's), a positive whole number, or 'auto'."""
    if value is None:
        return None
    if value.strip().lower() == "auto":
        return "auto"
    try:
        batch = int(value)
    except ValueError:
        batch = 0
    if batch < 1:
        raise BabyError(f"--batch {value!r}: give a whole number of sequences (e.g. 64) or auto")
    return batch


def scaling_specs(base: dict[str, Any]) -> list[dict[str, Any]]:
    """Three sizes each of context, neurons and batch around the base config (the others at base)."""
    from babyllm.school.batching import BASE_BATCH

    cfg = load_config(base["config"], base["overrides"])
    m, t = cfg.model, cfg.train
    out = []
    for key, base_value, vary in (("model.context", m.context, "T"), ("model.neurons", m.neurons, "N"),
                                  ("train.batch", t.batch if isinstance(t.batch, int) else BASE_BATCH, "B")):
        for factor in (0.5, 1, 2):
            value = max(2, int(base_value * factor))
            overrides = list(base["overrides"]) + [f"{key}={value}"]
            if key == "model.context":  # windows must fit the context
                overrides.append(f"model.windows={[min(w, value) for w in m.windows]}")
            out.append(dict(base, overrides=overrides, parts=["train"], vary=f"{vary} x{factor:g}"))
    return out


def main(args: argparse.Namespace) -> int:
    from babyllm.model.runtime import pick_device

    pick_device(args.device or "auto")  # an unavailable device is a clear error before anything runs
    specs = _specs(args)
    machine = machine_info()
    if getattr(args, "scaling", False):
        rows = []
        for spec in scaling_specs(specs[0]):
            row = run_child(spec)
            row["vary"] = spec["vary"]
            rows.append(row)
        if args.json:
            print(json.dumps({"machine": machine, "scaling": rows}, indent=2))
        else:
            render_scaling(rows)
        return 0
    results = [run_child(spec) for spec in specs]
    if args.json:
        print(json.dumps({"machine": machine, "results": results}, indent=2))
    else:
        render(machine, results)
    return 0
