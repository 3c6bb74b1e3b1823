"""The benchmark's tables: one column per config, and the scaling rows."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Result = dict[str, Any]


def _fmt(x: float, digits: int = 0) -> str:
    return f"{x:,.{digits}f}"


def _peak(r: Result, dt: str) -> str:
    if "peak" not in r:
        return "-"
    p = r["peak"][dt]
    return f"{_fmt(p['peak_gflops'])} ({p['peak_shape']})"


def _fp32_paths(r: Result) -> str:
    if "fp32_paths" not in r:
        return "-"
    p = r["fp32_paths"]
    return f"{p['path']} {_fmt(p['model_gflops'])} ({_fmt(p['torch_mm_gflops'])})"


def _datasheet(r: Result) -> str:
    """The MFU against the GPU's datasheet dense peak, or why there is none (a CPU, or a GPU the table lacks)."""
    sheet = r.get("datasheet")
    if sheet is None:
        return "-"
    if sheet["tflops"] is None:
        return f"{sheet['gpu']}: not in the table (see 'of peak')"
    return f"{r['train']['mfu_datasheet']:.0%} of {sheet['tflops']:,.0f} TFLOP/s {sheet['precision']}"


def _share(r: Result, key: str) -> str:
    return f"{r['train'][key]:.0%}" if key in r["train"] else "-"


# (row label, cell of one config's result); a cell whose figure is missing shows "-".
ROWS: tuple[tuple[str, Callable[[Result], str]], ...] = (
    ("device", lambda r: r["device"]),
    ("batch x context", lambda r: f"{r['batch']} x {r['context']}" + (" (auto)" if r.get("batch_filled") else "")),
    ("params", lambda r: _fmt(r["params"])),
    ("train MFLOP/token", lambda r: _fmt(r["train_flops_per_token"] / 1e6, 1)),
    ("peak fp32 GFLOP/s", lambda r: _peak(r, "fp32")),
    ("peak bf16 GFLOP/s", lambda r: _peak(r, "bf16")),
    ("fp32 matmul (vs torch.mm)", _fp32_paths),
    ("gemm mix GFLOP/s", lambda r: _fmt(r["peak"][r["dtype"]]["mix_gflops"]) if "peak" in r else "-"),
    ("train tokens/s", lambda r: _fmt(r["train"]["tokens_per_s"])),
    ("ms/step (median)", lambda r: f"{_fmt(r['train']['ms_per_step'], 1)} ({r['train']['steps']} steps)"),
    ("achieved GFLOP/s", lambda r: _fmt(r["train"]["gflops"], 1)),
    ("of peak", lambda r: _share(r, "fraction_of_peak")),
    ("of gemm mix", lambda r: _share(r, "fraction_of_mix")),
    ("MFU (datasheet peak)", lambda r: _datasheet(r)),
    ("vs probe (median)", lambda r: f"{r['train']['fraction_vs_probe']:.0%}"),
    ("memory MB", lambda r: f"{_fmt(r['memory_mb'])}"),
    ("page faults/step", lambda r: _fmt(r["train"]["page_faults_per_step"])),
    ("chat tokens/s", lambda r: _fmt(r["generation"]["tokens_per_s"], 1) if "generation" in r else "-"),
    ("whole-seq fwd tokens/s", lambda r: _fmt(r["naive"]["whole_tokens_per_s"]) if "naive" in r else "-"),
    ("one-token-per-pass tokens/s", lambda r: _fmt(r["naive"]["naive_tokens_per_s"], 1) if "naive" in r else "-"),
    ("speed-up (whole-seq)", lambda r: f"{r['naive']['speedup']:.0f}x" if "naive" in r else "-"),
)

FOOTNOTE = ("peak: best of the model's own GEMM shapes in this run; gemm mix: those GEMMs weighted by their "
            "share of a step's FLOPs; vs probe: step speed over a GEMM timed just before each step "
            "(robust to a noisy machine); fp32 matmul: the kernel the model uses for fp32 on CPU and its "
            "GFLOP/s on the logits GEMM (plain torch.mm in brackets); memory: ")


def _console() -> Any:
    """Rich console; piped output gets room for the whole table instead of the default 80 columns."""
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=120)


def _safe(cell: Callable[[Result], str], r: Result) -> str:
    try:
        return cell(r)
    except (KeyError, TypeError):
        return "-"


def _header(machine: dict[str, Any]) -> str:
    gpu = f", {machine['gpu']}" if "gpu" in machine else ""
    bf16 = machine["bf16"]  # (machine.machine_info: the words runtime uses, never pieced from flags)
    return (f"[bold]babyllm bench[/] on {machine['cpu']} ({machine['cpu_cores']} cores, {machine['threads']} threads"
            f"{gpu}; bf16 matmul: {bf16}), torch {machine['torch']}")


def render(machine: dict[str, Any], results: list[Result]) -> None:
    from rich.table import Table

    console = _console()
    console.print(_header(machine))
    table = Table(show_header=True, header_style="bold")
    table.add_column("measure", no_wrap=True)
    for r in results:
        name = f"{r['config']} {r['dtype']}{' compiled' if r['compile'] else ''}"
        table.add_column(name, justify="right", no_wrap=True)
    for label, cell in ROWS:
        table.add_row(label, *[_safe(cell, r) for r in results])
    console.print(table)
    console.print(FOOTNOTE + (results[0].get("memory_kind", "") if results else ""))


def render_scaling(rows: list[Result]) -> None:
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
