"""FOOTPRINT: the memory a config needs (weights, gradients, optimizer state, activations, validation batches),
estimated before anything is allocated and checked against what the machine has. A config too large for it is
one line naming the key that makes it so, never an allocator traceback or an out-of-memory kill.

The parameters are counted on torch's meta device (shapes only, no memory), so the count is the network's own.
The per-element costs of the activations were measured on CPU in fp32 (the worst case: bf16 keeps less) and
rounded up; the test suite checks the estimate stays above a real step's peak.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import os
from collections.abc import Callable
from pathlib import Path

import torch

from babyllm.config import Config
from babyllm.errors import ConfigError
from babyllm.model.network import BabyLLM

PARAM_BYTES = 4  # fp32 weights (bf16 is autocast only: the weights and optimizer stay fp32)
TRAIN_PARAM_BYTES = 16  # per parameter while training: weights, gradients, AdamW's two moments
SAVE_PARAM_BYTES = 12  # per parameter while a save is written: the weights' and optimizer's serialised copies
LOAD_PARAM_BYTES = 12  # per parameter while a save is loaded: the file's bytes, the tensors read, the model
# Activations a training step keeps for its backward pass, in bytes per element (measured, rounded up):
NEURON_BYTES = 64  # per batch x context x neurons (the neurons, windows, memories, dropout masks)
VOCAB_BYTES = 32  # per batch x context x vocab (the logits, their fp32 copy for the loss, its gradient)
EMBED_BYTES = 16  # per batch x context x embed (the embedding and its LayerNorm)
TIME_BYTES = 32  # per context x context matrix (each window's, each group's mix, the memories' decays)
INFERENCE_SHARE = 0.5  # a forward without gradients keeps about half of what a training step does
TOKEN_BYTES = 16  # per validation token: the batches on the device and their targets on the host
RUNTIME_BYTES = 256 << 20  # the runtime's own scratch (allocator arenas, oneDNN, a save's temporaries)
FILE_SLACK = 16 << 20  # a save file's headers and names, the sampler's and random generators' states
INFERENCE_BATCH = 16  # windows scored at once (babyllm.model.bpb's batch; chat generates one)
# The sizes a config sets, in the order a tie is blamed on; each reset to its shipped default to see which one
# makes a run too big.
SIZE_KEYS = ("train.batch", "train.eval_batches", "model.context", "model.neurons", "model.embed", "model.vocab",
             "model.memory_rank", "model.window_groups")


def shapes(cfg: Config) -> dict[str, tuple[int, ...]]:
    """The model's weights' shapes by name, as a save holds them (built on the meta device: nothing allocated)."""
    with torch.device("meta"):
        model = BabyLLM(cfg.model)
    return {name: tuple(t.shape) for name, t in model.state_dict().items()}


def param_count(cfg: Config) -> int:
    return sum(math.prod(shape) for shape in shapes(cfg).values())


def save_file_limits(cfg: Config) -> tuple[int, int]:
    """The most a save of `cfg` can hold: (its weights file, its training state file) in bytes."""
    params = param_count(cfg)
    return PARAM_BYTES * params + FILE_SLACK, 2 * PARAM_BYTES * params + FILE_SLACK


def _batch(cfg: Config) -> int:
    b = cfg.train.batch
    return b if isinstance(b, int) and not isinstance(b, bool) else 1  # ("auto": sized later, to what fits)


def activation_bytes(cfg: Config, batch: int, training: bool = True) -> int:
    """What one forward (and, training, backward) over `batch` windows keeps at its peak."""
    m = cfg.model
    tokens = batch * m.context
    per_token = NEURON_BYTES * m.neurons + VOCAB_BYTES * m.vocab + EMBED_BYTES * m.embed
    groups = m.window_groups if m.window_groups > 1 else 0
    mixes = TIME_BYTES * (len(m.windows) + groups + 4) * m.context * m.context
    full = tokens * per_token + mixes
    return full if training else int(full * INFERENCE_SHARE)


def estimate(cfg: Config, world_size: int = 1, training: bool = True) -> dict[str, int]:
    """Bytes per part a run of `cfg` needs on its device (training: one rank of `world_size`; else chat/eval)."""
    params = param_count(cfg)
    if not training:
        return {"weights as loaded": LOAD_PARAM_BYTES * params,
                "activations": activation_bytes(cfg, INFERENCE_BATCH, training=False),
                "runtime": RUNTIME_BYTES}
    t = cfg.train
    val_batch = _batch(cfg) * world_size  # validation runs the global batch (babyllm.school.examiner)
    steps = max(activation_bytes(cfg, _batch(cfg)), activation_bytes(cfg, val_batch, training=False))
    return {
        "weights, gradients and optimizer": TRAIN_PARAM_BYTES * params,
        "activations": max(steps, SAVE_PARAM_BYTES * params),  # (a save's copies come after a step's are freed)
        "validation batches": TOKEN_BYTES * t.eval_batches * val_batch * (cfg.model.context + 1),
        "runtime": RUNTIME_BYTES,
    }


def needed(cfg: Config, world_size: int = 1, training: bool = True) -> int:
    """The bytes a run of `cfg` needs on its device, in all."""
    return sum(estimate(cfg, world_size, training).values())


def host_estimate(cfg: Config, world_size: int = 1, training: bool = True) -> dict[str, int]:
    """Bytes the host needs besides a GPU's: the model is built there, and a save's copies are made there."""
    params = param_count(cfg)
    parts = {"weights as built": PARAM_BYTES * params, "runtime": RUNTIME_BYTES}
    if training:
        parts["a save's copies"] = SAVE_PARAM_BYTES * params
    else:
        parts["weights as loaded"] = LOAD_PARAM_BYTES * params
    return parts


Estimate = Callable[[Config, int, bool], dict[str, int]]


def available(device: torch.device) -> tuple[int, str] | None:
    """(bytes free for a run on `device`, where that figure comes from); None where nothing says."""
    if device.type == "cuda":
        try:
            free, _total = torch.cuda.mem_get_info(device)
        except (RuntimeError, AssertionError):  # no driver, a busy or lost device: the allocator will say
            return None
        return int(free), f"free on {device}"
    return host_available()


def host_available(meminfo: Path = Path("/proc/meminfo"),
                   cgroup: Path = Path("/sys/fs/cgroup")) -> tuple[int, str] | None:
    """The host's available memory: MemAvailable, or less where this process's cgroup (a container) allows less."""
    found: list[tuple[int, str]] = []
    try:
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemAvailable:"):
                found.append((int(line.split()[1]) * 1024, "MemAvailable"))
    except (OSError, ValueError, IndexError):
        pass
    for limit_file, usage_file in (("memory.max", "memory.current"),  # cgroup v2, then v1
                                   ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        try:
            limit = (cgroup / limit_file).read_text().strip()
            usage = int((cgroup / usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 1 << 60:  # ("max", or v1's huge number: no limit)
            found.append((max(0, int(limit) - usage), "the container's memory limit"))
        break
    return min(found) if found else None


def ranks_on_host(world_size: int) -> int:
    """How many ranks share this host's memory (torchrun's LOCAL_WORLD_SIZE; one process otherwise)."""
    try:
        return max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        return max(1, world_size)


def check(cfg: Config, device: torch.device, world_size: int = 1, training: bool = True) -> None:
    """Raise ConfigError (one line: the key to lower, what the run needs, what there is) if `cfg` cannot fit.

    On a GPU the device must hold the training (or inference) parts and the host what is built and saved
    there; on a CPU (or MPS, which shares it) the host holds it all, each rank on this host its own share."""
    if device.type == "cuda":
        fit(cfg, estimate, available(device), world_size, training)
        fit(cfg, host_estimate, host_available(), world_size, training, ranks=ranks_on_host(world_size))
    else:
        fit(cfg, estimate, host_available(), world_size, training, ranks=ranks_on_host(world_size))


def fit(cfg: Config, parts_of: Estimate, free: tuple[int, str] | None, world_size: int = 1,
        training: bool = True, ranks: int = 1) -> None:
    """ConfigError unless `ranks` runs' `parts_of(cfg)` fit in `free` (bytes, where the figure comes from)."""
    if free is None:
        return  # nothing to compare with (no /proc, no driver): the allocator's own error is the backstop
    parts = {name: size * ranks for name, size in parts_of(cfg, world_size, training).items()}
    need = sum(parts.values())
    if need <= free[0]:
        return
    key, value = blame(cfg, parts_of, world_size, training)
    shown = ", ".join(f"{name} {size_text(size)}" for name, size in parts.items() if size >= need // 100)
    who = f"{key} = {value} makes this run need" if key else "this config needs"
    ranks_note = f" for {ranks} ranks on this host" if ranks > 1 else ""
    fix = f"lower {key}" if key else "choose a smaller config (e.g. --config cpu or tiny)"
    raise ConfigError(f"{who} about {size_text(need)} of memory{ranks_note} ({shown}), but {size_text(free[0])} "
                      f"is available ({free[1]}); {fix}")


def blame(cfg: Config, parts_of: Estimate = estimate, world_size: int = 1,
          training: bool = True) -> tuple[str, object]:
    """The size key that makes `cfg` big: the one whose reset to its shipped default saves the most ("" if none
    is above its default); with its value."""
    def need(c: Config) -> int:
        return sum(parts_of(c, world_size, training).values())

    base, defaults = need(cfg), Config()
    best: tuple[int, str, object] = (0, "", None)
    for key in SIZE_KEYS:
        section, name = key.split(".")
        value, default = getattr(getattr(cfg, section), name), getattr(getattr(defaults, section), name)
        if not isinstance(value, int) or isinstance(value, bool) or value <= default:
            continue
        trial = copy.copy(cfg)
        setattr(trial, section, dataclasses.replace(getattr(cfg, section), **{name: default}))
        saved = base - need(trial)
        if saved > best[0]:
            best = (saved, key, value)
    return best[1], best[2]


def size_text(n: float) -> str:
    """Bytes as people read them: 512 MiB, 3.2 GiB, 1.5 TiB."""
    for unit, scale in (("EiB", 1 << 60), ("PiB", 1 << 50), ("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n / 1024:.0f} KiB"
