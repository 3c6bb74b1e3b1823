"""babyllm.model.gemm: oneDNN fp32 products against torch.mm (values and gradients), and when each path is used."""

import pytest
import torch

from babyllm import BabyLLM, load_config
from babyllm.model import gemm
from babyllm.model.network import next_token_loss

from memories import stir

needs_onednn = pytest.mark.skipif(not gemm._correct(), reason="this torch has no usable oneDNN fp32 kernel")


def layouts(m: int, k: int, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """a [m, k] and b [k, n] stored row-major and as transposed views, every combination."""
    torch.manual_seed(0)
    a, b = torch.randn(m, k), torch.randn(k, n)
    a_t, b_t = a.t().contiguous().t(), b.t().contiguous().t()
    return [(a, b), (a_t, b), (a, b_t), (a_t, b_t)]


@needs_onednn
@pytest.mark.parametrize("m,k,n", [(1, 7, 5), (33, 64, 17), (128, 3, 256)])
def test_onednn_product_matches_torch(m, k, n):
    for a, b in layouts(m, k, n):
        torch.testing.assert_close(gemm.onednn_mm(a, b), torch.mm(a, b), rtol=1e-5, atol=1e-5)


@needs_onednn
def test_onednn_gradients_match_torch():
    for a, b in layouts(19, 23, 29):
        grad = torch.randn(19, 29)
        a1, b1 = a.clone().requires_grad_(), b.clone().requires_grad_()
        a2, b2 = a.clone().requires_grad_(), b.clone().requires_grad_()
        gemm._OneDnnMM.apply(a1, b1).backward(grad)
        torch.mm(a2, b2).backward(grad)
        torch.testing.assert_close(a1.grad, a2.grad, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(b1.grad, b2.grad, rtol=1e-5, atol=1e-5)


@needs_onednn
@pytest.mark.parametrize("with_bias", [True, False])
def test_onednn_linear_matches_torch(monkeypatch, with_bias):
    """gemm.linear (bias added inside oneDNN's kernel): values and all three gradients as F.linear."""
    monkeypatch.setattr(gemm, "onednn_fp32", lambda: True)
    monkeypatch.setattr(gemm, "MIN_MACS", 0)
    torch.manual_seed(0)
    x, w, bias = torch.randn(37, 300), torch.randn(260, 300), torch.randn(260)
    outs, grads = [], []
    for fn in (gemm.linear, torch.nn.functional.linear):
        leaves = [t.clone().requires_grad_() for t in (x, w, bias)]
        out = fn(leaves[0], leaves[1], leaves[2] if with_bias else None)
        out.backward(torch.ones_like(out) * torch.arange(260.0) / 260)
        outs.append(out.detach())
        grads.append([t.grad for t in leaves])
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-4, atol=1e-4)
    for mine, ref in zip(grads[0], grads[1], strict=True):
        if ref is None:
            assert mine is None
        else:
            torch.testing.assert_close(mine, ref, rtol=1e-5, atol=1e-4)


def test_layout_rule():
    """oneDNN unless the left operand is transposed and the output narrow (where it measured slower)."""
    row = torch.randn(300, 64)  # [m, k], inner dimension contiguous
    transposed = torch.randn(300, 64).t()  # [64, 300] as a transposed view: inner dimension strided
    assert gemm._onednn_suits(row, torch.randn(64, 64))  # the right operand's layout never matters
    assert gemm._onednn_suits(row, torch.randn(64, 64).t())
    assert not gemm._onednn_suits(transposed, torch.randn(300, 64))  # like a [T, T] mix's weight gradient
    assert gemm._onednn_suits(transposed, torch.randn(300, 512))  # a wide output pays for the copy


def test_torch_path_under_autocast_and_for_other_dtypes(monkeypatch):
    monkeypatch.setattr(gemm, "onednn_fp32", lambda: True)
    monkeypatch.setattr(gemm, "MIN_MACS", 0)
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert gemm.mm(a, b).dtype == torch.bfloat16  # autocast's cast, as torch.mm
        assert gemm.linear(a, b.t(), torch.zeros(3)).dtype == torch.bfloat16
    assert gemm.mm(a.double(), b.double()).dtype == torch.float64


def test_environment_forces_the_torch_path(monkeypatch):
    gemm.onednn_fp32.cache_clear()
    monkeypatch.setenv(gemm.MATMUL_ENV, "torch")
    try:
        assert gemm.path() == "torch"
    finally:
        gemm.onednn_fp32.cache_clear()


@needs_onednn
def test_model_trains_alike_on_both_paths(monkeypatch):
    """Loss and every gradient of a training step agree whichever fp32 CPU matmul runs."""
    cfg = load_config("tiny")
    ids = torch.randint(0, cfg.model.vocab, (3, cfg.model.context + 1))
    results = []
    monkeypatch.setattr(gemm, "MIN_MACS", 0)  # tiny model: every product through the path under test
    for use in (False, True):
        monkeypatch.setattr(gemm, "onednn_fp32", lambda use=use: use)
        torch.manual_seed(0)
        model = BabyLLM(cfg.model)
        stir(model.memory1, model.memory2)
        loss = next_token_loss(model(ids[:, :-1]), ids[:, 1:])
        loss.backward()
        results.append((loss.item(), [p.grad.clone() for p in model.parameters()]))
    (loss_torch, grads_torch), (loss_dnn, grads_dnn) = results
    assert loss_dnn == pytest.approx(loss_torch, rel=1e-5)
    for g1, g2 in zip(grads_torch, grads_dnn, strict=True):
        torch.testing.assert_close(g2, g1, rtol=1e-4, atol=1e-6)


def test_torch_path_inside_torch_compile(monkeypatch):
    monkeypatch.setattr(gemm, "onednn_fp32", lambda: True)
    monkeypatch.setattr(gemm, "_compiling", lambda: True)
    monkeypatch.setattr(gemm, "MIN_MACS", 0)
    called = []
    monkeypatch.setattr(gemm, "onednn_mm", lambda a, b: called.append(1))
    gemm.mm(torch.randn(3, 4), torch.randn(4, 5))
    assert not called


@needs_onednn
def test_onednn_is_repeatable():
    """Same inputs, same bits (exact resume relies on it)."""
    torch.manual_seed(1)
    a, b = torch.randn(300, 200), torch.randn(200, 100)
    first = gemm.onednn_mm(a, b)
    for _ in range(3):
        assert torch.equal(gemm.onednn_mm(a, b), first)


def test_bad_environment_value_is_a_one_line_error(monkeypatch, capsys):
    from babyllm.commands.cli import main

    monkeypatch.setenv(gemm.MATMUL_ENV, "fast")
    assert main(["info", "--config", "tiny"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: BABYLLM_MATMUL='fast': use auto, torch or onednn") and "Traceback" not in err
