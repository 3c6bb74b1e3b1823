"""Live settings: the config keys a run may change mid-run (`babyllm ctl RUN set KEY=VALUE`), and why not the rest.

A change is parsed and checked exactly as a config file or `--set` is (babyllm.config), queued like the
other control requests and applied by the Tutor at the next step boundary (on every rank at the same step).
The save's meta holds the effective config (so `--resume` goes on with the changes) and the changes
themselves ("live": key -> {was, now}); a rollback keeps the settings in force, rewinding only the training.
"""

from __future__ import annotations

import copy
import dataclasses
import json
from typing import Any

from babyllm.config import ChatConfig, Config, apply_override, validate
from babyllm.errors import ConfigError

LR = "train.lr"  # (the cockpit's halve / double keys change it)

# The ONE table of settings that are safe to change while a run trains.
LIVE_KEYS: tuple[str, ...] = (
    LR, "train.min_lr", "train.warmup", "train.decay_steps", "train.minutes", "train.steps",
    "train.grad_clip", "train.weight_decay", "train.eval_every", "train.sample_every", "train.save_every",
    *(f"chat.{f.name}" for f in dataclasses.fields(ChatConfig)),
)

# The ones the learning-rate schedule reads: changing one recomputes the next step's rate.
SCHEDULE = (LR, "train.min_lr", "train.warmup", "train.decay_steps", "train.steps", "train.minutes")

# Why the others cannot change (by key, else by section); the fallback covers the rest.
_WHY_NOT = {
    "model": "it shapes the model",
    "data": "it chose the corpus and its split",
    "train.batch": "it shapes the batches",
    "train.device": "the model and optimizer live on it",
    "train.dtype": "the model and optimizer were set up for it",
    "train.compile": "the model was compiled (or not) at the start",
    "train.seed": "it seeded the run's random streams",
    "train.beta1": "the optimizer's moments were built with it",
    "train.beta2": "the optimizer's moments were built with it",
    "train.eval_batches": "it sized the fixed validation batches",
    "train.keep": "the saves are pruned with it at the start",
    "stats": "the viewers and printer read it when they start",
    "tui": "the cockpit reads it when it starts",
}


def value_text(value: Any) -> str:
    """A wire value (a JSON number, bool or string) as the text after `--set KEY=`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def check(cfg: Config, key: str, text: str) -> Any:
    """The checked value `key=text` would give `cfg` (cfg is untouched); ConfigError says why it cannot."""
    item = f"{key}={text}"
    trial = copy.deepcopy(cfg)
    apply_override(trial, item)  # an unknown key or a bad value: the same one-line error as --set
    if key not in LIVE_KEYS:
        section = key.partition(".")[0]
        why = _WHY_NOT.get(key) or _WHY_NOT.get(section) or "it is read only when the run starts"
        raise ConfigError(f"{key} cannot change mid-run: {why}; restart with --set {key}=...")
    validate(trial, where=f"--set {item}")
    return get(trial, key)


def get(cfg: Config, key: str) -> Any:
    section, _, name = key.partition(".")
    return getattr(getattr(cfg, section), name)


def put(cfg: Config, key: str, value: Any) -> None:
    """Set a checked value (from check, possibly on another rank)."""
    section, _, name = key.partition(".")
    setattr(getattr(cfg, section), name, value)


def shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
