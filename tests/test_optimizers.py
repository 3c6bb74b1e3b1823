"""train.optimizer = "muon": Muon for the hidden matrices, AdamW for the rest, as one optimizer (schedule, saves,
guard, live weight decay)."""

from __future__ import annotations

import math

import torch
from guard import params, poison, same

from babyllm.school.optimizers import MUON_PARAMS, MuonAdamW, decay_groups
from babyllm.school.tutor import Tutor


def test_muon_takes_the_hidden_matrices_and_adamw_the_rest(make_cfg, tmp_path):
    with Tutor(make_cfg("train.optimizer=muon"), tmp_path / "run", say=lambda m: None) as t:
        opt = t.optimizer
        assert isinstance(opt, MuonAdamW) and t.stepper.on_device is False  # (no fused kernel: the host decides)
        names = {id(p): n for n, p in t.model.named_parameters()}
        muon = {names[id(p)] for g in opt.muon.param_groups for p in g["params"]}
        adamw = {names[id(p)] for g in opt.adamw.param_groups for p in g["params"]}
        assert muon == set(MUON_PARAMS) and not muon & adamw
        assert muon | adamw == set(names.values())
        assert [g["weight_decay"] for g in decay_groups(opt)] == [t.cfg.train.weight_decay] * 2
        lr = [g["lr"] for g in opt.param_groups]
        stats = t.step()
        assert math.isfinite(stats["loss"]) and len(set(lr)) == 1  # one schedule for both


def test_a_muon_run_resumes_exactly(make_cfg, tmp_path):
    cfg = ("train.optimizer=muon", "train.save_every=0")
    with Tutor(make_cfg(*cfg), tmp_path / "straight", say=lambda m: None) as a:
        straight = [a.step()["loss"] for _ in range(10)]
    with Tutor(make_cfg(*cfg), tmp_path / "resumed", say=lambda m: None) as b:
        resumed = [b.step()["loss"] for _ in range(6)]
        b.save()
    with Tutor(make_cfg(*cfg), tmp_path / "resumed", resume=True, say=lambda m: None) as c:
        resumed += [c.step()["loss"] for _ in range(4)]
    assert resumed == straight


def test_a_nan_step_is_not_applied_with_muon(make_cfg, tmp_path):
    with Tutor(make_cfg("train.optimizer=muon"), tmp_path / "run", say=lambda m: None) as t:
        t.step()
        poison(t)
        before = params(t)
        t.step()
        assert t.step_count == 1 and t.stepper.alarm is not None
        assert same(before, params(t))


def _matrices(seed: int) -> list[torch.nn.Parameter]:
    g = torch.Generator().manual_seed(seed)
    return [torch.nn.Parameter(torch.randn(shape, generator=g)) for shape in ((48, 16), (16, 40), (24, 24))]


def _train(opt: torch.optim.Optimizer, params: list[torch.nn.Parameter], steps: int = 3) -> None:
    g = torch.Generator().manual_seed(7)
    for _ in range(steps):
        for p in params:
            p.grad = torch.randn(p.shape, generator=g)
        opt.step()


def test_fp32_muon_is_torch_s_muon_but_for_the_iteration_s_precision(monkeypatch):
    """The same update as torch.optim.Muon when its Newton-Schulz runs in bf16 too (bit for bit), and torch's
    own iteration is ours in bf16: so only the precision differs on a device without native bf16."""
    from torch.optim._muon import _zeropower_via_newtonschulz

    from babyllm.school import optimizers

    g = torch.randn(40, 16, generator=torch.Generator().manual_seed(3))
    coeffs = (3.4445, -4.7750, 2.0315)
    assert torch.equal(optimizers.orthogonalised(g, coeffs, 5, 1e-7, torch.bfloat16),
                       _zeropower_via_newtonschulz(g, coeffs, 5, 1e-7))
    kwargs = dict(lr=0.02, weight_decay=0.5, adjust_lr_fn="match_rms_adamw")
    ours, theirs = _matrices(1), _matrices(1)
    in_bf16 = optimizers.orthogonalised
    monkeypatch.setattr(optimizers, "orthogonalised", lambda g, c, n, e, _dtype: in_bf16(g, c, n, e, torch.bfloat16))
    _train(optimizers.Fp32Muon(ours, **kwargs), ours)
    _train(torch.optim.Muon(theirs, **kwargs), theirs)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs, strict=True))


def test_the_fp32_iteration_orthogonalises():
    """In fp32 the iteration leaves every singular value of a random matrix in Muon's band around 1 (it does not
    converge exactly: the quintic's coefficients trade that for speed) and keeps the singular vectors."""
    from babyllm.school.optimizers import orthogonalised

    g = torch.randn(64, 24, generator=torch.Generator().manual_seed(5))
    x = orthogonalised(g, (3.4445, -4.7750, 2.0315), 5, 1e-7, torch.float32)
    assert x.dtype == torch.float32 and x.shape == g.shape
    s = torch.linalg.svdvals(x)
    assert s.min() > 0.5 and s.max() < 1.5
    u, _, vh = torch.linalg.svd(g, full_matrices=False)
    torch.testing.assert_close(x, u @ torch.diag(s.sort(descending=True).values) @ vh, atol=0.15, rtol=0)


def test_muon_computes_in_fp32_where_bf16_is_not_native_and_saves_move_between(monkeypatch, make_cfg, tmp_path):
    from babyllm.model import runtime
    from babyllm.school.optimizers import Fp32Muon

    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)  # an AVX2 CPU: bf16 only emulated
    with Tutor(make_cfg("train.optimizer=muon", "train.save_every=0"), tmp_path / "run", say=lambda m: None) as t:
        assert type(t.optimizer.muon) is Fp32Muon
        t.step()
        t.save()
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: True)
    with Tutor(make_cfg("train.optimizer=muon", "train.save_every=0"), tmp_path / "run", resume=True,
               say=lambda m: None) as t:
        assert type(t.optimizer.muon) is torch.optim.Muon and t.step_count == 1
        assert math.isfinite(t.step()["loss"])
