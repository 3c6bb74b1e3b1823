"""The GPU paths, for a machine with CUDA (skipped elsewhere): the model matches the CPU, the Tutor
trains in bf16 with fused AdamW and with torch.compile, a GPU save loads on a CPU, chat runs on the
GPU, and `babyllm bench --batch auto` fills the device.

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
        losses = train(tutor, 8)
    finally:
        tutor.close()
    assert all(math.isfinite(x) for x in losses) and tutor.step_count == 8


@pytest.mark.slow
def test_tutor_trains_compiled(make_cfg, tmp_path):
    tutor = Tutor(make_cfg("train.compile=true", "train.dtype=bf16"), tmp_path / "run", say=lambda _m: None)
    try:
        losses = train(tutor, 4)
    finally:
        tutor.close()
    assert all(math.isfinite(x) for x in losses)


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
    assert r["train"]["mfu_bf16"] > 0 and r["train"]["tokens_per_s"] > 0
