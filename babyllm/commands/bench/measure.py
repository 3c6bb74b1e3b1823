"""Everything for one config: training, memory, matmul peak, generation and the naive reference."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from babyllm.commands.bench.budget import budgets
from babyllm.commands.bench.generation import measure_generation, measure_naive
from babyllm.commands.bench.memory import rss_mb
from babyllm.commands.bench.peak import compare_fp32_paths, measure_peak, merge_peaks
from babyllm.commands.bench.timing import progress
from babyllm.commands.bench.training import measure_training
from babyllm.config import Config, load_config


def measure_config(spec: dict[str, Any]) -> dict[str, Any]:
    """Everything for one config (run in a child process by `main`)."""
    from babyllm.model.runtime import tune_malloc

    tune_malloc()
    cfg = load_config(spec["config"], spec["overrides"])
    cfg.train.device = spec["device"]
    if spec.get("dtype"):
        cfg.train.dtype = spec["dtype"]
    cfg.train.compile = bool(spec.get("compile"))
    budget = budgets(spec.get("quick", False), cuda=spec["device"].startswith("cuda"))
    parts = spec.get("parts", ["peak", "train", "naive", "gen"])
    baseline_mb = rss_mb()

    from babyllm.model.runtime import pick_device, resolve_dtype
    from babyllm.school.batching import BASE_BATCH, FILL_FRACTION, cuda_step_bytes, fill_batch
    from babyllm.school.tutor import Tutor

    filled = False
    device = pick_device(cfg.train.device)
    base = cfg.train.batch if isinstance(cfg.train.batch, int) else BASE_BATCH
    cfg.train.batch = base
    if spec.get("fill") and device.type == "cuda":  # the probe a run's train.batch = "auto" uses, uncapped
        import torch

        total = torch.cuda.get_device_properties(device).total_memory
        dtype = resolve_dtype(cfg.train.dtype, device)
        cfg.train.batch = fill_batch(lambda b: cuda_step_bytes(cfg, device, dtype, b), base, FILL_FRACTION * total)
        filled = True

    with tempfile.TemporaryDirectory(prefix="babyllm-bench-") as tmp:
        tutor = Tutor(cfg, Path(tmp) / "run", say=lambda _m: None)
        try:
            out = _measure_with(tutor, cfg, budget, parts, baseline_mb)
        finally:
            tutor.close()
    out["batch_filled"] = filled
    return out


def _measure_with(tutor: Any, cfg: Config, budget: dict[str, float], parts: list[str],
                  baseline_mb: float) -> dict[str, Any]:
    import torch

    device = tutor.device
    model = tutor.model
    B, T = cfg.batch_size, cfg.model.context
    dtype = tutor.dtype
    out: dict[str, Any] = dict(config=cfg.name, device=str(device), dtype=dtype, compile=cfg.train.compile,
                               batch=B, context=T, neurons=cfg.model.neurons, embed=cfg.model.embed,
                               vocab=cfg.model.vocab, params=sum(model.param_counts().values()),
                               train_flops_per_token=model.train_flops_per_token(), threads=torch.get_num_threads())
    if "train" in parts:
        progress(cfg.name, f"training ({B} x {T} tokens a step, {dtype})")
        out.update(measure_training(tutor, cfg, budget, baseline_mb))
    if "peak" in parts:
        progress(cfg.name, "matmul peak (the model's GEMM shapes, fp32 and bf16)")
        _add_peak(out, cfg, device, dtype, budget)
    if device.type == "cuda":
        _add_datasheet(out, tutor)
    batch = tutor.librarian.batch(B).to(device)
    ids = batch[:, :-1]
    if "naive" in parts:
        progress(cfg.name, "the one-token-per-pass reference")
        out["naive"] = measure_naive(model, ids, device, dtype, budget)
    if "gen" in parts:
        progress(cfg.name, "chat generation")
        out["generation"] = measure_generation(tutor, cfg, budget)
    progress(cfg.name, "done")
    return out


def _add_datasheet(out: dict[str, Any], tutor: Any) -> None:
    """MFU against the GPU's datasheet dense peak for the run's precision (None for a GPU the table lacks)."""
    from babyllm.model import peaks
    from babyllm.model.runtime import cuda_name

    name = cuda_name(tutor.device)
    flops = peaks.datasheet_flops(name, tutor.dtype, tutor.precision.tf32)
    label = peaks.precision_label(tutor.dtype, tutor.precision.tf32)
    out["datasheet"] = dict(gpu=name, precision=label, tflops=flops / 1e12 if flops else None)
    if flops and "train" in out:
        out["train"]["mfu_datasheet"] = out["train"]["gflops"] * 1e9 / flops


def _add_peak(out: dict[str, Any], cfg: Config, device: Any, dtype: str, budget: dict[str, float]) -> None:
    """The matmul peak, and the training's fractions of it.

    Measured after training, so that its GEMM buffers (kept by the never-trimmed heap) do not colour the
    training's memory figure; its two best shapes are measured twice (the machine's best moment).
    """
    out["peak"] = measure_peak(cfg, device, ("fp32", "bf16"), budget)
    if device.type == "cpu":
        out["fp32_paths"] = compare_fp32_paths(cfg, budget)
    top = sorted(out["peak"][dtype]["shapes"], key=lambda s: -out["peak"][dtype]["shapes"][s]["gflops"])[:2]
    out["peak"] = merge_peaks(out["peak"], measure_peak(cfg, device, (dtype,), budget, only=top))
    if "train" in out:
        achieved = out["train"]["gflops"]
        peak = out["peak"][dtype]
        out["train"]["fraction_of_peak"] = achieved / peak["peak_gflops"]
        out["train"]["fraction_of_mix"] = achieved / peak["mix_gflops"]
        out["train"]["mfu_bf16"] = achieved / out["peak"]["bf16"]["peak_gflops"]
