"""Process and device set-up shared by training, chat and the benchmark."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import sys
from dataclasses import dataclass

import torch

from babyllm.errors import ConfigError

M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4
M_ARENA_MAX = -8
OMP_PAUSE_SOFT = 1


def tune_malloc() -> bool:
    """Keep freed tensor memory in the process (glibc only).

    By default glibc returns every allocation over 32 MiB to the OS, so each training step page-faults
    its activations back in; measured +13% fp32 and +40% bf16 CPU training speed without that. The heap
    is never trimmed either: a finite threshold (1 GiB was tried) still handed the default config's
    freed activations (GBs at the heap top) back after every step (374k page faults, +18% per step). One
    arena for all threads: the Tutor trains in a thread, and a thread's own arena lives in 64 MiB
    heaps that glibc unmaps as they empty (measured: thousands of page faults and +25% per step).
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = libc.mallopt(M_MMAP_MAX, 0) == 1
        ok &= libc.mallopt(M_TRIM_THRESHOLD, -1) == 1  # -1: never trim (man mallopt)
        ok &= libc.mallopt(M_ARENA_MAX, 1) == 1
        return bool(ok)
    except (OSError, AttributeError):  # not glibc (musl, ...): nothing to tune
        return False


def openmp_library() -> ctypes.CDLL | None:
    """libtorch_cpu, through which torch's own OpenMP (and MKL) entry points resolve; None without OpenMP."""
    if "OpenMP" not in torch.__config__.parallel_info():
        return None
    try:
        lib_dir = os.path.join(os.path.dirname(torch.__file__), "lib")
        names = [n for n in os.listdir(lib_dir) if n.startswith("libtorch_cpu.")]
        return ctypes.CDLL(os.path.join(lib_dir, names[0])) if names else None
    except OSError:
        return None


def release_openmp_threads() -> bool:
    """Free the calling thread's OpenMP worker threads (they come back if it runs parallel work again).

    Call on the main thread just before training starts in another thread. With two OpenMP thread pools
    alive and more pool threads than cores, libgomp stops spinning between parallel regions, so every
    elementwise op in the training thread waits for a wake-up: measured 2x slower elementwise ops and a
    ~12% slower cpu.toml step until the main thread's pool is gone.
    """
    lib = openmp_library()
    pause = getattr(lib, "omp_pause_resource_all", None) if lib is not None else None
    return bool(pause is not None and pause(OMP_PAUSE_SOFT) == 0)


def pick_device(name: str) -> torch.device:
    """`auto` means CUDA when present, else CPU; an unavailable device is a clear error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device = '{name}': no CUDA device here; use auto or cpu")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"train.device = '{name}': MPS is not available here; use auto or cpu")
    return device


@functools.lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """This CPU's feature flags (/proc/cpuinfo; empty where there is none)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            return frozenset(next((line for line in fh if line.startswith("flags")), "").split())
    except OSError:
        return frozenset()


def cpu_has_bf16() -> bool:
    """Whether this CPU multiplies bf16 natively (AVX512-BF16 or AMX): elsewhere bf16 autocast is slower."""
    return bool(cpu_flags() & {"avx512_bf16", "amx_bf16"})


def cpu_bf16_text() -> str:
    """What this CPU offers for bf16, in a few words (the benchmark's header and a run's first lines)."""
    flags = cpu_flags()
    if "amx_bf16" in flags:
        return "native (AMX)"
    if "avx512_bf16" in flags:
        return "native (AVX512-BF16)"
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"none ({vector}, no AVX512-BF16 or AMX)"


BF16_CAPABILITY = (8, 0)  # Ampere and later: bf16 tensor cores (and TF32 for fp32 matmuls)


@dataclass(frozen=True)
class Precision:
    """How a run computes: its dtype, whether fp32 matmuls run as TF32, and why (a run's first lines say it)."""

    dtype: str  # "fp32" or "bf16"
    tf32: bool  # fp32 matmuls on TF32 tensor cores (CUDA, compute capability 8.0 or more)
    reason: str


def _cuda_index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


def cuda_capability(device: torch.device) -> tuple[int, int]:
    """The compute capability of `device` itself (not of device 0)."""
    major, minor = torch.cuda.get_device_capability(_cuda_index(device))
    return int(major), int(minor)


def cuda_name(device: torch.device) -> str:
    return str(torch.cuda.get_device_name(_cuda_index(device)))


def choose_precision(asked: str, device: torch.device, tf32: bool = True) -> Precision:
    """train.dtype as run on `device`: "auto" is bf16 where the device computes it natively, else fp32;
    fp32 on a CUDA device with TF32 tensor cores multiplies in TF32 unless `tf32` is false."""
    if device.type == "cuda":
        cap = cuda_capability(device)
        where = f"{cuda_name(device)} (compute capability {cap[0]}.{cap[1]})"
        native = cap >= BF16_CAPABILITY
        dtype = asked if asked != "auto" else "bf16" if native else "fp32"
        if dtype == "bf16":
            why = "has bf16 tensor cores" if native else "has no bf16 tensor cores: bf16 is emulated (slow)"
            return Precision("bf16", False, f"bf16: {where} {why}")
        use_tf32 = tf32 and native
        how = ("matmuls in TF32 (train.tf32 = false for exact fp32)" if use_tf32 else
               "exact fp32 matmuls (train.tf32 = false)" if native else "no bf16 or TF32 tensor cores")
        return Precision("fp32", use_tf32, f"fp32 on {where}: {how}")
    bf16 = device.type == "cpu" and cpu_has_bf16()
    dtype = asked if asked != "auto" else "bf16" if bf16 else "fp32"
    what = f"this CPU's bf16: {cpu_bf16_text()}" if device.type == "cpu" else f"{device.type}"
    return Precision(dtype, False, f"{dtype} ({'train.dtype = ' + asked if asked != 'auto' else 'auto'}; {what})")


def resolve_dtype(dtype: str, device: torch.device) -> str:
    """train.dtype as run: "auto" is bf16 where the device computes it natively (faster), else fp32."""
    return dtype if dtype != "auto" else choose_precision("auto", device).dtype


def apply_precision(precision: Precision) -> None:
    """Set torch's fp32 matmul precision for the run (process-wide, as torch keeps it): TF32 or exact."""
    torch.backends.cuda.matmul.allow_tf32 = precision.tf32
    torch.backends.cudnn.allow_tf32 = precision.tf32


def autocast(device: torch.device, dtype: str) -> contextlib.AbstractContextManager:
    """bf16 autocast when asked for (or "auto" resolves to it), otherwise plain fp32."""
    if resolve_dtype(dtype, device) == "bf16":
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()
