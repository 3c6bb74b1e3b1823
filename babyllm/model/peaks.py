"""Datasheet peaks of common GPUs (dense, no sparsity), so model FLOPs utilisation (MFU) has a fixed yardstick.

MFU is the model's training FLOPs per token times tokens/s over the device's peak for the precision the run
computes in: bf16 tensor cores, TF32 tensor cores (fp32 with TF32 matmuls) or plain fp32. A GPU not in the
table, and every CPU, is judged against a peak measured on the machine (the benchmark's GEMM probe) and says so.
"""

from __future__ import annotations

import functools
import math
import time
from dataclasses import dataclass

import torch

from babyllm.model import gemm

TERA = 1e12


@dataclass(frozen=True)
class GpuPeak:
    """One GPU's dense datasheet peaks in TFLOP/s; `match` is a piece of torch.cuda.get_device_name()."""

    match: str
    bf16: float | None  # None: no bf16 tensor cores (bf16 is emulated)
    tf32: float | None  # None: no TF32 tensor cores
    fp32: float


# Most specific names first: the first row whose `match` is in the device's name wins. Sources: NVIDIA's
# datasheets (dense figures; the sparse ones they print are twice these).
DATASHEET: tuple[GpuPeak, ...] = (
    GpuPeak("B200", 2250.0, 1100.0, 75.0),
    GpuPeak("H200", 989.4, 494.7, 66.9),
    GpuPeak("GH200", 989.4, 494.7, 66.9),
    GpuPeak("H100 NVL", 835.0, 417.5, 60.0),
    GpuPeak("H100 PCIe", 756.5, 378.0, 51.2),
    GpuPeak("H100", 989.4, 494.7, 66.9),  # "NVIDIA H100 80GB HBM3": the SXM part
    GpuPeak("A100", 312.0, 156.0, 19.5),
    GpuPeak("L40S", 362.1, 183.0, 91.6),
    GpuPeak("L40", 181.0, 90.5, 90.5),
    GpuPeak("L4", 121.0, 60.0, 30.3),
    GpuPeak("RTX 6000 Ada", 364.2, 182.1, 91.1),
    GpuPeak("RTX A6000", 154.8, 77.4, 38.7),
    GpuPeak("RTX 4090", 165.2, 82.6, 82.6),
    GpuPeak("RTX 3090", 71.0, 35.6, 35.6),
    GpuPeak("A10", 125.0, 62.5, 31.2),
    GpuPeak("V100", None, None, 15.7),
    GpuPeak("T4", None, None, 8.1),
)


def datasheet(device_name: str) -> GpuPeak | None:
    """The table's row for a device name (e.g. "NVIDIA H200"); None for a device it does not know."""
    return next((row for row in DATASHEET if row.match in device_name), None)


def datasheet_flops(device_name: str, dtype: str, tf32: bool) -> float | None:
    """The dense peak in FLOP/s for a run in `dtype` (with TF32 matmuls when `tf32`); None when unknown."""
    row = datasheet(device_name)
    if row is None:
        return None
    tera = row.bf16 if dtype == "bf16" else row.tf32 if tf32 else row.fp32
    return tera * TERA if tera is not None else row.fp32 * TERA  # emulated bf16 runs on the fp32 units


def precision_label(dtype: str, tf32: bool) -> str:
    """Which of the datasheet's columns a run is judged against."""
    return "bf16" if dtype == "bf16" else "tf32" if tf32 else "fp32"


PROBE_SIZE = 1024  # the square GEMM the quick probe times (large enough to run near a machine's peak)
PROBE_SECONDS = 0.15


@dataclass(frozen=True)
class Peak:
    """The FLOP/s a run's MFU is judged against, and where the figure comes from."""

    flops: float
    source: str  # "datasheet (NVIDIA H200, bf16)" or "measured (a 1024^3 GEMM, bf16, here)"


def measured_flops(device: torch.device, dtype: str, seconds: float = PROBE_SECONDS) -> float:
    """FLOP/s of a PROBE_SIZE^3 matmul in the run's precision on `device`, best of repeats within `seconds` (no
    random numbers drawn: a run's RNG stays untouched)."""
    n = PROBE_SIZE
    a = torch.ones(n, n, device=device)
    b = torch.full((n, n), 0.5, device=device)
    if dtype == "bf16":
        a, b = a.bfloat16(), b.bfloat16()
    mm = lambda: gemm.mm(a, b)  # noqa: E731  # the products the model runs (oneDNN for fp32 on CPU where faster)
    best = math.inf
    deadline = time.perf_counter() + seconds
    while True:
        sync(device)
        t0 = time.perf_counter()
        mm()
        sync(device)
        best = min(best, time.perf_counter() - t0)
        if time.perf_counter() > deadline:
            break
    return 2 * n**3 / best


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@functools.lru_cache(maxsize=8)
def _measured(device: torch.device, dtype: str) -> float:
    return measured_flops(device, dtype)


def peak_for(device: torch.device, dtype: str, tf32: bool, name: str = "") -> Peak:
    """The datasheet's dense peak for a CUDA device it knows (`name`: torch.cuda.get_device_name), else the
    quick probe's figure (measured once per process, device and precision)."""
    label = precision_label(dtype, tf32)
    flops = datasheet_flops(name, dtype, tf32) if device.type == "cuda" else None
    if flops is not None:
        return Peak(flops, f"datasheet ({name}, {label})")
    where = f"{name or device.type}: not in the datasheet table, " if device.type == "cuda" else ""
    return Peak(_measured(device, dtype), f"measured ({where}a {PROBE_SIZE}^3 GEMM in {label}, here)")
