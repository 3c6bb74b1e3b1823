"""Helpers for the NaN/inf guard's tests: a poisoned weight, a copy of the parameters, a NaN-safe comparison."""

from __future__ import annotations

import torch


def params(tutor) -> dict[str, torch.Tensor]:
    """A copy of every parameter, by name."""
    return {n: p.detach().clone() for n, p in tutor.model.named_parameters()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    """Whether two copies are equal, a NaN equal to a NaN (the poisoned weight stays NaN in both)."""
    return all(torch.equal(a[n].nan_to_num(7.0), b[n].nan_to_num(7.0)) for n in a)


def poison(tutor) -> None:
    """Make the next step's loss NaN: one weight of Logits set to NaN."""
    with torch.no_grad():
        tutor.model.logits.linear.weight[0, 0] = float("nan")
