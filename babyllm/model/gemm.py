"""Matrix products for the model: PyTorch's own, or oneDNN's for fp32 on CPU where that is faster.

PyTorch computes fp32 matmuls on CPU with MKL, which on some CPUs (measured: AMD EPYC, Zen 5) runs
its AVX2 code at about half the rate oneDNN reaches in strict fp32 (oneDNN already does PyTorch's
bf16 matmuls). oneDNN is reached through `torch.ops.mkldnn._linear_pointwise`, the private op
PyTorch's own compiler emits, so it is chosen once per process only after a self-test: the op is
there, gives torch.mm's answer (with transposed operands too), and is faster on this machine.
`BABYLLM_MATMUL=torch` or `BABYLLM_MATMUL=onednn` overrides the choice.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from functools import cache
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from babyllm.errors import ConfigError

MATMUL_ENV = "BABYLLM_MATMUL"


# Below this many multiply-adds (chat's one-token steps, a tiny config's mixes) torch.mm is faster:
# oneDNN's fixed cost per call dominates, and it would build a new kernel per growing history length.
MIN_MACS = 1 << 22


def mm(a: Tensor, b: Tensor) -> Tensor:
    """a @ b for 2-D a [m, k] and b [k, n], differentiable; oneDNN for fp32 on CPU when chosen."""
    return _OneDnnMM.apply(a, b) if _use_onednn(a, b) else torch.mm(a, b)


def addmm(bias: Tensor, a: Tensor, b: Tensor) -> Tensor:
    """bias + a @ b (bias broadcast), like torch.addmm."""
    return _OneDnnMM.apply(a, b) + bias if _use_onednn(a, b) else torch.addmm(bias, a, b)


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x [m, k] @ weight.T + bias, like F.linear for 2-D x (the bias added inside oneDNN's kernel)."""
    if not _use_onednn(x, weight.t()):
        return F.linear(x, weight, bias)
    return _OneDnnLinear.apply(x, weight, bias)


def _use_onednn(a: Tensor, b: Tensor) -> bool:
    # torch's own ops under torch.compile (its compiler lowers this kernel only for frozen weights) and
    # under autocast (they cast to bf16, and bf16 already goes through oneDNN).
    return (not _compiling() and a.dtype == torch.float32 and a.device.type == "cpu"
            and a.shape[0] * a.shape[1] * b.shape[1] >= MIN_MACS and not _autocast_cpu() and onednn_fp32())


def _onednn_suits(a: Tensor, b: Tensor) -> bool:
    """Whether oneDNN beats torch.mm on this product's layout (measured on both configs' products).

    oneDNN reorders b (its "weights") into its own blocked layout on every call anyway, so b's layout
    costs nothing; a it wants with the inner dimension contiguous, else it copies a first, which only
    pays off for a wide output (a [T, T] mix's weight gradient, n = T, runs faster on torch.mm).
    """
    return a.stride(1) == 1 or b.shape[1] >= 256


def _compiling() -> bool:
    is_compiling = getattr(torch.compiler, "is_compiling", None)
    return bool(is_compiling and is_compiling())


def matmul_choice() -> str:
    """BABYLLM_MATMUL, checked: 'auto' (default), 'torch' or 'onednn'."""
    choice = os.environ.get(MATMUL_ENV, "auto").strip().lower() or "auto"
    if choice not in ("auto", "torch", "onednn"):
        raise ConfigError(f"{MATMUL_ENV}={os.environ[MATMUL_ENV]!r}: use auto, torch or onednn (or unset it)")
    return choice


@cache
def onednn_fp32() -> bool:
    """Whether fp32 CPU matmuls go through oneDNN in this process (decided once, by the self-test)."""
    choice = matmul_choice()
    if choice == "torch" or not _correct():
        return False
    return choice == "onednn" or _faster()


def path() -> str:
    """The fp32 CPU matmul in use, for reports: 'oneDNN' or 'torch'."""
    return "oneDNN" if onednn_fp32() else "torch"


class _OneDnnMM(torch.autograd.Function):
    """a @ b with each of the three products (forward, both gradients) through oneDNN where it suits."""

    @staticmethod
    def forward(ctx: Any, a: Tensor, b: Tensor) -> Tensor:
        ctx.save_for_backward(a, b)
        return _product(a, b)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        a, b = ctx.saved_tensors
        da = _product(grad, b.t()) if ctx.needs_input_grad[0] else None
        db = _product(a.t(), grad) if ctx.needs_input_grad[1] else None
        return da, db


class _OneDnnLinear(torch.autograd.Function):
    """x @ weight.T + bias with the bias added inside the forward kernel (one pass fewer over the output)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
        ctx.save_for_backward(x, weight)
        if not _onednn_suits(x, weight.t()):
            out = torch.mm(x, weight.t())
            return out if bias is None else out + bias
        return _op()(_strided(x), _strided(weight), bias, "none", [], "")

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:
        x, weight = ctx.saved_tensors
        dx = _product(grad, weight) if ctx.needs_input_grad[0] else None
        dw = _product(grad.t(), x) if ctx.needs_input_grad[1] else None
        db = grad.sum(0) if ctx.needs_input_grad[2] else None
        return dx, dw, db


def _product(a: Tensor, b: Tensor) -> Tensor:
    return onednn_mm(a, b) if _onednn_suits(a, b) else torch.mm(a, b)


def onednn_mm(a: Tensor, b: Tensor) -> Tensor:
    """a @ b by oneDNN's fp32 inner-product kernel (which computes x @ w.T), no autograd."""
    return _op()(_strided(a), _strided(b).t(), None, "none", [], "")


def _strided(x: Tensor) -> Tensor:
    """x itself if it or its transpose is dense row-major (what the kernel reads directly), else a copy."""
    return x if x.is_contiguous() or x.t().is_contiguous() else x.contiguous()


def _op() -> Callable[..., Tensor]:
    return torch.ops.mkldnn._linear_pointwise


def _autocast_cpu() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch < 2.4
        return torch.is_autocast_cpu_enabled()


def _correct() -> bool:
    """The kernel exists and matches torch.mm, plain and with transposed operands."""
    if not torch.backends.mkldnn.is_available():
        return False
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(37, 70, generator=g), torch.randn(70, 53, generator=g)
    try:
        cases = [(a, b), (a.t().contiguous().t(), b), (a, b.t().contiguous().t())]
        return all(torch.allclose(onednn_mm(x, y), torch.mm(x, y), rtol=1e-4, atol=1e-4) for x, y in cases)
    except (RuntimeError, TypeError, AttributeError):
        return False


def _faster() -> bool:
    """oneDNN at least 10% faster than torch.mm on a mid-sized GEMM (best of interleaved tries, ~20 ms)."""
    a, b = torch.randn(512, 512), torch.randn(512, 512)
    best = {"torch": float("inf"), "onednn": float("inf")}
    for _ in range(5):
        for name, fn in (("torch", torch.mm), ("onednn", onednn_mm)):
            start = time.perf_counter()
            fn(a, b)
            best[name] = min(best[name], time.perf_counter() - start)
    return best["onednn"] < 0.9 * best["torch"]
