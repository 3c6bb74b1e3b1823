"""Data-parallel training under torchrun: process-group set-up and the few collectives the Tutor needs.

`babyllm train` runs unchanged under ``torchrun --nproc_per_node=N -m babyllm train ...`: torchrun sets
RANK, WORLD_SIZE and LOCAL_RANK (and MASTER_ADDR/MASTER_PORT), `init_from_env()` joins the group
(backend ``nccl`` on CUDA with device cuda:LOCAL_RANK, ``gloo`` on CPU) and the Tutor wraps the model in
DistributedDataParallel, so gradients are averaged over the ranks every step. Only rank 0 writes files
and prints stats; every rank resumes from the save rank 0 picked (sent to the others, so the ranks
need no shared filesystem).

Data: every rank draws the same *global* batch of window starts from one shared seeded generator
(train.batch x world size starts) and trains on its own slice ``[rank*B:(rank+1)*B]``. So the ranks
see different windows (as "each rank samples different batches" asks), the sampler state is the same
on every rank (one saved state resumes all of them exactly), and N ranks train on exactly the data
one process with ``--set train.batch=B*N`` sees. train.batch is per rank; the global batch is
train.batch x world size; the learning rate applies to the global batch (no automatic scaling).

Collectives time out after BABYLLM_DIST_TIMEOUT seconds (default 300); set-up (tokenizer, resume)
uses a separate gloo group that waits at least SETUP_TIMEOUT_S, since rank 0 may be tokenizing a large
corpus while the others wait. A rank that dies makes the collectives of the others fail, which
`is_comm_failure` recognises and `lost_contact` reports in one line.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
from collections.abc import Callable
from typing import Any, TypeVar

import torch
import torch.distributed as dist

from babyllm.errors import BabyError

TIMEOUT_ENV = "BABYLLM_DIST_TIMEOUT"
DEFAULT_TIMEOUT_S = 300.0
SETUP_TIMEOUT_S = 3600.0

T = TypeVar("T")

_control: Any = None  # the gloo group for set-up messages (Python objects), with the long timeout


def env_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) outside torchrun."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
    except ValueError as e:
        raise BabyError(f"torchrun environment: {e}") from None
    if world < 1 or not 0 <= rank < world:
        raise BabyError(f"torchrun environment: RANK={rank} and WORLD_SIZE={world} do not fit")
    return rank, world, local


def timeout_s() -> float:
    raw = os.environ.get(TIMEOUT_ENV, "")
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise BabyError(f"{TIMEOUT_ENV}={raw!r}: must be a number of seconds > 0")
    return value


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    return dist.get_rank() if active() else 0


def world_size() -> int:
    return dist.get_world_size() if active() else 1


def local_rank() -> int:
    return env_world()[2] if active() else 0


def is_main() -> bool:
    return rank() == 0


def init_from_env() -> tuple[int, int, int]:
    """Join torchrun's process group if there is one; returns (rank, world size, local rank).

    With CUDA the group is nccl for CUDA tensors (on device cuda:LOCAL_RANK) and gloo for CPU ones (so
    `--set train.device=cpu` still works on a GPU machine); without CUDA it is gloo.
    """
    global _control
    rank_, world, local = env_world()
    if world == 1 or active():
        return rank_, world, local
    if not dist.is_available():
        raise BabyError("torchrun: this PyTorch build has no torch.distributed")
    wait = datetime.timedelta(seconds=timeout_s())
    cuda = torch.cuda.is_available()
    if cuda and local < torch.cuda.device_count():
        torch.cuda.set_device(local)
    try:
        dist.init_process_group("cpu:gloo,cuda:nccl" if cuda else "gloo", rank=rank_, world_size=world,
                                timeout=wait)
        _control = dist.new_group(backend="gloo",
                                  timeout=datetime.timedelta(seconds=max(SETUP_TIMEOUT_S, wait.total_seconds())))
    except (RuntimeError, ValueError) as e:
        raise BabyError(f"rank {rank_}: could not join the other {world - 1} rank(s) "
                        f"({_first_line(e)})") from None
    return rank_, world, local


def shutdown() -> None:
    """Leave the process group (after a clean finish; after a failure the process just exits)."""
    global _control
    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):  # nothing left to save; never turn a clean exit into a crash
            dist.destroy_process_group()
    _control = None


def _first_line(e: BaseException) -> str:
    """The gist of an error: its first line without a leading [source/file.cc:123] or trailing advice."""
    lines = str(e).strip().splitlines()
    text = re.sub(r"^\[[^\]]*\.(?:cc|cpp|h|hpp):\d+\]\s*", "", lines[0]) if lines else type(e).__name__
    cut = text.find(". ")
    return (text[:cut] if cut > 0 else text)[:200]


def is_comm_failure(e: BaseException) -> bool:
    """Whether an exception is a failed collective (a lost rank or a timeout) rather than a bug here."""
    if isinstance(e, dist.DistError):
        return True
    if not isinstance(e, RuntimeError) or isinstance(e, torch.OutOfMemoryError):
        return False
    text = str(e).lower()
    return any(k in text for k in ("gloo", "nccl", "connection", "timed out", "timeout", "broken pipe",
                                   "peer", "socket", "process group", "processgroup", "watchdog"))


def lost_contact(e: BaseException, last_save: int | None) -> str:
    """The one-line report of a failed collective."""
    saved = f"the last save at step {last_save} is intact" if last_save is not None else "no save was written yet"
    return f"rank {rank()} lost contact with the other ranks ({_first_line(e)}); {saved}"


def reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Sum a small float tensor over the ranks (in place, returned); NaN anywhere makes it NaN everywhere."""
    if active():
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def any_rank(flags: list[bool], device: torch.device) -> list[bool]:
    """For each flag: whether it is set on any rank (one small all-reduce)."""
    if not active():
        return flags
    t = torch.tensor([1.0 if f else 0.0 for f in flags], device=device)
    return [v > 0 for v in reduce_sum(t).tolist()]


def barrier() -> None:
    if active():
        dist.barrier()


def share(make: Callable[[], T]) -> T:
    """Rank 0 runs make() and sends its result (any picklable object) to every rank.

    If it raises on rank 0, rank 0 re-raises and the other ranks raise a BabyError naming it, so no
    rank waits for a message that never comes.
    """
    if not active():
        return make()
    box: list[Any] = [None]
    error: BaseException | None = None
    if dist.get_rank() == 0:
        try:
            box[0] = ("ok", make())
        except BaseException as e:  # tell the others before failing here
            error = e
            box[0] = ("error", f"{type(e).__name__}: {_first_line(e)}" if not isinstance(e, BabyError)
                      else _first_line(e))
    dist.broadcast_object_list(box, src=0, group=_control)
    if error is not None:
        raise error
    status, value = box[0]
    if status != "ok":
        raise BabyError(f"rank 0 could not start: {value}")
    return value


def all_ok(ok: bool) -> bool:
    """Whether every rank says ok (on the set-up group, so slow set-up on one rank is waited for)."""
    if not active():
        return ok
    t = torch.tensor([0.0 if ok else 1.0])
    dist.all_reduce(t, op=dist.ReduceOp.SUM, group=_control)
    return t.item() == 0


def agree_setup(build: Callable[[], T]) -> T:
    """Run build() on every rank; if it fails anywhere, every rank raises (the failing one its own error)."""
    try:
        value = build()
    except BaseException:
        with contextlib.suppress(Exception):  # the others are gone too; this rank's own error says more
            all_ok(False)
        raise
    if not all_ok(True):
        raise BabyError(f"rank {rank()}: another rank could not start (see its error)")
    return value
