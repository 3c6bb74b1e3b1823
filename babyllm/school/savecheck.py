"""What a save folder must be to be believed: its meta.json's shape and numbers in range, each file the size and
checksum it records and no larger than its config's model can need, weights that fit its own config. Anything
else is damage (babyllm.school.soul then falls back to an older save, naming this one)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, TypeGuard

from babyllm.config import MAX_SEED, MAX_STEPS, Config, Range
from babyllm.errors import CheckpointError
from babyllm.model import footprint
from babyllm.run.runfiles import META_FILE, MODEL_FILE, READ_LIMITS
from babyllm.safefile import open_checked, read_bounded


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def short(value: Any) -> str:
    text = repr(value) if not isinstance(value, (dict, list)) else type(value).__name__
    return text[:40]


def is_int(v: Any) -> TypeGuard[int]:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> TypeGuard[int | float]:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def not_json(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


# A meta.json's numbers and their ranges (whole numbers or not): beyond them a save is damaged, not believed
# (a best_val_loss of -Infinity would stop best/ from ever being replaced, a step of 10**30 end the run).
META_RANGES: dict[str, tuple[Range, bool]] = {
    "step": (Range(0, MAX_STEPS), True),
    "tokens": (Range(0, MAX_SEED), True),
    "best_val_step": (Range(0, MAX_STEPS), True),
    "world_size": (Range(1, 1 << 20), True),
    "train_seconds": (Range(0, 1e12), False),
    "val_loss": (Range(0, 1e4), False),  # nats per token: ln(65,535) is 11
    "best_val_loss": (Range(0, 1e4), False),
    "val_bpb": (Range(0, 1e4), False),
}


def _number_problem(meta: dict[str, Any]) -> str | None:
    for key, (allowed, whole) in META_RANGES.items():
        value = meta.get(key)
        if value is None and key != "step":
            continue
        if not (is_int(value) and allowed.holds(value) if whole else is_number(value) and allowed.holds(value)):
            return f"{key} is {short(value)}, not {allowed.text(whole)}"
    if (meta.get("best_val_step") or 0) > meta["step"]:
        return f"best_val_step {meta['best_val_step']} is after its step {meta['step']}"
    return None


def meta_problem(meta: dict[str, Any]) -> str | None:
    """What is wrong with a meta.json's shape (every field a reader uses has the type and range it expects), or
    None."""
    for key in ("step", "config", "files"):
        if key not in meta:
            return f"no '{key}'"
    problem = _number_problem(meta)
    if problem:
        return problem
    if not isinstance(meta["config"], dict) or not isinstance(meta["config"].get("model", {}), dict):
        return "config is not a table"
    files = meta["files"]
    if not isinstance(files, dict):
        return "files is not a table"
    for name, info in files.items():
        if not (isinstance(info, dict) and is_int(info.get("bytes")) and info["bytes"] >= 0
                and isinstance(info.get("sha256"), str)):
            return f"files.{str(name)[:40]} is not {{bytes, sha256}}"
    for key in ("config_name", "tokenizer_digest"):
        if meta.get(key) is not None and not isinstance(meta[key], str):
            return f"{key} is {short(meta[key])}, not text"
    rng = meta.get("python_rng")
    if rng is not None and not (isinstance(rng, list) and len(rng) == 3 and isinstance(rng[1], list)
                                and all(is_int(v) for v in rng[1])):
        return "python_rng is not [version, [ints], gauss]"
    return None


def read_checked(folder: Path, meta: dict[str, Any], name: str, limit: int) -> bytes:
    """A save's file, checked against the size and checksum its meta.json records; `limit`: the most a file of
    its kind can hold for the save's config (a record beyond it is damage: nothing that large is read)."""
    f = Path(folder) / name
    want = meta["files"].get(name)
    if want is None:
        raise CheckpointError(f"{folder / META_FILE}: damaged (does not list {name})")
    if want["bytes"] > limit:
        raise CheckpointError(f"{folder / META_FILE}: damaged (records {name} as {want['bytes']:,} bytes; its "
                              f"config's model can need at most {limit:,})")
    try:
        data = read_bounded(f, limit, Path(folder).parent, what=f"a {name} of this model")
    except FileNotFoundError:
        raise CheckpointError(f"{f}: missing") from None
    except OSError as e:
        raise CheckpointError(f"{f}: cannot read ({e.strerror})") from None
    if len(data) != want["bytes"]:
        what = "truncated" if len(data) < want["bytes"] else "wrong size"
        raise CheckpointError(f"{f}: {what} ({len(data):,} bytes, expected {want['bytes']:,})")
    if sha256(data) != want["sha256"]:
        raise CheckpointError(f"{f}: damaged (checksum mismatch)")
    return data


def weights_problem(folder: Path, meta: dict[str, Any], cfg: Config) -> str | None:
    """What keeps a save's weights from fitting its own config (read from the file's header alone), or None:
    a meta.json whose config was edited, or a weights file from another run."""
    want = footprint.shapes(cfg)
    try:
        fd, size = open_checked(Path(folder) / MODEL_FILE, Path(folder).parent)
        try:
            n = int.from_bytes(os.pread(fd, 8, 0), "little")
            header = json.loads(os.pread(fd, n, 8)) if 0 < n <= min(size - 8, READ_LIMITS[META_FILE]) else None
        finally:
            os.close(fd)
        got = {k: tuple(v["shape"]) for k, v in header.items() if k != "__metadata__"} if header else None
    except (OSError, ValueError, TypeError, KeyError, AttributeError, RecursionError, CheckpointError) as e:
        return f"{MODEL_FILE} unreadable ({str(e)[:80]})"
    if got != want:
        odd = sorted(k for k in set(want) | set(got or {}) if (got or {}).get(k) != want.get(k))
        return f"{MODEL_FILE} does not fit the saved config ({', '.join(odd[:3]) or 'no tensors'})"
    return None
