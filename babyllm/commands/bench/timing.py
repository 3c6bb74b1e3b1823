"""Timing a call: the device's sync, and the fastest of repeated calls within a time box."""

from __future__ import annotations

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
