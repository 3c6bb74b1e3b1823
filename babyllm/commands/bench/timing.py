"""Timing a call: the device's sync, the fastest of repeated calls within a time box, a matmul speed to size
the others by, and the progress lines on stderr."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any


def sync_fn(device: Any) -> Callable[[], None]:
    import torch

    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def best_time(fn: Callable[[], Any], sync: Callable[[], None], budget_s: float, min_reps: int = 2,
               max_reps: int = 50, warm: bool = True) -> float:
    """Fastest of repeated calls (after one untimed call unless warm=False), within about budget_s."""
    if warm:
        fn()
        sync()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < min_reps or (time.perf_counter() - start < budget_s and len(times) < max_reps):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return min(times)


def matmul_rate(device: Any, dtype: Any, size: int = 512) -> float:
    """FLOP/s of a size^3 matmul in `dtype` through the model's matmul (best of three): what sizes the rest."""
    import torch

    from babyllm.model import gemm

    a = torch.ones(size, size, device=device).to(dtype)
    b = torch.full((size, size), 0.5, device=device).to(dtype)
    return 2.0 * size**3 / best_time(lambda: gemm.mm(a, b), sync_fn(device), 0.0, min_reps=3)


def progress(config: str, text: str) -> None:
    """One progress line on stderr (the parent passes the child's through; also with --json)."""
    print(f"bench: {config}: {text}", file=sys.stderr, flush=True)
