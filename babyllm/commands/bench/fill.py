"""--batch auto on a GPU: the largest batch whose training step fits in a share of the device's memory."""

from __future__ import annotations

import copy
import tempfile
from collections.abc import Callable
from pathlib import Path

from babyllm.config import Config

# --batch auto on a GPU: the share of the device's memory a training step may use (the rest: headroom
# for torch.compile's buffers and the allocator's fragmentation), and the largest batch tried.
FILL_FRACTION = 0.6
FILL_CAP = 1024


def fill_batch(step_bytes: Callable[[int], float], base: int, budget_bytes: float, cap: int = FILL_CAP) -> int:
    """Largest base * 2^k <= cap whose step fits budget_bytes, from steps measured at base and 2 * base.

    A step's memory is fixed (weights, optimizer state) plus a part proportional to the batch
    (activations), so two probes give the line. A probe that runs out of memory raises MemoryError.
    """
    first = step_bytes(base)
    if first > budget_bytes or 2 * base > cap:
        return base
    try:
        second = step_bytes(2 * base)
    except MemoryError:
        return base
    per_sequence = max((second - first) / base, 1.0)
    fixed = first - per_sequence * base
    batch = base
    while 2 * batch <= cap and fixed + per_sequence * 2 * batch <= budget_bytes:
        batch *= 2
    return batch


def cuda_step_bytes(cfg: Config, batch: int) -> float:
    """Peak CUDA memory of training steps at this batch (a throwaway Tutor; no compile while probing)."""
    import gc

    import torch

    from babyllm.school.tutor import Tutor

    probe = copy.deepcopy(cfg)
    probe.train.batch = batch
    probe.train.compile = False
    tutor = None
    try:
        with tempfile.TemporaryDirectory(prefix="babyllm-bench-probe-") as tmp:
            tutor = Tutor(probe, Path(tmp) / "run", say=lambda _m: None)
            try:
                torch.cuda.reset_peak_memory_stats(tutor.device)
                for _ in range(2):
                    tutor.step()
                torch.cuda.synchronize(tutor.device)
                return float(torch.cuda.max_memory_allocated(tutor.device))
            finally:
                tutor.close()
    except torch.cuda.OutOfMemoryError as e:
        raise MemoryError(f"batch {batch}: {e}") from None
    finally:
        tutor = None  # (also in the frame an exception's traceback keeps) so its tensors can go
        gc.collect()
        torch.cuda.empty_cache()
