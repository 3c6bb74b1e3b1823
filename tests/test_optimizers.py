"""train.optimizer = "muon": Muon for the hidden matrices, AdamW for the rest, as one optimizer (schedule, saves,
guard, live weight decay)."""

from __future__ import annotations

import math

import torch

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
        with torch.no_grad():
            t.model.logits.linear.weight[0, 0] = float("nan")
        before = {n: p.detach().clone() for n, p in t.model.named_parameters()}
        t.step()
        assert t.step_count == 1 and t.stepper.alarm is not None
        assert all(torch.equal(before[n].nan_to_num(7.0), p.nan_to_num(7.0)) for n, p in t.model.named_parameters())
