"""SOUL: checkpoints: everything needed to resume a run exactly.

The run directory's layout and file names are babyllm.run.runfiles's.

Each save folder holds ``model.safetensors`` (the weights), ``state.pt`` (optimizer, scheduler, RNG and
sampler states and the recent losses; tensors and plain containers only, read with
``torch.load(weights_only=True)``) and ``meta.json`` (step, tokens, config, tokenizer digest, Python RNG
state, validation losses, and the size and SHA-256 of every other file). Loading never executes code
from the files, so a save someone else shared is safe to open.

Writes are atomic: a save is written into a hidden temp folder beside its final place, every file and
the folder are fsynced, the folder is renamed into place and the run directory is fsynced. A crash or
a full disk part-way leaves every earlier save untouched.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save
from tokenizers import Tokenizer

from babyllm.config import Config, _apply_table, validate
from babyllm.errors import CheckpointError, ConfigError
from babyllm.model import footprint, pretrained
from babyllm.model.network import BabyLLM
from babyllm.run.runfiles import (
    BEST,
    META_FILE,
    MODEL_FILE,
    READ_LIMITS,
    STATE_FILE,
    TOKENIZER_FILE,
    is_save_folder,
    list_saves,
    save_name,
)
from babyllm.safefile import read_bounded
from babyllm.school.librarian import atomic_write_bytes, tokenizer_digest
from babyllm.school.savecheck import (
    is_int,
    is_number,
    meta_problem,
    not_json,
    read_checked,
    sha256,
    short,
    weights_problem,
)
from babyllm.snapshot import Say

FORMAT = 1
T = TypeVar("T")


class CheckpointMismatch(CheckpointError):
    """A readable save that does not fit the config or tokenizer in use (falling back would not help)."""


@dataclass
class LoadedSave:
    """A save read back and checked: its metadata, weights and (for resumable saves) training state."""

    path: Path
    meta: dict[str, Any]
    model_state: dict[str, torch.Tensor]
    state: dict[str, Any] | None
    config: Config  # the one it was saved with (its model is the weights')

    @property
    def step(self) -> int:
        return int(self.meta["step"])


# --- run directories ------------------------------------------------------------------------------


_ASIDE = re.compile(r"^\.(.+)\.(tmp|old)-\d+$")


def clean_temp(run_dir: Path) -> None:
    """Tidy up after a crash mid-save: half-written temp folders go; a finished save that was moved aside
    to be replaced (``.best.old-PID``) is put back when its replacement never arrived (never the only copy)."""
    if not Path(run_dir).is_dir():
        return
    for p in sorted(Path(run_dir).iterdir()):
        m = _ASIDE.match(p.name)
        if not m:
            continue
        dest = p.parent / m.group(1)
        if m.group(2) == "old" and not dest.exists():
            # The crash came between moving the old one aside and renaming the new one in; if this fails
            # too, it is left as it is (never deleted) and the next start tries again.
            with contextlib.suppress(OSError):
                os.replace(p, dest)
            continue
        shutil.rmtree(p, ignore_errors=True) if p.is_dir() else p.unlink(missing_ok=True)


def saved_best_val(run_dir: Path) -> float | None:
    """The validation loss best/ was saved with (None when there is no readable best/)."""
    try:
        val = read_meta(Path(run_dir) / BEST).get("val_loss")
    except CheckpointError:
        return None
    return float(val) if is_number(val) else None


# --- atomic writing -------------------------------------------------------------------------------


def _write_bytes(path: Path, data: bytes) -> None:
    """Write a whole file and fsync it (tests replace this to simulate a full disk)."""
    with open(path, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some filesystems cannot fsync a directory; the rename is still atomic
        pass
    finally:
        os.close(fd)


def write_folder(dest: Path, files: dict[str, bytes], meta: dict[str, Any]) -> None:
    """Atomically create or replace folder `dest` holding `files` plus meta.json (with sizes and checksums)."""
    meta = dict(meta, files={name: {"bytes": len(data), "sha256": sha256(data)} for name, data in files.items()})
    parent = dest.parent
    parent.mkdir(parents=True, exist_ok=True)
    tmp = parent / f".{dest.name}.tmp-{os.getpid()}"
    old = parent / f".{dest.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    moved_old = False
    try:
        tmp.mkdir()
        for name, data in files.items():
            _write_bytes(tmp / name, data)
        _write_bytes(tmp / META_FILE, json.dumps(meta, indent=1).encode("utf-8"))
        fsync_dir(tmp)
        if dest.exists():  # only when re-saving the same name (best, or the same step twice)
            shutil.rmtree(old, ignore_errors=True)
            os.replace(dest, old)
            moved_old = True
        os.replace(tmp, dest)
        fsync_dir(parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if moved_old and not dest.exists():
            os.replace(old, dest)
        raise
    if moved_old:
        shutil.rmtree(old, ignore_errors=True)


def write_tokenizer(run_dir: Path, tokenizer: Tokenizer) -> None:
    path = Path(run_dir) / TOKENIZER_FILE
    atomic_write_bytes(path, lambda tmp: _write_bytes(tmp, tokenizer.to_str().encode("utf-8")))
    fsync_dir(path.parent)


def load_tokenizer(run_dir: Path) -> Tokenizer:
    path = Path(run_dir) / TOKENIZER_FILE
    try:
        return Tokenizer.from_str(read_bounded(path, READ_LIMITS[TOKENIZER_FILE], Path(run_dir)).decode("utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing (the run's tokenizer is needed to read its saves)") from None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot read ({e.strerror or e})") from None
    except CheckpointError:
        raise
    except Exception as e:  # tokenizers raises a plain Exception for bad JSON (and bad UTF-8 a ValueError)
        raise CheckpointError(f"{path}: damaged tokenizer ({str(e).splitlines()[0][:120]})") from None


def save(run_dir: Path, kind: str, step: int, model_state: dict[str, torch.Tensor],
         state: dict[str, Any] | None, meta: dict[str, Any]) -> Path:
    """Write one save folder atomically; returns its path. `state` is None for `best` (weights only)."""
    dest = Path(run_dir) / save_name(kind, step)
    files = {MODEL_FILE: st_save({k: v.detach().to("cpu").contiguous() for k, v in model_state.items()})}
    if state is not None:
        buf = io.BytesIO()
        torch.save(state, buf)
        files[STATE_FILE] = buf.getvalue()
    write_folder(dest, files, dict(meta, format=FORMAT, kind=kind, step=step, resumable=state is not None,
                                   saved_at=time.time()))
    return dest


def prune(run_dir: Path, keep: int) -> None:
    """Keep only the newest `keep` rolling saves (checkpoints and best are never pruned)."""
    rolling = [s for s in list_saves(run_dir) if s.kind == "save"]
    for s in rolling[keep:]:
        shutil.rmtree(s.path, ignore_errors=True)


# --- reading and checking -------------------------------------------------------------------------


def read_meta(folder: Path) -> dict[str, Any]:
    """A save folder's meta.json, checked (bounded, inside its run directory, every number in its range)."""
    f = Path(folder) / META_FILE
    try:
        meta = json.loads(read_bounded(f, READ_LIMITS[META_FILE], f.parent.parent), parse_constant=not_json)
    except FileNotFoundError:
        raise CheckpointError(f"{f}: missing (the save is incomplete)") from None
    except (OSError, ValueError, RecursionError) as e:
        raise CheckpointError(f"{f}: damaged ({str(e)[:120]})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        got = meta.get("format") if isinstance(meta, dict) else None
        raise CheckpointError(f"{f}: not a babyllm save of format {FORMAT} (format {short(got)})")
    problem = meta_problem(meta)
    if problem:
        raise CheckpointError(f"{f}: damaged ({problem})")
    return meta


def _fmt(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return repr(value)


def config_mismatch(saved: dict[str, Any], cfg: Config) -> str | None:
    """What differs between a save's model config and `cfg` (the part that must match), or None."""
    now = cfg.to_dict()["model"]
    then = saved.get("model", {})
    diffs = [f"model.{k} is {_fmt(then.get(k))} in the checkpoint but {_fmt(v)} now"
             for k, v in now.items() if then.get(k) != v]
    return "; ".join(diffs) if diffs else None


def read_save(folder: Path, cfg: Config | None = None, tokenizer: Tokenizer | None = None,
              with_state: bool = True, fits: Callable[[Config], None] | None = None) -> LoadedSave:
    """Read and check one save folder (sizes, checksums, config and tokenizer fit); `fits` hears the save's own
    config before its weights are read (and may raise: e.g. a model too large for this machine)."""
    folder = Path(folder)
    meta = read_meta(folder)
    if cfg is not None:
        diff = config_mismatch(meta["config"], cfg)
        if diff:
            raise CheckpointMismatch(
                f"{folder / META_FILE}: the config does not match the checkpoint: {diff} "
                "(resume with the run's own model settings, or start a new --run)")
    if tokenizer is not None and meta.get("tokenizer_digest") not in (None, tokenizer_digest(tokenizer)):
        raise CheckpointMismatch(
            f"{folder.parent / TOKENIZER_FILE}: does not match the checkpoint {folder.name} "
            f"(tokenizer digest {tokenizer_digest(tokenizer)}, checkpoint expects {meta.get('tokenizer_digest')})")
    own = config_from_dict(meta["config"], meta.get("config_name", "saved"), str(folder / META_FILE))
    problem = weights_problem(folder, meta, own)
    if problem:
        raise CheckpointError(f"{folder}: damaged ({problem})")
    if fits is not None:
        fits(own)
    weights_limit, state_limit = footprint.save_file_limits(own)
    try:
        model_state = st_load(read_checked(folder, meta, MODEL_FILE, weights_limit))
    except SafetensorError as e:
        raise CheckpointError(f"{folder / MODEL_FILE}: damaged ({e})") from None
    state = None
    if with_state:
        if not meta.get("resumable", False):
            raise CheckpointError(f"{folder}: holds weights only and cannot be resumed from")
        data = read_checked(folder, meta, STATE_FILE, state_limit)
        try:
            state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
        except Exception as e:  # unpickling errors of every kind: damaged, or not plain data
            first = str(e).splitlines()[0][:120]
            raise CheckpointError(f"{folder / STATE_FILE}: damaged or unsafe ({first})") from None
    return LoadedSave(folder, meta, model_state, state, own)


def load_newest(run_dir: Path, cfg: Config | None, tokenizer: Tokenizer | None,
                say: Say | None = None, with_state: bool = True,
                apply: Callable[[LoadedSave], None] | None = None) -> LoadedSave:
    """The newest save that reads, checks, fits the config and tokenizer and (if given) applies cleanly,
    falling back to older ones (see first_usable)."""
    def load(folder: Path) -> LoadedSave:
        loaded = read_save(folder, cfg, tokenizer, with_state=with_state)
        if apply is not None:
            apply(loaded)
        return loaded

    return first_usable([info.path for info in list_saves(run_dir)], load, run_dir, say)


def first_usable(folders: list[Path], load: Callable[[Path], T], where: Path,
                 say: Say | None = None) -> T:
    """What `load` makes of the first folder (newest first) that loads. A damaged one falls back to the next,
    saying so; so does one that does not fit the config or tokenizer in use (its config edited, or the folder
    another run's), named once an older one is found to fit. When none loads: the first mismatch (the config
    or tokenizer in use is then what to change), else the newest one's damage."""
    damage: CheckpointError | None = None
    mismatches: list[CheckpointMismatch] = []
    for folder in folders:
        try:
            result = load(folder)
        except CheckpointMismatch as e:
            mismatches.append(e)
            continue
        except CheckpointError as e:
            damage = damage or e
            if say:
                say(f"{e}; trying an older save")
            continue
        if say is not None:
            for skipped in mismatches:
                say(f"{skipped}; skipped")
            if damage or mismatches:
                say(f"using the older save {folder}")
        return result
    if mismatches:
        raise mismatches[0]
    if damage is None:
        raise CheckpointError(f"{where}: no save found")
    raise CheckpointError(f"{damage} (and no older save of {where} is usable)")


def config_from_dict(data: dict[str, Any], name: str = "saved", where: str = "checkpoint") -> Config:
    """A Config from a save's plain-data config."""
    cfg = Config(name=name)
    try:
        if not isinstance(data, dict):
            raise ConfigError("config is not a table")
        _apply_table(cfg, data, where=where, base=Path("."))
        validate(cfg, where=where)
    except ConfigError as e:
        raise CheckpointError(f"{where}: unusable config ({e})") from None
    except (TypeError, ValueError, AttributeError, KeyError, RecursionError) as e:  # odd types in a damaged save
        raise CheckpointError(f"{where}: damaged config ({type(e).__name__}: {str(e)[:120]})") from None
    return cfg


def saved_config(run_dir: Path) -> Config:
    """The config the run was saved with (from its newest readable meta.json: what a viewer shows)."""
    first_error: CheckpointError | None = None
    for info in list_saves(run_dir):
        try:
            meta = read_meta(info.path)
            return config_from_dict(meta["config"], meta.get("config_name", "saved"), str(info.path / META_FILE))
        except CheckpointError as e:
            first_error = first_error or e
    raise first_error or CheckpointError(f"{run_dir}: no save found")


def resume_config(run_dir: Path, say: Say | None = None) -> Config:
    """The config to resume the run with: that of its newest save whose meta.json reads and whose weights fit it
    (a damaged newest save, or one whose config was edited, is skipped, saying so, as resuming skips it)."""
    def config_of(folder: Path) -> Config:
        meta = read_meta(folder)
        cfg = config_from_dict(meta["config"], meta.get("config_name", "saved"), str(folder / META_FILE))
        problem = weights_problem(folder, meta, cfg)
        if problem:
            raise CheckpointError(f"{folder}: damaged ({problem})")
        return cfg

    return first_usable([info.path for info in list_saves(run_dir)], config_of, run_dir, say)


def load_for_inference(run_dir: Path, device: str | torch.device = "cpu",
                       say: Say | None = None) -> tuple[Config, BabyLLM, Tokenizer, int]:
    """The newest good save's config, model (eval mode, on `device`), tokenizer and step.

    `run_dir` is a run directory (its newest usable save is taken, older ones on damage), one save
    folder such as runs/x/best (the tokenizer is then read from its parent), or a `babyllm export` folder.
    """
    run_dir = Path(run_dir)
    if pretrained.is_export(run_dir):
        return load_export(run_dir, device)
    if is_save_folder(run_dir):
        folders, tok_dir = [run_dir], run_dir.parent
    else:
        folders, tok_dir = [s.path for s in list_saves(run_dir)], run_dir
        if is_save_folder(run_dir / BEST):  # the last resort when every rolling save is damaged
            folders.append(run_dir / BEST)
    if not folders:
        raise CheckpointError(f"{run_dir}: no save found (train one first: babyllm train --run-dir {run_dir})")
    tokenizer = load_tokenizer(tok_dir)

    def fits(cfg: Config) -> None:  # a model too big for this machine: one line (not damage: no fallback)
        footprint.check(cfg, torch.device(device), training=False)

    def load(folder: Path) -> tuple[Config, BabyLLM, Tokenizer, int]:
        loaded = read_save(folder, tokenizer=tokenizer, with_state=False, fits=fits)
        cfg = loaded.config
        model = model_from(cfg, loaded.model_state, folder / MODEL_FILE)
        return cfg, model.to(device).eval(), tokenizer, loaded.step

    return first_usable(folders, load, run_dir, say)


def load_export(folder: Path, device: str | torch.device = "cpu") -> tuple[Config, BabyLLM, Tokenizer, int]:
    """An export folder's config (the run's, with the model's sizes), model, tokenizer and step."""
    sizes, info = pretrained.read_config(folder)
    where = str(Path(folder) / pretrained.CONFIG_FILE)
    saved = info.get("config")
    saved = saved if isinstance(saved, dict) else {}
    cfg = config_from_dict({**saved, "model": dataclasses.asdict(sizes)}, str(info.get("config_name", "exported")),
                           where)
    step = info.get("step", 0)
    return cfg, BabyLLM.from_pretrained(folder, device), pretrained.load_tokenizer(folder), step if is_int(step) else 0


def model_from(cfg: Config, weights: dict[str, Any], where: Path) -> BabyLLM:
    """The network of a save's config with its weights; a one-line error naming `where` when they do not fit."""
    model = BabyLLM(cfg.model)
    try:
        model.load_state_dict(weights)
    except RuntimeError as e:
        raise CheckpointError(f"{where}: the weights do not fit the saved config "
                              f"({str(e).splitlines()[0][:160]})") from None
    return model
