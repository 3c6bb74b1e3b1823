"""The two layouts of activations: tokens-major [B, T, N] (what callers see) and neuron-major [N, B, T] (time
last, so each sequence mix is one tall GEMM)."""

from __future__ import annotations

from torch import Tensor


def neuron_major(x: Tensor) -> Tensor:
    """[B, T, N] -> [N, B, T] (contiguous)."""
    return x.permute(2, 0, 1).contiguous()


def batch_major(x: Tensor) -> Tensor:
    """[N, B, T] -> a [B, T, N] view."""
    return x.permute(1, 2, 0)
