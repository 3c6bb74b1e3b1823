"""Matmul peak: the GFLOP/s of the model's own GEMM shapes, the best shape and the FLOP-weighted mix."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from babyllm.commands.bench.timing import best_time, matmul_rate, sync_fn
from babyllm.config import Config


def gemm_shapes(cfg: Config) -> list[dict[str, Any]]:
    """The big GEMMs of one training step: name, (m, k, n) as run, operand layouts, FLOPs per token.

    Activations are neuron-major inside the model (see babyllm.model.network), so the Neurons layer runs
    W @ x.T forward and the sequence mixes run [B*N, T] x [T, T] (windows once, each memory twice);
    the Logits layer runs x @ W.T on tokens x neurons. Backward: dy @ W and dy.T @ x for the layers,
    dY @ M for the mixes and X.T @ dY for the windows' mix. Left out: the memories' low-rank
    projections (rank-thin, a few per cent of the FLOPs).
    """
    m = cfg.model
    T, B, D, N, V = m.context, cfg.batch_size, m.embed, m.neurons, m.vocab
    rows = B * T
    per_token = 2 * D * N
    out = [
        dict(name="neurons fwd", m=N, k=D, n=rows, a="row", b="tr", grow="n", flops_per_token=per_token),
        dict(name="neurons bwd dx", m=rows, k=N, n=D, a="tr", b="row", grow="m", flops_per_token=per_token),
        dict(name="neurons bwd dw", m=N, k=rows, n=D, a="row", b="row", grow="k", flops_per_token=per_token),
    ]
    per_token = 2 * N * V
    out += [
        dict(name="logits fwd", m=rows, k=N, n=V, a="row", b="tr", grow="m", flops_per_token=per_token),
        dict(name="logits bwd dx", m=rows, k=V, n=N, a="row", b="row", grow="m", flops_per_token=per_token),
        dict(name="logits bwd dw", m=V, k=rows, n=N, a="tr", b="row", grow="k", flops_per_token=per_token),
    ]
    per_token = 2 * T * N * (1 + 2 * 2)  # windows once, two mixes in each of the two memories
    out += [
        dict(name="mix fwd", m=B * N, k=T, n=T, a="row", b="tr", grow="m", flops_per_token=per_token),
        dict(name="mix bwd dx", m=B * N, k=T, n=T, a="row", b="row", grow="m", flops_per_token=per_token),
        # Only the windows' mix has a weight-gradient GEMM (the memories' decays get theirs in closed form).
        dict(name="mix bwd dm", m=T, k=B * N, n=T, a="tr", b="row", grow="k", flops_per_token=2 * T * N),
    ]
    return out


def capped(shape: dict[str, Any], max_flops: float) -> tuple[int, int, int]:
    """(m, k, n) with the batch-sized dimension cut so one call stays under max_flops."""
    m, k, n = shape["m"], shape["k"], shape["n"]
    flops = 2.0 * m * k * n
    if flops > max_flops:
        scale = max_flops / flops
        g = shape["grow"]
        size = {"m": m, "k": k, "n": n}[g]
        new = max(64, int(size * scale) // 64 * 64)
        if g == "m":
            m = min(m, new)
        elif g == "k":
            k = min(k, new)
        else:
            n = min(n, new)
    return m, k, n


def gemm_fn(shape: dict[str, Any], dims: tuple[int, int, int], dtype: Any, device: Any) -> Callable[[], Any]:
    import torch

    from babyllm.model import gemm

    m, k, n = dims
    # Stored as the model stores them: "tr" operands are transposed views of contiguous tensors; run
    # through the model's own matmul (oneDNN for fp32 on CPU where that is faster than torch.mm).
    def operand(rows: int, cols: int, layout: str) -> Any:
        if layout == "row":
            return torch.randn(rows, cols, device=device).to(dtype)
        return torch.randn(cols, rows, device=device).to(dtype).t()

    a, b = operand(m, k, shape["a"]), operand(k, n, shape["b"])
    return lambda: gemm.mm(a, b)


def measure_peak(cfg: Config, device: Any, dtypes: tuple[str, ...], budget: dict[str, float],
                 only: list[str] | None = None) -> dict[str, Any]:
    """GFLOP/s of each GEMM shape per dtype; best shape ('peak') and the FLOP-weighted mix."""
    import torch

    sync = sync_fn(device)
    result: dict[str, Any] = {}
    for dt_name in dtypes:
        dtype = torch.bfloat16 if dt_name == "bf16" else torch.float32
        max_flops = matmul_rate(device, dtype) * budget["call_s"]  # a call takes about call_s, however slow
        shapes: dict[str, Any] = {}
        for shape in gemm_shapes(cfg):
            if only is not None and shape["name"] not in only:
                continue
            dims = capped(shape, max_flops)
            fn = gemm_fn(shape, dims, dtype, device)
            t = best_time(fn, sync, budget["gemm_s"])
            shapes[shape["name"]] = dict(gflops=2.0 * dims[0] * dims[1] * dims[2] / t / 1e9, m=dims[0], k=dims[1],
                                         n=dims[2], full=[shape["m"], shape["k"], shape["n"]],
                                         flops_per_token=shape["flops_per_token"])
            del fn
        result[dt_name] = _summarise_peak(shapes)
    return result


def compare_fp32_paths(cfg: Config, budget: dict[str, float]) -> dict[str, Any]:
    """The logits forward GEMM in fp32 on CPU: through the model's matmul path and through plain torch.mm.

    PyTorch's fp32 matmul on CPU is MKL, which on some CPUs runs well below what oneDNN reaches;
    babyllm.model.gemm picks oneDNN where it is faster. This row shows the choice and what it gains.
    """
    import torch

    from babyllm.model import gemm

    shape = next(s for s in gemm_shapes(cfg) if s["name"] == "logits fwd")
    m, k, n = capped(shape, matmul_rate(torch.device("cpu"), torch.float32) * budget["call_s"])
    x, w = torch.randn(m, k), torch.randn(n, k)
    flops = 2.0 * m * k * n
    out: dict[str, Any] = dict(path=gemm.path(), shape="logits fwd")
    wt = w.t()  # the weight as the model holds it: a transposed view
    for name, fn in (("model_gflops", gemm.mm), ("torch_mm_gflops", torch.mm)):
        out[name] = flops / best_time(functools.partial(fn, x, wt), lambda: None, budget["gemm_s"]) / 1e9
    return out


def _summarise_peak(shapes: dict[str, Any]) -> dict[str, Any]:
    best_name = max(shapes, key=lambda s: shapes[s]["gflops"])
    total = sum(s["flops_per_token"] for s in shapes.values())
    time_per_token = sum(s["flops_per_token"] / s["gflops"] for s in shapes.values())
    return dict(peak_gflops=shapes[best_name]["gflops"], peak_shape=best_name,
                mix_gflops=total / time_per_token if time_per_token else 0.0, shapes=shapes)


def merge_peaks(first: dict[str, Any], again: dict[str, Any]) -> dict[str, Any]:
    """Per shape, the better of two measurements (the machine's capability, not its worst moment)."""
    out = {}
    for dt, summary in first.items():
        shapes = {name: dict(s) for name, s in summary["shapes"].items()}
        for name, s in again.get(dt, {}).get("shapes", {}).items():
            if name in shapes and s["gflops"] > shapes[name]["gflops"]:
                shapes[name] = dict(s)
        out[dt] = _summarise_peak(shapes)
    return out
