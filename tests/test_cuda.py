"""The GPU paths, for a machine with CUDA (skipped elsewhere): the model matches the CPU, the Tutor
trains in bf16 with fused AdamW and with torch.compile (its gradients those of the eager step), auto
precision and TF32, gradient accumulation, the automatic batch, overlapped steps, no graph break, MFU
against the datasheet, a GPU save loads on a CPU, chat runs on the GPU, and `babyllm bench --batch auto`
fills the device.

`BABYLLM_TEST_DEVICE=cpu python -m pytest tests/test_cuda.py` runs the same tests on the CPU (to
check the tests themselves where no GPU is at hand).
"""

import argparse
import json
import math
import os

import pytest
import torch

from babyllm.commands import bench
from babyllm.config import load_config
from babyllm.infer2 import Infer2
from babyllm.model.network import BabyLLM, next_token_loss
from babyllm.school.soul import load_for_inference
from babyllm.school.tutor import Tutor

from memories import stir

DEVICE = os.environ.get("BABYLLM_TEST_DEVICE", "cuda")

pytestmark = pytest.mark.skipif(DEVICE.startswith("cuda") and not torch.cuda.is_available(),
                                reason="no CUDA device")


@pytest.fixture
def make_cfg(corpus, cache):
    def make(*overrides):
        cfg = load_config("tiny", [f"train.device={DEVICE}", *overrides])
        cfg.data.corpus = str(corpus)
        cfg.data.cache_dir = str(cache)
        return cfg
    return make


def train(tutor: Tutor, steps: int) -> list[float]:
    return [tutor.step()["loss"] for _ in range(steps)]


def test_model_on_the_device_matches_the_cpu():
    cfg = load_config("tiny")
    torch.manual_seed(0)
    cpu_model = BabyLLM(cfg.model)
    stir(cpu_model.memory1, cpu_model.memory2)
    dev_model = BabyLLM(cfg.model).to(DEVICE)
    dev_model.load_state_dict(cpu_model.state_dict())
    ids = torch.randint(0, cfg.model.vocab, (3, cfg.model.context + 1))
    losses = []
    for model, x in ((cpu_model, ids), (dev_model, ids.to(DEVICE))):
        loss = next_token_loss(model(x[:, :-1]), x[:, 1:])
        loss.backward()
        losses.append(loss.item())
    assert losses[1] == pytest.approx(losses[0], rel=1e-4)
    for p_cpu, p_dev in zip(cpu_model.parameters(), dev_model.parameters(), strict=True):
        torch.testing.assert_close(p_dev.grad.cpu(), p_cpu.grad, rtol=1e-3, atol=1e-5)


def test_tutor_trains_in_bf16_with_fused_adamw(make_cfg, tmp_path):
    tutor = Tutor(make_cfg("train.dtype=bf16"), tmp_path / "run", say=lambda _m: None)
    try:
        assert tutor.device.type == torch.device(DEVICE).type
        assert tutor.optimizer.defaults.get("fused") is True
        assert tutor.stepper.resident  # a small corpus stays on the GPU: windows gathered there
        assert tutor.librarian.train_batch(2).device.type == "cuda"
        losses = train(tutor, 8)
    finally:
        tutor.close()
    assert all(math.isfinite(x) for x in losses) and tutor.step_count == 8


@pytest.mark.slow
def test_tutor_trains_compiled(make_cfg, tmp_path):
    tutor = Tutor(make_cfg("train.compile=true", "train.dtype=bf16"), tmp_path / "run", say=lambda _m: None)
    try:
        stats = [tutor.step() for _ in range(4)]
    finally:
        tutor.close()
    assert all(math.isfinite(s["loss"]) and math.isfinite(s["grad_norm"]) for s in stats)
    assert tutor.step_count == 4  # every step applied: no NaN/inf refused


@pytest.mark.slow
def test_the_compiled_gradients_are_the_eager_ones(make_cfg, tmp_path):
    """One forward and backward, compiled and eager, on the same weights and batch: the gradients agree."""
    grads = []
    for compiled in (False, True):
        with Tutor(make_cfg(f"train.compile={str(compiled).lower()}", "train.dtype=bf16"), tmp_path / f"c{compiled}",
                   say=lambda _m: None) as t:
            if not compiled:
                weights = {k: v.clone() for k, v in t.model.state_dict().items()}
                windows = t.librarian.train_batch(4).to(t.device)
            t.model.load_state_dict(weights)
            loss = t.engine.forward(windows[:, :-1], windows[:, 1:])[0]
            loss.backward()
            grads.append({n: p.grad.float().clone() for n, p in t.model.named_parameters()})
    for name, eager in grads[0].items():
        assert torch.isfinite(grads[1][name]).all(), name
        torch.testing.assert_close(grads[1][name], eager, rtol=0.05, atol=1e-3 * eager.abs().max().item() + 1e-6)


def test_auto_precision_tf32_and_mfu_on_this_device(make_cfg, tmp_path):
    from babyllm.model import peaks
    from babyllm.model.runtime import cuda_capability, cuda_name

    with Tutor(make_cfg("train.dtype=auto"), tmp_path / "run", say=lambda _m: None) as t:
        stats = t.step()
        if t.device.type == "cuda":
            assert t.dtype == ("bf16" if cuda_capability(t.device) >= (8, 0) else "fp32")
            known = peaks.datasheet(cuda_name(t.device)) is not None
            assert t.peak.source.startswith("datasheet" if known else "measured")
    assert 0 < stats["mfu"] < 1
    if DEVICE.startswith("cuda"):
        with Tutor(make_cfg("train.dtype=fp32"), tmp_path / "fp32", say=lambda _m: None) as t:
            assert torch.backends.cuda.matmul.allow_tf32 == (cuda_capability(t.device) >= (8, 0))
        with Tutor(make_cfg("train.dtype=fp32", "train.tf32=false"), tmp_path / "exact", say=lambda _m: None):
            assert torch.backends.cuda.matmul.allow_tf32 is False


def test_accumulation_and_overlap_train_like_one_big_batch_on_the_device(make_cfg, tmp_path):
    def run(name, *sets):
        with Tutor(make_cfg("train.dtype=fp32", "train.tf32=false", "model.dropout=0", *sets), tmp_path / name,
                   say=lambda _m: None) as t:
            out = []
            while len(out) < 6:
                out += t.stepper.step(overlap=len(out) < 4)
            return [s["loss"] for s in out + t.stepper.drain()]

    big = run("big", "train.batch=8")
    assert run("small", "train.batch=2", "train.accumulate=4") == pytest.approx(big, rel=1e-4)


def test_auto_batch_fills_the_device_within_the_corpus(make_cfg, tmp_path):
    with Tutor(make_cfg("train.batch=auto"), tmp_path / "run", say=lambda _m: None) as t:
        assert isinstance(t.cfg.train.batch, int) and t.cfg.train.batch >= 1
        assert t.global_batch == t.cfg.train.batch


def test_the_step_compiles_without_a_graph_break_on_the_device(make_cfg, tmp_path):
    import torch._dynamo

    with Tutor(make_cfg("model.memory_mlp=true", "model.window_groups=4", "model.token_shift=true",
                        "model.activation=relu2", "train.optimizer=muon", "train.dtype=bf16"), tmp_path / "run",
               say=lambda _m: None) as t:
        windows = t.librarian.train_batch(4).to(t.device)
        torch._dynamo.reset()
        explained = torch._dynamo.explain(t.engine._forward)(windows[:, :-1], windows[:, 1:])
    assert (explained.graph_count, explained.graph_break_count) == (1, 0), explained.break_reasons


def test_a_save_from_the_device_loads_on_the_cpu_and_chats_on_the_device(make_cfg, tmp_path):
    tutor = Tutor(make_cfg(), tmp_path / "run", say=lambda _m: None)
    try:
        train(tutor, 3)
        assert tutor.save() is not None
    finally:
        tutor.close()
    _cfg, model, tokenizer, step = load_for_inference(tmp_path / "run", device="cpu")
    assert step == 3 and next(model.parameters()).device.type == "cpu"
    chat = Infer2(model.to(DEVICE), tokenizer)
    reply = chat.reply("the cat")
    assert isinstance(reply, str)


def test_bench_fills_the_device(tmp_path, capsys):
    args = argparse.Namespace(config=["tiny"], overrides=[f"data.cache_dir={json.dumps(str(tmp_path / 'cache'))}"],
                              device=DEVICE, dtype="bf16", compile=False, json=True, quick=True, scaling=False,
                              batch="auto")
    assert bench.main(args) == 0
    (r,) = json.loads(capsys.readouterr().out)["results"]
    cfg = load_config("tiny")
    if DEVICE.startswith("cuda"):
        assert r["batch_filled"] is True and r["batch"] >= cfg.train.batch
        assert r["memory_kind"] == "cuda max_memory_allocated"
        assert r["datasheet"]["gpu"] and (r["datasheet"]["tflops"] is None or r["train"]["mfu_datasheet"] > 0)
    assert r["train"]["mfu_bf16"] > 0 and r["train"]["tokens_per_s"] > 0
