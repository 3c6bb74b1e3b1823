"""Per-thread native (OpenMP, MKL) thread limits for chat forwards on CPU."""

from __future__ import annotations

import ctypes
import functools
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from babyllm.model.runtime import openmp_library


class NativeThreads:
    """Per-thread OpenMP and MKL thread counts (the calling thread only; torch.set_num_threads is global).

    One token is a chain of matrix-vector products, bound by memory bandwidth: a second intra-op thread
    gains ~5% on an idle 2-core CPU but, when the cores are busy (the Tutor training in the same process,
    other programs), OpenMP teams spin against each other and generation gets 3-5x slower. So chat
    forwards on CPU run single-threaded in the caller's thread; the setting is restored afterwards and
    other threads (the Tutor's) never see it, so their speed and results are unchanged.
    """

    def __init__(self) -> None:
        self.omp_set: Any = None
        self.omp_get: Any = None
        self.mkl_set: Any = None
        lib = openmp_library()
        if lib is None:
            return
        self.omp_set = getattr(lib, "omp_set_num_threads", None)
        self.omp_get = getattr(lib, "omp_get_max_threads", None)
        self.mkl_set = getattr(lib, "MKL_Set_Num_Threads_Local", None)  # the C API (lower case is Fortran)
        if self.omp_get is not None:
            self.omp_get.restype = ctypes.c_int
        if self.mkl_set is not None:
            self.mkl_set.restype = ctypes.c_int

    @contextmanager
    def limit(self, n: int | None) -> Iterator[None]:
        if not n or self.omp_set is None or self.omp_get is None:
            yield
            return
        torch.get_num_threads()  # torch's one-time per-thread set-up first, so it cannot undo ours later
        before = self.omp_get()
        if before <= n:
            yield
            return
        mkl_before = self.mkl_set(n) if self.mkl_set is not None else None
        self.omp_set(n)
        try:
            yield
        finally:
            self.omp_set(before)
            if mkl_before is not None:
                self.mkl_set(mkl_before)


@functools.cache
def native_threads() -> NativeThreads:
    """The process's one NativeThreads (its library handles are looked up once, on first use)."""
    return NativeThreads()
