"""Saves: what a save holds (weights, training state, meta), writing one, and putting one back (resume, rollback)."""

from __future__ import annotations

import math
import random
import threading
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from babyllm.config import Config
from babyllm.errors import BabyError, CheckpointError
from babyllm.events import EventKind
from babyllm.run import runfiles
from babyllm.school import distributed, soul
from babyllm.school.engine import Engine
from babyllm.school.librarian import Librarian
from babyllm.school.progress import RECENT_LOSSES, Progress
from babyllm.snapshot import Say


def _number(value: Any, default: float) -> float:
    """A finite number from a save's meta.json, or `default` (absent, null, or not a number)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else default


def _finite_or_none(x: float) -> float | None:
    return x if math.isfinite(x) else None


def restore_device_rng(saved: list[torch.Tensor] | None, device: torch.device, rank: int, seed: int,
                       step: int) -> None:
    """Put a CUDA device's random stream back: rank 0's as saved (the save holds the stream of rank 0's device),
    every other rank's reseeded from (train.seed, rank, step), which only its own process held. A CPU run's
    stream is the torch one (torch_rng); a save from before this (every device's stream, from rank 0) puts
    back the entry of the training device's index."""
    if device.type != "cuda":
        return
    if rank == 0 and saved:
        index = device.index if device.index is not None else torch.cuda.current_device()
        state = saved[0] if len(saved) == 1 else saved[index] if index < len(saved) else None
        if state is not None:
            torch.cuda.set_rng_state(state, device)
            return
    with torch.cuda.device(device):
        torch.cuda.manual_seed((seed * 1_000_003 + rank * 7_919 + step) % 2**63)


class Saves:
    """This run's saves (babyllm.school.soul writes and reads the folders). Only rank 0 writes; every rank
    applies the save rank 0 picked, so the ranks resume alike. `live` gives the live changes for the meta."""

    def __init__(self, run_dir: Path, cfg: Config, engine: Engine, librarian: Librarian, progress: Progress,
                 weights_lock: threading.Lock, *, main: bool, rank: int = 0, world_size: int,
                 live: Callable[[], dict[str, Any]], event: Callable[[EventKind, str], None], log: Say) -> None:
        self.run_dir, self.cfg, self.engine, self.librarian, self.progress = run_dir, cfg, engine, librarian, progress
        self.weights_lock, self.main, self.rank, self.world_size = weights_lock, main, rank, world_size
        self.live, self.event, self.log = live, event, log
        self.tokenizer_digest = soul.tokenizer_digest(librarian.tokenizer)

    # --- writing ----------------------------------------------------------------------------------

    def save(self, kind: str = "save") -> Path | None:
        """Write a save of the model as it is now; None if not written (a failure is an event, and earlier saves
        are intact). kind: "save" (rolling, last train.keep kept), "checkpoint" (kept) or "best" (weights only)."""
        p = self.progress
        if not self.main:
            if kind != runfiles.BEST:  # rank 0 writes it; remembered for the lost-contact message
                p.last_saved_step = p.step_count
            return None
        step = p.step_count
        if not self._weights_finite():
            msg = f"step {step}: weights contain nan/inf; {kind} not written (the last good save is kept)"
            p.last_save_error = msg
            self.event("save_error", msg)
            return None
        try:
            path = soul.save(self.run_dir, kind, step, self.engine.model.state_dict(),
                             None if kind == runfiles.BEST else self._train_state(), self._meta())
            if kind == "save":
                soul.prune(self.run_dir, self.cfg.train.keep)
        except (OSError, BabyError) as e:
            msg = f"step {step}: {kind} failed: {e}; earlier saves are intact"
            p.last_save_error = msg
            self.log(msg)
            self.event("save_error", msg)
            return None
        if kind != runfiles.BEST:
            p.last_saved_step = step
            p.last_save_path = path
            p.last_save_error = None
            self.event("checkpoint" if kind == "checkpoint" else "save", f"saved step {step} to {path}")
        else:
            self.log(f"best weights (val {p.best_val:.4f}) saved to {path}")
        return path

    def keep_best(self, val: float) -> None:
        """A new best validation loss: into best/, unless best/ holds a better model (from another branch)."""
        on_disk = soul.saved_best_val(self.run_dir)
        if on_disk is None or val < on_disk:
            self.save(runfiles.BEST)
        else:
            self.log(f"best/ kept: its val {on_disk:.4f} beats this branch's {val:.4f}")

    def _weights_finite(self) -> bool:
        with torch.no_grad():
            return bool(torch.stack([p.isfinite().all() for p in self.engine.params]).all().item())

    def _meta(self) -> dict[str, Any]:
        p = self.progress
        py_state = random.getstate()
        return {
            "tokens": p.tokens,
            "train_seconds": p.train_seconds,
            "config": self.cfg.to_dict(),
            "config_name": self.cfg.name,
            "tokenizer_digest": self.tokenizer_digest,
            "val_loss": _finite_or_none(p.val_loss),
            "val_bpb": _finite_or_none(p.val_bpb),
            "best_val_loss": _finite_or_none(p.best_val),
            "best_val_step": p.best_val_step,
            "python_rng": [py_state[0], list(py_state[1]), py_state[2]],
            "world_size": self.world_size,
            "live": self.live(),
        }

    def _train_state(self) -> dict[str, Any]:
        e = self.engine
        state: dict[str, Any] = {
            "optimizer": e.optimizer.state_dict(),
            "scheduler": e.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "sampler": self.librarian.sampler_state(),
            "losses": torch.tensor(list(self.progress.losses), dtype=torch.float64),
        }
        if e.device.type == "cuda":  # rank 0's training device: its dropout stream
            state["cuda_rng"] = [torch.cuda.get_rng_state(e.device)]
        return state

    # --- putting one back -------------------------------------------------------------------------

    def resume_newest(self, say: Say) -> soul.LoadedSave:
        """Apply the newest usable save on every rank (rank 0 picks it, past damaged ones, and sends it on)."""
        loaded = distributed.share(lambda: soul.load_newest(
            self.run_dir, self.cfg, self.librarian.tokenizer, say=say, apply=self.apply))
        if not self.main:  # rank 0 applied it while loading; the others apply the copy it sent
            distributed.agree_setup(lambda: self.apply(loaded))
        else:
            distributed.agree_setup(lambda: None)
        self.progress.last_saved_step = loaded.step
        self.progress.last_save_path = loaded.path
        return loaded

    def load_newest(self, say: Say) -> soul.LoadedSave:
        """Apply the newest usable save on this rank (a rollback); raises BabyError when none applies."""
        return soul.load_newest(self.run_dir, self.cfg, self.librarian.tokenizer, say=say, apply=self.apply)

    def apply(self, loaded: soul.LoadedSave) -> None:
        """Put a save's weights and training state into this run (raises CheckpointError if they don't fit)."""
        st = loaded.state
        assert st is not None
        meta = loaded.meta
        e, p = self.engine, self.progress
        try:
            with self.weights_lock:
                e.model.load_state_dict(loaded.model_state)
            e.optimizer.load_state_dict(st["optimizer"])
            e.scheduler.load_state_dict(st["scheduler"])
            self.librarian.load_sampler_state(st["sampler"])
            torch.set_rng_state(st["torch_rng"])
            restore_device_rng(st.get("cuda_rng"), e.device, self.rank, self.cfg.train.seed, int(meta["step"]))
            py = meta["python_rng"]
            random.setstate((py[0], tuple(py[1]), py[2]))
        except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as err:
            raise CheckpointError(f"{loaded.path}: does not fit this run ({str(err).splitlines()[0][:160]})") from None
        p.step_count = int(meta["step"])
        p.tokens = int(meta.get("tokens", 0))
        p.train_seconds = _number(meta.get("train_seconds"), 0.0)
        p.val_loss = meta["val_loss"] if meta.get("val_loss") is not None else math.nan
        p.val_bpb = _number(meta.get("val_bpb"), math.nan)
        p.best_val = meta["best_val_loss"] if meta.get("best_val_loss") is not None else math.inf
        p.best_val_step = int(meta.get("best_val_step") or 0)
        p.losses = deque(st["losses"].tolist(), maxlen=RECENT_LOSSES)
        e.sync_optimizer(reschedule=False)  # the saved groups carry the save's settings; the config wins
