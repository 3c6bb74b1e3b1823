"""Precision per device (babyllm.model.runtime) and the datasheet peaks (babyllm.model.peaks), with faked devices."""

from __future__ import annotations

import pytest
import torch

from babyllm.model import peaks, runtime

# (name, compute capability) of the GPUs the tests pretend to have, by device index
T4 = ("Tesla T4", (7, 5))
A100 = ("NVIDIA A100-SXM4-80GB", (8, 0))
H200 = ("NVIDIA H200", (9, 0))


@pytest.fixture
def gpus(monkeypatch):
    """Fake CUDA devices: set the list, index = device number; current device 0."""
    devices: list[tuple[str, tuple[int, int]]] = []
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i=None: devices[i or 0][1])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i=None: devices[i or 0][0])
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    return devices


def test_auto_is_bf16_on_an_a100_and_fp32_with_tf32_off_switchable(gpus):
    gpus[:] = [A100]
    p = runtime.choose_precision("auto", torch.device("cuda:0"))
    assert (p.dtype, p.tf32) == ("bf16", False) and "A100" in p.reason and "8.0" in p.reason
    fp32 = runtime.choose_precision("fp32", torch.device("cuda:0"))
    assert (fp32.dtype, fp32.tf32) == ("fp32", True) and "TF32" in fp32.reason
    exact = runtime.choose_precision("fp32", torch.device("cuda:0"), tf32=False)
    assert (exact.dtype, exact.tf32) == ("fp32", False) and "exact" in exact.reason


def test_auto_is_fp32_on_a_t4_whose_bf16_would_be_emulated(gpus):
    gpus[:] = [T4]
    p = runtime.choose_precision("auto", torch.device("cuda"))
    assert (p.dtype, p.tf32) == ("fp32", False) and "7.5" in p.reason
    asked = runtime.choose_precision("bf16", torch.device("cuda"))  # asked for: kept, and said to be slow
    assert asked.dtype == "bf16" and "emulated" in asked.reason


def test_the_training_device_decides_not_device_zero(gpus):
    gpus[:] = [T4, H200]
    assert runtime.choose_precision("auto", torch.device("cuda:1")).dtype == "bf16"
    assert runtime.choose_precision("auto", torch.device("cuda:0")).dtype == "fp32"
    assert runtime.resolve_dtype("auto", torch.device("cuda:1")) == "bf16"


def test_a_cpu_without_native_bf16_trains_in_fp32(monkeypatch):
    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset({"avx2", "fma"}))  # a Zen 2
    p = runtime.choose_precision("auto", torch.device("cpu"))
    assert (p.dtype, p.tf32) == ("fp32", False)
    assert "AVX2, no AVX512-BF16 or AMX" in p.reason
    monkeypatch.setattr(runtime, "cpu_flags", lambda: frozenset({"avx2", "avx512f", "avx512_bf16"}))  # a Zen 5
    assert runtime.choose_precision("auto", torch.device("cpu")).dtype == "bf16"
    assert runtime.cpu_bf16_text() == "native (AVX512-BF16)"


def test_apply_precision_sets_torchs_tf32_switch():
    before = torch.backends.cuda.matmul.allow_tf32
    try:
        runtime.apply_precision(runtime.Precision("fp32", True, ""))
        assert torch.backends.cuda.matmul.allow_tf32
        runtime.apply_precision(runtime.Precision("fp32", False, ""))
        assert not torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32 = before


def test_datasheet_peaks_follow_the_precision():
    assert peaks.datasheet_flops("NVIDIA H200", "bf16", False) == pytest.approx(989.4e12)
    assert peaks.datasheet_flops("NVIDIA H100 PCIe", "fp32", True) == pytest.approx(378e12)
    assert peaks.datasheet_flops("NVIDIA H100 80GB HBM3", "fp32", False) == pytest.approx(66.9e12)
    assert peaks.datasheet_flops("Tesla T4", "bf16", False) == pytest.approx(8.1e12)  # emulated: fp32 units
    assert peaks.datasheet_flops("NVIDIA L40S", "bf16", False) == pytest.approx(362.1e12)  # not the L40's row
    assert peaks.datasheet_flops("Some Future GPU", "bf16", False) is None
    assert peaks.precision_label("fp32", True) == "tf32"
