"""`babyllm bench` end to end on the tiny config: it runs, and its JSON has every number, all positive.

No timing assertions: speed is measured by the benchmark, never asserted in tests.
"""

import argparse
import json

import pytest

from babyllm import BabyLLM
from babyllm.commands import bench
from babyllm.commands.bench import command
from babyllm.commands.bench.measure import measure_config
from babyllm.commands.bench.peak import capped, gemm_shapes
from babyllm.config import load_config
from babyllm.errors import BabyError
from babyllm.model.network import Neurons
from babyllm.school.batching import cuda_step_bytes, fill_batch


def args(tmp_path, **kw):
    base = dict(config=["tiny"], overrides=[f"data.cache_dir={json.dumps(str(tmp_path / 'cache'))}"], device="cpu",
                dtype=None, compile=False, json=True, quick=True, scaling=False, batch=None)
    base.update(kw)
    return argparse.Namespace(**base)


def positive(x):
    return isinstance(x, (int, float)) and x > 0


def test_bench_json_has_every_measure(tmp_path, capfd):
    assert bench.main(args(tmp_path)) == 0
    captured = capfd.readouterr()
    out = json.loads(captured.out)
    # progress on stderr (also with --json), part by part, from the measuring child
    said = [line for line in captured.err.splitlines() if line.startswith("bench: tiny: ")]
    assert [s for s in ("training (", "matmul peak", "one-token-per-pass", "chat generation", "done")
            if not any(s in line for line in said)] == []
    assert "datasheet" not in out["results"][0]  # a CPU: judged against the peak it measured
    assert out["machine"]["cpu_cores"] >= 1
    (r,) = out["results"]
    assert r["config"] == "tiny" and r["device"] == "cpu" and r["dtype"] == "fp32"
    assert positive(r["train_flops_per_token"]) and positive(r["memory_mb"])
    for dt in ("fp32", "bf16"):
        peak = r["peak"][dt]
        assert positive(peak["peak_gflops"]) and positive(peak["mix_gflops"])
        assert peak["peak_shape"] in peak["shapes"]
        assert {"logits fwd", "logits bwd dx", "logits bwd dw", "neurons fwd", "mix fwd"} <= set(peak["shapes"])
    paths = r["fp32_paths"]  # the model's fp32 CPU matmul against plain torch.mm
    assert paths["path"] in ("oneDNN", "torch")
    assert positive(paths["model_gflops"]) and positive(paths["torch_mm_gflops"])
    t = r["train"]
    for key in ("tokens_per_s", "ms_per_step", "gflops", "fraction_of_peak", "fraction_of_mix", "fraction_vs_probe",
                "mfu_bf16", "loss"):
        assert positive(t[key]), key
    assert t["steps"] >= 2
    assert t["page_faults_per_step"] >= 0
    for key in ("whole_tokens_per_s", "naive_tokens_per_s", "speedup"):
        assert positive(r["naive"][key]), key
    assert positive(r["generation"]["tokens_per_s"]) and r["generation"]["tokens"] >= 1


def test_bench_table_bf16(tmp_path, capsys):
    assert bench.main(args(tmp_path, json=False, dtype="bf16")) == 0
    text = capsys.readouterr().out
    for label in ("train tokens/s", "of peak", "chat tokens/s", "speed-up", "memory MB", "page faults/step",
                  "tiny bf16"):
        assert label in text


def test_bench_scaling_rows(tmp_path, capsys, monkeypatch):
    # In-process instead of nine child processes, to keep the test quick.
    monkeypatch.setattr(command, "run_child", measure_config)
    assert bench.main(args(tmp_path, scaling=True)) == 0
    rows = json.loads(capsys.readouterr().out)["scaling"]
    assert len(rows) == 9
    assert {r["vary"].split()[0] for r in rows} == {"T", "N", "B"}
    for r in rows:
        assert positive(r["train"]["tokens_per_s"]) and positive(r["memory_mb"])


def test_scaling_specs_vary_one_thing_at_a_time():
    base = dict(config="cpu", overrides=[], device="cpu", dtype="fp32", compile=False, quick=True)
    cfg = load_config("cpu")
    specs = command.scaling_specs(base)
    contexts = [load_config("cpu", s["overrides"]).model.context for s in specs[:3]]
    assert contexts == [cfg.model.context // 2, cfg.model.context, cfg.model.context * 2]


def test_gemm_shapes_cover_the_step():
    cfg = load_config("cpu")
    shapes = gemm_shapes(cfg)
    rows = cfg.train.batch * cfg.model.context
    fwd = {s["name"]: s for s in shapes}["logits fwd"]
    assert (fwd["m"], fwd["k"], fwd["n"]) == (rows, cfg.model.neurons, cfg.model.vocab)
    # Every FLOP of the step is in a listed shape except the thin ones: the memories' low-rank projections and
    # the token shift's rank-16 pair
    model = BabyLLM(cfg.model)
    c = cfg.model
    low_rank = 2 * (2 * c.neurons * c.memory_rank + (0 if c.memory_mlp else c.context * c.memory_rank))
    shift = 2 * c.embed * Neurons.SHIFT_RANK if c.token_shift else 0
    assert c.token_shift  # (cpu.toml has it: the exception is exercised)
    assert sum(s["flops_per_token"] for s in shapes) == model.train_flops_per_token() - 6 * (low_rank + shift)
    dims = capped(fwd, 1e8)
    assert 2 * dims[0] * dims[1] * dims[2] <= 1e8 or dims[0] == 64


def test_bad_config_is_a_clear_error(tmp_path):
    with pytest.raises(BabyError):
        bench.main(args(tmp_path, config=["no-such-config"]))


def test_batch_option(tmp_path, capsys, monkeypatch):
    """--batch N measures at that batch; --batch auto keeps the config's on a CPU (it fills GPUs only)."""
    monkeypatch.setattr(command, "run_child", measure_config)
    tiny = load_config("tiny")
    for value, expected in (("3", 3), ("auto", tiny.train.batch)):
        assert bench.main(args(tmp_path, batch=value)) == 0
        (r,) = json.loads(capsys.readouterr().out)["results"]
        assert r["batch"] == expected and r["batch_filled"] is False


@pytest.mark.parametrize("value", ["0", "-2", "many", "1.5"])
def test_bad_batch_is_a_one_line_error(value, capsys):
    from babyllm.commands.cli import main

    assert main(["bench", "--config", "tiny", "--batch", value]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --batch {value!r}: give a whole number") and "Traceback" not in err


def test_fill_batch_uses_the_memory_line():
    """Memory = fixed + per sequence * batch: the largest power-of-two multiple that fits the budget."""
    probed = []

    def step_bytes(batch):
        probed.append(batch)
        return 1000 + 100 * batch

    assert fill_batch(step_bytes, base=16, budget_bytes=10_000) == 64  # 1000 + 100 * 64 fits, * 128 not
    assert probed == [16, 32]  # two probes only
    assert fill_batch(step_bytes, base=16, budget_bytes=1_000_000, cap=256) == 256
    assert fill_batch(step_bytes, base=16, budget_bytes=2_000) == 16  # even the base does not fit: keep it


def test_fill_batch_keeps_the_base_when_the_second_probe_runs_out():
    def step_bytes(batch):
        if batch > 16:
            raise MemoryError("CUDA out of memory")
        return 1000.0

    assert fill_batch(step_bytes, base=16, budget_bytes=1e9) == 16


def test_cuda_probe_trains_a_throwaway_model(monkeypatch, tmp_path):
    """cuda_step_bytes on the CPU with torch.cuda's memory calls faked: a model at that batch trains two steps,
    the memory is handed back, and the config passed in is left as it was."""
    import torch

    calls = []
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: calls.append("reset"))
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: calls.append("sync"))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 12345)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: calls.append("empty"))
    cfg = load_config("tiny", [f"data.cache_dir={json.dumps(str(tmp_path / 'cache'))}", "train.device=cpu"])
    assert cuda_step_bytes(cfg, torch.device("cpu"), "fp32", 3) == 12345.0
    assert calls == ["empty", "reset", "sync", "empty"] and cfg.train.batch == load_config("tiny").train.batch


@pytest.mark.parametrize("flags, says, never", [
    ({"avx2"}, "none (AVX2, no AVX512-BF16 or AMX)", "no AVX2"),  # the issue's: AVX2 without bf16
    ({"avx2", "avx512f"}, "none (AVX-512, no AVX512-BF16 or AMX)", "native"),
    (set(), "none (no AVX2, no AVX512-BF16 or AMX)", "native"),
    ({"avx2", "avx512f", "avx512_bf16"}, "native (AVX512-BF16)", "none"),
    ({"avx2", "avx512f", "amx_bf16", "amx_tile"}, "native (AMX)", "none"),
])
def test_the_benchmark_header_says_the_cpus_bf16_support_as_runtime_judges_it(monkeypatch, flags, says, never):
    """One judgement of the CPU's bf16 (model.runtime.cpu_bf16_text): the header once read "bf16 matmul: no avx2"
    on a CPU with AVX2 and no bf16 (a yes/no glued to a list of flags)."""
    from babyllm.commands.bench import machine, render
    from babyllm.model import runtime

    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset(flags))
    monkeypatch.setattr(machine, "cpu_flags", lambda: frozenset(flags))
    info = machine.machine_info()
    header = render._header(info)
    assert f"bf16 matmul: {says})" in header and never not in header.partition("bf16 matmul:")[2]
    assert info["bf16_matmul"] == says.startswith("native")
