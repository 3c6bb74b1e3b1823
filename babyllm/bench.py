"""`babyllm bench`: how fast babyLLM trains and talks on this machine, judged against the machine itself.

For each config, in one run:

- **matmul peak**: GFLOP/s of the model's own GEMM shapes (neurons and logits layers forward and both
  backward products, the [T, T]-sized sequence mixes forward and backward), in fp32 and bf16. `peak` is
  the best shape (the machine's matmul speed for this model); `gemm mix` is what the model's GEMMs
  would reach together, each weighted by its share of a training step's FLOPs. Shapes whose FLOPs would
  take long on a CPU are measured with fewer rows (same inner dimensions); the shape used is recorded.
- **training**: the real `Tutor.step()` (data, forward, backward, clip, AdamW, schedule), median time
  over several steps after warm-up -> tokens/s, ms/step, achieved GFLOP/s (model FLOPs only:
  `train_flops_per_token * tokens/s`) and the fraction of the peak. Machines are noisy (on a shared
  CPU the same GEMM swings 2x within minutes), so the peak (measured after training) takes the best
  of two measurements of its top shapes, and one GEMM is also timed right before every step: `vs
  probe` is the median of step speed over that probe's speed, a fraction that is robust to the
  machine changing pace during the run.
- **memory**: peak resident memory while training (CPU: the process's VmHWM, restarted just before
  the warm-up; `ru_maxrss` where that cannot be restarted) or `torch.cuda.max_memory_allocated` (CUDA).
- **generation**: tokens/s of `Infer2.stream` (the chat path: prefill then one token per call with
  carried state) at that config.
- **naive reference**: the original one-token-per-pass approach -- for each position run the model on
  the whole prefix and keep only the last logits -- timed at evenly spread positions, against one
  whole-sequence forward pass of the same batch: the speed-up of the whole-sequence path.

`--batch auto` fills a GPU: two probe steps (memory grows linearly with the batch) pick the largest
power-of-two multiple of the config's batch whose step fits in FILL_FRACTION of the device's memory; on
a CPU it keeps the config's batch (speed hardly depends on it there).

Each config is measured in a fresh child process, so its memory peak is its own and one config's
allocator state does not colour the next. `--scaling` instead measures training tokens/s and memory
while context length, neurons and batch each take three sizes around the base config.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from babyllm.config import Config, load_config
from babyllm.errors import BabyError

DEFAULT_CONFIGS = ("cpu", "default")
PROMPT = "The morning was quiet, and the kettle had just begun to sing when"


# --- settings: how long each measurement may take ---------------------------------------------------


def budgets(quick: bool, cuda: bool) -> dict[str, float]:
    """Time boxes (seconds) and counts; `quick` is for tests (a couple of steps, tiny time boxes)."""
    if quick:
        return dict(gemm_s=0.02, gemm_flops=2e8, warmup_s=0.0, min_warmup=1, steps=2, min_steps=2, train_s=2.0,
                    gen_tokens=8, naive_positions=2, naive_s=2.0)
    # Two warm-up steps at least: the allocator reaches its steady state (no more page faults) in the second.
    return dict(gemm_s=0.25, gemm_flops=4e12 if cuda else 1e11, warmup_s=1.0, min_warmup=2, steps=8, min_steps=2,
                train_s=20.0, gen_tokens=64, naive_positions=4, naive_s=8.0)


# --- machine --------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                            "threads": torch.get_num_threads(), "cpu": platform.processor() or platform.machine()}
    flags: set[str] = set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                info["cpu"] = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    info["cpu_cores"] = os.cpu_count()
    info["bf16_matmul"] = bool(flags & {"avx512_bf16", "amx_bf16"})
    info["cpu_bf16_flags"] = sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile", "avx512f", "avx2"})
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
    return info


# --- timing helpers ---------------------------------------------------------------------------------


def _sync_fn(device: Any) -> Callable[[], None]:
    import torch

    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def _best_time(fn: Callable[[], Any], sync: Callable[[], None], budget_s: float, min_reps: int = 2,
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


# --- matmul peak --------------------------------------------------------------------------------------


def gemm_shapes(cfg: Config) -> list[dict[str, Any]]:
    """The big GEMMs of one training step: name, (m, k, n) as run, operand layouts, FLOPs per token.

    Activations are neuron-major inside the model (see babyllm.model), so the Neurons layer runs
    W @ x.T forward and the sequence mixes run [B*N, T] x [T, T] (windows once, each memory twice);
    the Logits layer runs x @ W.T on tokens x neurons. Backward: dy @ W and dy.T @ x for the layers,
    dY @ M for the mixes and X.T @ dY for the windows' mix. Left out: the memories' low-rank
    projections (rank-thin, a few per cent of the FLOPs).
    """
    m, t = cfg.model, cfg.train
    T, B, D, N, V = m.context, t.batch, m.embed, m.neurons, m.vocab
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


def _capped(shape: dict[str, Any], max_flops: float) -> tuple[int, int, int]:
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


def _gemm_fn(shape: dict[str, Any], dims: tuple[int, int, int], dtype: Any, device: Any) -> Callable[[], Any]:
    import torch

    from babyllm import gemm

    m, k, n = dims
    # Stored as the model stores them: "tr" operands are transposed views of contiguous tensors; run
    # through the model's own matmul (oneDNN for fp32 on CPU where that is faster than torch.mm).
    a = torch.randn(m, k, device=device).to(dtype) if shape["a"] == "row" else torch.randn(k, m, device=device).to(dtype).t()
    b = torch.randn(k, n, device=device).to(dtype) if shape["b"] == "row" else torch.randn(n, k, device=device).to(dtype).t()
    return lambda: gemm.mm(a, b)


def measure_peak(cfg: Config, device: Any, dtypes: tuple[str, ...], budget: dict[str, float],
                 only: list[str] | None = None) -> dict[str, Any]:
    """GFLOP/s of each GEMM shape per dtype; best shape ('peak') and the FLOP-weighted mix."""
    import torch

    sync = _sync_fn(device)
    result: dict[str, Any] = {}
    for dt_name in dtypes:
        dtype = torch.bfloat16 if dt_name == "bf16" else torch.float32
        shapes: dict[str, Any] = {}
        for shape in gemm_shapes(cfg):
            if only is not None and shape["name"] not in only:
                continue
            dims = _capped(shape, budget["gemm_flops"])
            fn = _gemm_fn(shape, dims, dtype, device)
            t = _best_time(fn, sync, budget["gemm_s"])
            shapes[shape["name"]] = dict(gflops=2.0 * dims[0] * dims[1] * dims[2] / t / 1e9, m=dims[0], k=dims[1],
                                         n=dims[2], full=[shape["m"], shape["k"], shape["n"]],
                                         flops_per_token=shape["flops_per_token"])
            del fn
        result[dt_name] = _summarise_peak(shapes)
    return result


def compare_fp32_paths(cfg: Config, budget: dict[str, float]) -> dict[str, Any]:
    """The logits forward GEMM in fp32 on CPU: through the model's matmul path and through plain torch.mm.

    PyTorch's fp32 matmul on CPU is MKL, which on some CPUs runs well below what oneDNN reaches;
    babyllm.gemm picks oneDNN where it is faster. This row shows the choice and what it gains.
    """
    import torch

    from babyllm import gemm

    shape = next(s for s in gemm_shapes(cfg) if s["name"] == "logits fwd")
    m, k, n = _capped(shape, budget["gemm_flops"])
    x, w = torch.randn(m, k), torch.randn(n, k)
    flops = 2.0 * m * k * n
    out: dict[str, Any] = dict(path=gemm.path(), shape="logits fwd")
    for name, fn in (("model_gflops", gemm.mm), ("torch_mm_gflops", torch.mm)):
        out[name] = flops / _best_time(lambda fn=fn: fn(x, w.t()), lambda: None, budget["gemm_s"]) / 1e9
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


# --- one config: training, memory, generation, naive reference -----------------------------------------


def _status_mb(field: str) -> float | None:
    """A memory line of /proc/self/status (Linux) in MB, e.g. VmRSS (now) or VmHWM (peak)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _rss_mb() -> float:
    return _status_mb("VmRSS") or 0.0


def _peak_rss_mb() -> float:
    """Peak RSS since the last _reset_peak_rss (Linux), else of the whole process."""
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    import resource

    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / (1024 * 1024) if sys.platform == "darwin" else maxrss / 1024


def _page_faults() -> int:
    """Minor page faults of this process so far (memory handed back to the OS and touched again)."""
    try:
        import resource
    except ImportError:  # not Unix
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _reset_peak_rss() -> bool:
    """Restart the peak-RSS count from now (Linux: /proc/self/clear_refs), so training is measured alone."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def measure_config(spec: dict[str, Any]) -> dict[str, Any]:
    """Everything for one config (run in a child process by `main`)."""
    from babyllm.runtime import tune_malloc

    tune_malloc()
    cfg = load_config(spec["config"], spec["overrides"])
    cfg.train.device = spec["device"]
    if spec.get("dtype"):
        cfg.train.dtype = spec["dtype"]
    cfg.train.compile = bool(spec.get("compile"))
    budget = budgets(spec.get("quick", False), cuda=spec["device"].startswith("cuda"))
    parts = spec.get("parts", ["peak", "train", "naive", "gen"])
    baseline_mb = _rss_mb()

    from babyllm.runtime import pick_device
    from babyllm.tutor import Tutor

    filled = False
    device = pick_device(cfg.train.device)
    if spec.get("fill") and device.type == "cuda":
        import torch

        total = torch.cuda.get_device_properties(device).total_memory
        cfg.train.batch = fill_batch(lambda b: _cuda_step_bytes(cfg, b), cfg.train.batch, FILL_FRACTION * total)
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
    cuda = device.type == "cuda"
    sync = _sync_fn(device)
    model = tutor.model
    B, T = cfg.train.batch, cfg.model.context
    flops_per_token = model.train_flops_per_token()
    dtype = tutor.dtype
    out: dict[str, Any] = dict(config=cfg.name, device=str(device), dtype=dtype, compile=cfg.train.compile,
                               batch=B, context=T, neurons=cfg.model.neurons, embed=cfg.model.embed,
                               vocab=cfg.model.vocab, params=sum(model.param_counts().values()),
                               train_flops_per_token=flops_per_token, threads=torch.get_num_threads())
    if "train" in parts:
        # The probe: the logits forward GEMM (the largest share of the FLOPs), timed before each step. A
        # fixed shape, because cut down to probe size some other shapes change kernel (see babyllm.gemm).
        probe_name = "logits fwd"
        probe_shape = next(s for s in gemm_shapes(cfg) if s["name"] == probe_name)
        probe_dims = _capped(probe_shape, budget["gemm_flops"] / 4)
        probe_fn = _gemm_fn(probe_shape, probe_dims, torch.bfloat16 if dtype == "bf16" else torch.float32, device)
        probe_flops = 2.0 * probe_dims[0] * probe_dims[1] * probe_dims[2]

        if cuda:
            torch.cuda.reset_peak_memory_stats(device)
        rss_reset = not cuda and _reset_peak_rss()
        # Warm-up: the first steps allocate, fill caches (and compile, if asked).
        start = time.perf_counter()
        warm = 0
        while warm < budget["min_warmup"] or (warm < 3 and time.perf_counter() - start < budget["warmup_s"]):
            tutor.step()
            warm += 1
        sync()
        steps: list[float] = []
        fractions: list[float] = []
        faults = _page_faults()
        start = time.perf_counter()
        while len(steps) < budget["min_steps"] or (len(steps) < budget["steps"]
                                                   and time.perf_counter() - start < budget["train_s"]):
            t_probe = _best_time(probe_fn, sync, 0.0, min_reps=1)
            sync()
            t0 = time.perf_counter()
            stats = tutor.step()
            sync()
            dt = time.perf_counter() - t0
            steps.append(dt)
            fractions.append((flops_per_token * B * T / dt) / (probe_flops / t_probe))
        if not math.isfinite(stats.get("loss", math.nan)):
            raise BabyError(f"{cfg.name}: training produced a non-finite loss during the benchmark")
        faults_per_step = (_page_faults() - faults) / len(steps)
        med = statistics.median(steps)
        tokens_per_s = B * T / med
        achieved = flops_per_token * tokens_per_s / 1e9
        out["train"] = dict(tokens_per_s=tokens_per_s, ms_per_step=med * 1000, steps=len(steps), warmup_steps=warm,
                            step_ms=[s * 1000 for s in steps], gflops=achieved,
                            fraction_vs_probe=statistics.median(fractions), probe=probe_name,
                            loss=float(stats["loss"]), page_faults_per_step=faults_per_step)
        if cuda:
            out["memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
            out["memory_kind"] = "cuda max_memory_allocated"
        else:
            out["memory_mb"] = _peak_rss_mb()
            out["memory_kind"] = "peak RSS while training" if rss_reset else "peak RSS of the process"
            out["baseline_rss_mb"] = baseline_mb
        del probe_fn

    # The peak after training, so that its GEMM buffers (kept by the never-trimmed heap) do not colour
    # the training's memory figure; its two best shapes are measured twice (the machine's best moment).
    if "peak" in parts:
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

    batch = tutor.librarian.batch(B).to(device)
    ids = batch[:, :-1]
    if "naive" in parts:
        out["naive"] = measure_naive(model, ids, device, dtype, budget)
    if "gen" in parts:
        out["generation"] = measure_generation(tutor, cfg, budget)
    return out


def measure_naive(model: Any, ids: Any, device: Any, dtype: str, budget: dict[str, float]) -> dict[str, Any]:
    """Whole-sequence forward vs the one-token-per-pass reference (the prefix rerun for every position)."""
    import torch

    from babyllm.runtime import autocast

    sync = _sync_fn(device)
    B, T = ids.shape
    with torch.inference_mode(), autocast(device, dtype):
        # Training has already run these shapes: an untimed call only where calls are cheap.
        t_whole = _best_time(lambda: model.run(ids).logits, sync, 0.0, min_reps=1, warm=False)
        cheap = t_whole < 0.05 * budget["naive_s"]
        if cheap:
            t_whole = min(t_whole, _best_time(lambda: model.run(ids).logits, sync, 0.0, min_reps=2))
        # Positions at the middles of k equal strata of 1..T: their mean time estimates the mean over all T.
        k = int(budget["naive_positions"])
        while k > 2 and t_whole * k / 2 > budget["naive_s"]:
            k -= 1
        positions = sorted({max(1, min(T, round((j + 0.5) * T / k))) for j in range(k)})
        per_position = []
        for p in positions:
            prefix = ids[:, :p]
            if cheap:
                model.run(prefix).logits[:, -1]  # untimed: each new length is a new shape
            sync()
            t0 = time.perf_counter()
            model.run(prefix).logits[:, -1]
            sync()
            per_position.append(time.perf_counter() - t0)
    whole_tps = B * T / t_whole
    naive_tps = B / statistics.mean(per_position)
    return dict(whole_tokens_per_s=whole_tps, naive_tokens_per_s=naive_tps, speedup=whole_tps / naive_tps,
                positions=positions, position_ms=[t * 1000 for t in per_position], batch=B, context=T)


def measure_generation(tutor: Any, cfg: Config, budget: dict[str, float]) -> dict[str, Any]:
    """Infer2 chat speed at this config: tokens sampled per second (prompt prefill included)."""
    from babyllm.infer2 import Infer2, Settings

    model = tutor.model
    calls = [0]
    hook = model.logits.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        settings = Settings.from_config(cfg.chat)
        settings.seed = 0
        settings.max_tokens = 4
        for _ in Infer2(model, tutor.librarian.tokenizer, settings).stream(PROMPT):  # warm-up
            pass
        settings.max_tokens = int(budget["gen_tokens"])
        chat = Infer2(model, tutor.librarian.tokenizer, settings)
        calls[0] = 0
        t0 = time.perf_counter()
        text = "".join(chat.stream(PROMPT))
        _sync_fn(tutor.device)()
        elapsed = time.perf_counter() - t0
    finally:
        hook.remove()
    tokens = calls[0]  # one forward per sampled token (the prompt's prefill gives the first)
    return dict(tokens_per_s=tokens / elapsed, tokens=tokens, seconds=elapsed, chars=len(text))


# --- child processes --------------------------------------------------------------------------------


def _child(spec_json: str) -> int:
    """Entry point of a measuring child: one JSON line on stdout."""
    try:
        result = measure_config(json.loads(spec_json))
    except BabyError as e:
        print(json.dumps({"error": str(e)}))
        return 0
    print(json.dumps(result))
    return 0


def run_child(spec: dict[str, Any]) -> dict[str, Any]:
    code = "import sys; from babyllm.bench import _child; sys.exit(_child(sys.argv[1]))"
    proc = subprocess.run([sys.executable, "-c", code, json.dumps(spec)], capture_output=True, text=True)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-8:])
        raise BabyError(f"bench of config '{spec['config']}' failed (exit {proc.returncode}):\n{tail}")
    result = json.loads(lines[-1])
    if "error" in result:
        raise BabyError(result["error"])
    return result


# --- output -------------------------------------------------------------------------------------------


def _fmt(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def _console() -> Any:
    """Rich console; piped output gets room for the whole table instead of the default 80 columns."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=120)


def render(machine: dict[str, Any], results: list[dict[str, Any]]) -> None:
    from rich.table import Table

    console = _console()
    console.print(f"[bold]babyllm bench[/] on {machine['cpu']} ({machine['cpu_cores']} cores, {machine['threads']} threads"
                  f"{', ' + machine['gpu'] if 'gpu' in machine else ''}; bf16 matmul: "
                  f"{'yes' if machine['bf16_matmul'] else 'no'} {','.join(machine['cpu_bf16_flags'])}), torch {machine['torch']}")
    table = Table(show_header=True, header_style="bold")
    table.add_column("measure", no_wrap=True)
    for r in results:
        table.add_column(f"{r['config']} {r['dtype']}{' compiled' if r['compile'] else ''}", justify="right", no_wrap=True)
    rows: list[tuple[str, Callable[[dict[str, Any]], str]]] = [
        ("device", lambda r: r["device"]),
        ("batch x context", lambda r: f"{r['batch']} x {r['context']}" + (" (auto)" if r.get("batch_filled") else "")),
        ("params", lambda r: _fmt(r["params"])),
        ("train MFLOP/token", lambda r: _fmt(r["train_flops_per_token"] / 1e6, 1)),
        ("peak fp32 GFLOP/s", lambda r: _peak(r, "fp32")),
        ("peak bf16 GFLOP/s", lambda r: _peak(r, "bf16")),
        ("fp32 matmul (vs torch.mm)", lambda r: f"{r['fp32_paths']['path']} {_fmt(r['fp32_paths']['model_gflops'])} "
         f"({_fmt(r['fp32_paths']['torch_mm_gflops'])})" if "fp32_paths" in r else "-"),
        ("gemm mix GFLOP/s", lambda r: _fmt(r["peak"][r["dtype"]]["mix_gflops"]) if "peak" in r else "-"),
        ("train tokens/s", lambda r: _fmt(r["train"]["tokens_per_s"])),
        ("ms/step (median)", lambda r: f"{_fmt(r['train']['ms_per_step'], 1)} ({r['train']['steps']} steps)"),
        ("achieved GFLOP/s", lambda r: _fmt(r["train"]["gflops"], 1)),
        ("of peak", lambda r: f"{r['train']['fraction_of_peak']:.0%}" if "fraction_of_peak" in r["train"] else "-"),
        ("of gemm mix", lambda r: f"{r['train']['fraction_of_mix']:.0%}" if "fraction_of_mix" in r["train"] else "-"),
        ("vs probe (median)", lambda r: f"{r['train']['fraction_vs_probe']:.0%}"),
        ("memory MB", lambda r: f"{_fmt(r['memory_mb'])}"),
        ("page faults/step", lambda r: _fmt(r["train"]["page_faults_per_step"])),
        ("chat tokens/s", lambda r: _fmt(r["generation"]["tokens_per_s"], 1) if "generation" in r else "-"),
        ("whole-seq fwd tokens/s", lambda r: _fmt(r["naive"]["whole_tokens_per_s"]) if "naive" in r else "-"),
        ("one-token-per-pass tokens/s", lambda r: _fmt(r["naive"]["naive_tokens_per_s"], 1) if "naive" in r else "-"),
        ("speed-up (whole-seq)", lambda r: f"{r['naive']['speedup']:.0f}x" if "naive" in r else "-"),
    ]
    for label, cell in rows:
        table.add_row(label, *[_safe(cell, r) for r in results])
    console.print(table)
    console.print("peak: best of the model's own GEMM shapes in this run; gemm mix: those GEMMs weighted by their "
                  "share of a step's FLOPs; vs probe: step speed over a GEMM timed just before each step "
                  "(robust to a noisy machine); fp32 matmul: the kernel the model uses for fp32 on CPU and its "
                  "GFLOP/s on the logits GEMM (plain torch.mm in brackets); memory: " + (results[0].get("memory_kind", "") if results else ""))


def _peak(r: dict[str, Any], dt: str) -> str:
    if "peak" not in r:
        return "-"
    p = r["peak"][dt]
    return f"{_fmt(p['peak_gflops'])} ({p['peak_shape']})"


def _safe(cell: Callable[[dict[str, Any]], str], r: dict[str, Any]) -> str:
    try:
        return cell(r)
    except (KeyError, TypeError):
        return "-"


def render_scaling(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    table = Table(title="scaling: real Tutor step (B batch, T context, N neurons)", header_style="bold")
    for col in ("vary", "B", "T", "N", "MFLOP/tok", "tok/s", "ms/step", "GFLOP/s", "vs probe", "mem MB"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in rows:
        t = r["train"]
        table.add_row(r["vary"], str(r["batch"]), str(r["context"]), f"{r['neurons']:,}",
                      _fmt(r["train_flops_per_token"] / 1e6, 1), _fmt(t["tokens_per_s"]), _fmt(t["ms_per_step"], 1),
                      _fmt(t["gflops"], 1), f"{t['fraction_vs_probe']:.0%}", _fmt(r["memory_mb"]))
    _console().print(table)


# --- command ------------------------------------------------------------------------------------------


def _specs(args: argparse.Namespace) -> list[dict[str, Any]]:
    names = list(args.config or DEFAULT_CONFIGS)
    batch = _batch_arg(getattr(args, "batch", None))
    overrides = list(args.overrides) + ([f"train.batch={batch}"] if isinstance(batch, int) else [])
    specs = []
    for name in names:
        cfg = load_config(name, overrides)  # errors in configs or --set surface here, before any child
        specs.append(dict(config=name, overrides=overrides, device=args.device or "auto", fill=batch == "auto",
                          dtype=getattr(args, "dtype", None) or cfg.train.dtype, compile=bool(getattr(args, "compile", False)),
                          quick=bool(getattr(args, "quick", False))))
    return specs


def _batch_arg(value: str | None) -> int | str | None:
    """--batch: None (the config's), a positive whole number, or 'auto'."""
    if value is None:
        return None
    if value.strip().lower() == "auto":
        return "auto"
    try:
        batch = int(value)
    except ValueError:
        batch = 0
    if batch < 1:
        raise BabyError(f"--batch {value!r}: give a whole number of sequences (e.g. 64) or auto")
    return batch


# --batch auto on a GPU: the share of the device's memory a training step may use (the rest: headroom
# for torch.compile's buffers and the allocator's fragmentation), and the largest batch tried.
FILL_FRACTION = 0.6
FILL_CAP = 1024


def fill_batch(step_bytes: Callable[[int], float], base: int, budget_bytes: float, cap: int = FILL_CAP) -> int:
    """Largest base * 2^k <= cap whose step fits budget_bytes, from steps measured at base and 2 * base.

    A step's memory is fixed (weights, optimizer state) plus a part proportional to the batch
    (activations), so two probes give the line. A probe that runs out of memory raises MemoryError.
    """
    first = step_bytes(base)
    if first > budget_bytes or 2 * base > cap:
        return base
    try:
        second = step_bytes(2 * base)
    except MemoryError:
        return base
    per_sequence = max((second - first) / base, 1.0)
    fixed = first - per_sequence * base
    batch = base
    while 2 * batch <= cap and fixed + per_sequence * 2 * batch <= budget_bytes:
        batch *= 2
    return batch


def _cuda_step_bytes(cfg: Config, batch: int) -> float:
    """Peak CUDA memory of training steps at this batch (a throwaway Tutor; no compile while probing)."""
    import gc

    import torch

    from babyllm.tutor import Tutor

    probe = copy.deepcopy(cfg)
    probe.train.batch = batch
    probe.train.compile = False
    tutor = None
    try:
        with tempfile.TemporaryDirectory(prefix="babyllm-bench-probe-") as tmp:
            tutor = Tutor(probe, Path(tmp) / "run", say=lambda _m: None)
            try:
                torch.cuda.reset_peak_memory_stats(tutor.device)
                for _ in range(2):
                    tutor.step()
                torch.cuda.synchronize(tutor.device)
                return float(torch.cuda.max_memory_allocated(tutor.device))
            finally:
                tutor.close()
    except torch.cuda.OutOfMemoryError as e:
        raise MemoryError(f"batch {batch}: {e}") from None
    finally:
        tutor = None  # (also in the frame an exception's traceback keeps) so its tensors can go
        gc.collect()
        torch.cuda.empty_cache()


def scaling_specs(base: dict[str, Any]) -> list[dict[str, Any]]:
    """Three sizes each of context, neurons and batch around the base config (the others at base)."""
    cfg = load_config(base["config"], base["overrides"])
    m, t = cfg.model, cfg.train
    out = []
    for key, base_value, vary in (("model.context", m.context, "T"), ("model.neurons", m.neurons, "N"),
                                  ("train.batch", t.batch, "B")):
        for factor in (0.5, 1, 2):
            value = max(2, int(base_value * factor))
            overrides = list(base["overrides"]) + [f"{key}={value}"]
            if key == "model.context":  # windows must fit the context
                overrides.append(f"model.windows={[min(w, value) for w in m.windows]}")
            out.append(dict(base, overrides=overrides, parts=["train"], vary=f"{vary} x{factor:g}"))
    return out


def main(args: argparse.Namespace) -> int:
    from babyllm.runtime import pick_device

    pick_device(args.device or "auto")  # an unavailable device is a clear error before anything runs
    specs = _specs(args)
    machine = machine_info()
    if getattr(args, "scaling", False):
        rows = []
        for spec in scaling_specs(specs[0]):
            row = run_child(spec)
            row["vary"] = spec["vary"]
            rows.append(row)
        if args.json:
            print(json.dumps({"machine": machine, "scaling": rows}, indent=2))
        else:
            render_scaling(rows)
        return 0
    results = [run_child(spec) for spec in specs]
    if args.json:
        print(json.dumps({"machine": machine, "results": results}, indent=2))
    else:
        render(machine, results)
    return 0
