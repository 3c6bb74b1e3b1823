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
from collections.abc import Sequence
from typing import Any

from babyllm.config import ChatConfig, Config, apply_override, full_key, validate
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


def resolve(name: str) -> str:
    """A live setting's key from what someone typed: "train.lr", or a bare "lr" or "top_k" resolved as --set
    resolves it (babyllm.config.full_key; ConfigError for a name no section has). Whether the key may change
    mid-run is check's to say, with why not."""
    return full_key(name, where=f"set {name.strip()}")


def parse_items(words: Sequence[str]) -> list[tuple[str, str]]:
    """(key, text) pairs from KEY=VALUE words, or from one KEY VALUE pair ("lr 5e-4"); ConfigError names a
    word that is neither."""
    if len(words) == 2 and "=" not in words[0] and "=" not in words[1]:
        return [(resolve(words[0]), words[1])]
    pairs = []
    for word in words:
        key, sep, text = word.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"set {word}: expected KEY=VALUE, e.g. train.lr=0.0015")
        pairs.append((resolve(key.strip()), text.strip()))
    return pairs


def value_text(value: Any) -> str:
    """A wire value (a JSON number, bool or string) as the text after `--set KEY=`."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def check(cfg: Config, items: Sequence[tuple[str, str]]) -> tuple[tuple[str, Any], ...]:
    """The checked (key, value) pairs that `key=text` items would give `cfg`, all of them or none: ConfigError
    says why one cannot (cfg is untouched). Checked together, so lowering train.lr and train.min_lr at once
    passes whichever comes first."""
    trial = copy.deepcopy(cfg)
    for key, text in items:
        apply_override(trial, f"{key}={text}")  # an unknown key or a bad value: the same one-line error as --set
        if key not in LIVE_KEYS:
            section = key.partition(".")[0]
            why = _WHY_NOT.get(key) or _WHY_NOT.get(section) or "it is read only when the run starts"
            raise ConfigError(f"{key} cannot change mid-run: {why}; restart with --set {key}=...")
    validate(trial, where="--set " + " ".join(f"{k}={t}" for k, t in items))
    return tuple((key, get(trial, key)) for key in dict(items))  # (a key given twice: its last value, once)


def get(cfg: Config, key: str) -> Any:
    section, _, name = key.partition(".")
    return getattr(getattr(cfg, section), name)


def put(cfg: Config, key: str, value: Any) -> None:
    """Set a checked value (from check, possibly on another rank)."""
    section, _, name = key.partition(".")
    setattr(getattr(cfg, section), name, value)


def shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)
