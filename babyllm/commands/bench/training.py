"""Training speed: the real `Tutor.step()` timed after a warm-up, beside a GEMM probe, and its memory peak."""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from typing import Any

from babyllm.commands.bench.memory import page_faults, peak_rss_mb, reset_peak_rss
from babyllm.commands.bench.peak import capped, gemm_fn, gemm_shapes
from babyllm.commands.bench.timing import best_time, matmul_rate, progress, sync_fn
from babyllm.config import Config
from babyllm.errors import BabyError

# The probe: the logits forward GEMM (the largest share of the FLOPs), timed before each step. A fixed
# shape, because cut down to probe size some other shapes change kernel (see babyllm.model.gemm).
PROBE = "logits fwd"
PROGRESS_EVERY_S = 3.0
OVERLAP_BLOCK = 8  # on a GPU the steps are timed in blocks, each read once the next is queued (as in training)


def measure_training(tutor: Any, cfg: Config, budget: dict[str, float], baseline_mb: float) -> dict[str, Any]:
    """{"train": speed figures, "memory_mb": the peak while training, ...} for this Tutor's config."""
    import torch

    device = tutor.device
    cuda = device.type == "cuda"
    sync = sync_fn(device)
    probe_fn, probe_flops = _probe(cfg, budget, tutor.dtype, device)
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    rss_reset = not cuda and reset_peak_rss()
    warm = _warm_up(tutor, budget, sync)
    faults = page_faults()
    steps, fractions, stats = _timed_steps(tutor, cfg, budget, sync, probe_fn, probe_flops)
    if not math.isfinite(stats.get("loss", math.nan)):
        raise BabyError(f"{cfg.name}: training produced a non-finite loss during the benchmark")
    faults_per_step = (page_faults() - faults) / len(steps)
    med = statistics.median(steps)
    tokens_per_s = cfg.batch_size * cfg.model.context / med
    achieved = tutor.model.train_flops_per_token() * tokens_per_s / 1e9
    out: dict[str, Any] = {"train": dict(
        tokens_per_s=tokens_per_s, ms_per_step=med * 1000, steps=len(steps), warmup_steps=warm,
        step_ms=[s * 1000 for s in steps], gflops=achieved, fraction_vs_probe=statistics.median(fractions),
        probe=PROBE, loss=float(stats["loss"]), page_faults_per_step=faults_per_step)}
    if cuda:
        out["memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        out["memory_kind"] = "cuda max_memory_allocated"
    else:
        out["memory_mb"] = peak_rss_mb()
        out["memory_kind"] = "peak RSS while training" if rss_reset else "peak RSS of the process"
        out["baseline_rss_mb"] = baseline_mb
    return out


def _probe(cfg: Config, budget: dict[str, float], dtype: str, device: Any) -> tuple[Callable[[], Any], float]:
    """The probe GEMM as a call, and its FLOPs."""
    import torch

    shape = next(s for s in gemm_shapes(cfg) if s["name"] == PROBE)
    torch_dtype = torch.bfloat16 if dtype == "bf16" else torch.float32
    dims = capped(shape, matmul_rate(device, torch_dtype) * budget["call_s"] / 4)
    fn = gemm_fn(shape, dims, torch_dtype, device)
    return fn, 2.0 * dims[0] * dims[1] * dims[2]


def _warm_up(tutor: Any, budget: dict[str, float], sync: Callable[[], None]) -> int:
    """The first steps allocate, fill caches (and compile, if asked); returns how many ran."""
    start = time.perf_counter()
    warm = 0
    while warm < budget["min_warmup"] or (warm < 3 and time.perf_counter() - start < budget["warmup_s"]):
        tutor.step()
        warm += 1
        progress(tutor.cfg.name, f"warm-up step {warm} ({time.perf_counter() - start:.1f} s)")
    sync()
    return warm


def _timed_steps(tutor: Any, cfg: Config, budget: dict[str, float], sync: Callable[[], None],
                 probe_fn: Callable[[], Any], probe_flops: float) -> tuple[list[float], list[float], dict[str, float]]:
    """(seconds of each step, each step's speed over the probe's just before it, the last step's stats)."""
    flops_per_step = tutor.model.train_flops_per_token() * cfg.batch_size * cfg.model.context
    block = OVERLAP_BLOCK if tutor.stepper.overlap_ok else 1  # on a GPU, steps as the loop runs them
    steps: list[float] = []
    fractions: list[float] = []
    stats: dict[str, float] = {}
    start = said = time.perf_counter()
    while len(steps) < budget["min_steps"] or time.perf_counter() - start < budget["train_s"]:
        t_probe = best_time(probe_fn, sync, 0.0, min_reps=1)
        sync()
        t0 = time.perf_counter()
        landed: list[dict[str, float]] = []
        for i in range(block):
            landed += tutor.stepper.step(overlap=i < block - 1)
        sync()
        dt = (time.perf_counter() - t0) / block
        stats = landed[-1]
        steps += [dt] * block
        fractions.append((flops_per_step / dt) / (probe_flops / t_probe))
        if time.perf_counter() - said > PROGRESS_EVERY_S:
            said = time.perf_counter()
            progress(cfg.name, f"training: {len(steps)} timed steps, {statistics.median(steps) * 1000:.0f} ms a "
                               f"step ({said - start:.0f} of {budget['train_s']:.0f} s)")
    return steps, fractions, stats
