"""One token id from a logits vector: repetition penalty, temperature, top-k, top-p (any logits, even nan)."""

from __future__ import annotations

import math

import torch

from babyllm.infer2.settings import Settings


def apply_repetition_penalty(logits: torch.Tensor, recent: list[int], penalty: float) -> torch.Tensor:
    """CTRL-style: each distinct recent token's logit is divided by `penalty` if positive, else multiplied."""
    if penalty == 1.0 or not recent:
        return logits
    idx = torch.tensor(sorted(set(recent)), dtype=torch.long)
    chosen = logits[idx]
    logits[idx] = torch.where(chosen > 0, chosen / penalty, chosen * penalty)
    return logits


def tame_logits(logits: torch.Tensor) -> torch.Tensor:
    """Logits any softmax can take: float64, nan dropped (-inf), +inf tokens share the mass, max shifted to 0.

    Exploded but finite weights give logits of 1e9 and more, and a broken one nan or inf; sampling must
    still return a token (the reply is gibberish, not a crash).
    """
    x = torch.nan_to_num(logits.double(), nan=-math.inf)
    top = torch.isposinf(x)
    if bool(top.any()):
        return torch.where(top, 0.0, -math.inf).double()
    if bool(torch.isneginf(x).all()):
        return torch.zeros_like(x)
    return x - x.max()


def sample_next(logits: torch.Tensor, s: Settings, recent: list[int], generator: torch.Generator) -> int:
    """One token id from a [V] CPU logits vector, for any logits (finite, huge, inf or nan)."""
    logits = torch.nan_to_num(logits.double(), nan=-math.inf)
    if s.penalty_window > 0:
        logits = apply_repetition_penalty(logits, recent[-s.penalty_window :], s.repetition_penalty)
    logits = tame_logits(logits)
    if s.temperature == 0:
        return int(torch.argmax(logits))
    logits = tame_logits(logits / s.temperature)
    if 0 < s.top_k < logits.shape[0]:
        kth = torch.topk(logits, s.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, -math.inf)
    if s.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = torch.softmax(sorted_logits, dim=0)
        before = torch.cumsum(probs, dim=0) - probs  # mass of the tokens ranked above each one
        drop = before >= s.top_p  # the first token is always kept
        logits = logits.index_fill(0, order[drop], -math.inf)
    probs = torch.softmax(logits, dim=0)
    return int(torch.multinomial(probs, 1, generator=generator))
