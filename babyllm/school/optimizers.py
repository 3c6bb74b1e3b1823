"""The optimizer: AdamW (fused where torch has a kernel), or Muon for the hidden weight matrices with AdamW for
the rest (train.optimizer); weight decay only on weight matrices."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch.optim._muon import _adjust_lr  # torch's own rate for the group's adjust_lr_fn (pinned torch)

from babyllm.config import TrainConfig
from babyllm.model.runtime import resolve_dtype

# The hidden 2-D matrices Muon takes (train.optimizer = "muon"): the Neurons' weights and the memories'
# bottlenecks. Embeddings, the Logits layer (input and output layers), gates, mixes and biases stay with AdamW.
MUON_PARAMS = ("neurons.weight", "memory1.down.weight", "memory1.up.weight", "memory2.down.weight",
               "memory2.up.weight")


def make_optimizer(model: torch.nn.Module, t: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    """AdamW, or MuonAdamW with train.optimizer = "muon" (decay_groups says which groups decay)."""
    named = list(model.named_parameters())
    muon = [p for n, p in named if t.optimizer == "muon" and n in MUON_PARAMS]
    rest = [(n, p) for n, p in named if not any(p is q for q in muon)]
    adamw = _adamw(rest, t, device)
    return MuonAdamW(muon, adamw, t, native_bf16=resolve_dtype("auto", device) == "bf16") if muon else adamw


def _adamw(named: Iterable[tuple[str, torch.nn.Parameter]], t: TrainConfig,
           device: torch.device) -> torch.optim.Optimizer:
    """AdamW, fused where torch has a kernel; weight decay only on 2-D weight matrices (not on biases, norms,
    gate or mixing logits)."""
    decay: list[torch.nn.Parameter] = []
    plain: list[torch.nn.Parameter] = []
    for name, p in named:
        (decay if p.ndim == 2 and name.endswith("weight") else plain).append(p)
    groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": plain, "weight_decay": 0.0}]
    kwargs: dict[str, Any] = dict(lr=t.lr, betas=(t.beta1, t.beta2))
    if device.type in ("cuda", "cpu"):
        # One fused kernel per step: on CPU it measured ~13x faster than the per-tensor loop, which
        # was ~20% of a small-batch step at the default config.
        try:
            return torch.optim.AdamW(groups, fused=True, **kwargs)
        except (TypeError, RuntimeError):
            pass
    return torch.optim.AdamW(groups, **kwargs)


def decay_groups(optimizer: torch.optim.Optimizer) -> list[dict[str, Any]]:
    """The param groups that take train.weight_decay: AdamW's first, and Muon's."""
    muon = optimizer.muon.param_groups if isinstance(optimizer, MuonAdamW) else []
    return [optimizer.param_groups[0], *muon]


class MuonAdamW(torch.optim.Optimizer):
    """Muon (momentum orthogonalised by Newton-Schulz; its update scaled to AdamW's size, so one learning rate
    and one schedule serve both) for the hidden matrices, AdamW for the rest: one optimizer to the schedule,
    the saves and the guard. Its param_groups are AdamW's (decay, plain) then Muon's (decay)."""

    def __init__(self, muon: list[torch.nn.Parameter], adamw: torch.optim.Optimizer, t: TrainConfig, *,
                 native_bf16: bool = True) -> None:
        self.adamw = adamw
        kind = torch.optim.Muon if native_bf16 else Fp32Muon
        self.muon = kind(muon, lr=t.lr, weight_decay=t.weight_decay, adjust_lr_fn="match_rms_adamw")
        super().__init__([p for g in adamw.param_groups + self.muon.param_groups for p in g["params"]],
                         {"lr": t.lr})
        self.param_groups = self.adamw.param_groups + self.muon.param_groups  # the very dicts: a rate set here
        self.defaults = {**self.adamw.defaults, "fused": False}  # the guard decides on the host (no kernel)

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        self.adamw.step()
        self.muon.step()

    def zero_grad(self, set_to_none: bool = True) -> None:
        self.adamw.zero_grad(set_to_none)
        self.muon.zero_grad(set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"adamw": self.adamw.state_dict(), "muon": self.muon.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.adamw.load_state_dict(state_dict["adamw"])
        self.muon.load_state_dict(state_dict["muon"])
        self.param_groups = self.adamw.param_groups + self.muon.param_groups  # (loading made new group dicts)

    @property
    def state(self) -> Any:
        return {**self.adamw.state, **self.muon.state}

    @state.setter
    def state(self, _value: Any) -> None:  # (torch.optim.Optimizer.__init__ sets it)
        pass


class Fp32Muon(torch.optim.Muon):
    """torch's Muon with its Newton-Schulz iteration in fp32, for devices without native bf16 (an AVX2 CPU, a
    T4): torch's always casts to bf16, which such a device only emulates, many times slower than fp32.
    The same update otherwise (momentum, Nesterov, decoupled decay, the AdamW-matched rate) and the same state,
    so a save moves between the two."""

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            momentum, decay = group["momentum"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p.grad, memory_format=torch.preserve_format)
                buf = state["momentum_buffer"]
                buf.lerp_(p.grad, 1 - momentum)
                update = p.grad.lerp(buf, momentum) if group["nesterov"] else buf
                update = orthogonalised(update, group["ns_coefficients"], group["ns_steps"], group["eps"],
                                        torch.float32)
                p.mul_(1 - group["lr"] * decay)
                p.add_(update.to(p.dtype), alpha=-_adjust_lr(group["lr"], group["adjust_lr_fn"], p.shape))


def orthogonalised(g: torch.Tensor, coefficients: tuple[float, float, float], steps: int, eps: float,
                   dtype: torch.dtype) -> torch.Tensor:
    """Muon's quintic Newton-Schulz iteration towards the orthogonal factor of g (2-D), computed in `dtype`: the
    wide side last, scaled to spectral norm at most 1, then `steps` times X <- aX + (bA + cA^2)X with A = XX^T."""
    a, b, c = coefficients
    x = g.to(dtype)
    tall = g.size(0) > g.size(1)
    if tall:
        x = x.T
    x = x / x.norm().clamp(min=eps)
    for _ in range(steps):
        gram = x @ x.T
        x = torch.addmm(x, torch.addmm(gram, gram, gram, beta=b, alpha=c), x, beta=a)
    return x.T if tall else x
