"""The Neurons' data-gated token shift (model.token_shift) and ReLU squared (model.activation = "relu2"): the
vectorised shift against a loop over positions, causality, a conversation's state, gradients."""

from __future__ import annotations

import pytest
import torch
from causal import assert_causal

from babyllm.config import load_config
from babyllm.model.network import BabyLLM, Neurons


def reference_shift(n: Neurons, x: torch.Tensor, before: torch.Tensor | None) -> torch.Tensor:
    """Slow and obvious: one position at a time, the previous position (or `before`, or zeros) blended in."""
    out = []
    prev = before if before is not None else torch.zeros_like(x[:, 0])
    for t in range(x.shape[1]):
        cur = x[:, t]
        mu = torch.sigmoid(n.shift_logit + torch.tanh(cur @ n.shift_down) @ n.shift_up)
        out.append(cur * (1 - mu) + prev * mu)
        prev = cur
    return torch.stack(out, dim=1)


@pytest.fixture
def shifted():
    torch.manual_seed(0)
    cfg = load_config("tiny", ["model.token_shift=true", "model.activation=\"relu2\""])
    model = BabyLLM(cfg.model)
    with torch.no_grad():  # away from the start (where the data's term is zero): the gate depends on the token
        model.neurons.shift_up.normal_(0, 0.5)
        model.neurons.shift_logit.normal_(0, 1)
    return cfg, model


@pytest.mark.parametrize("before", [False, True])
def test_the_shift_matches_a_loop_over_positions(shifted, before):
    _cfg, model = shifted
    x = torch.randn(3, 9, model.cfg.embed)
    first = torch.randn(3, model.cfg.embed) if before else None
    n = model.neurons
    torch.testing.assert_close(n.shifted(x, first), reference_shift(n, x, first), rtol=1e-5, atol=1e-6)


def test_relu_squared_is_the_activation():
    torch.manual_seed(0)
    n = Neurons(8, 5, activation="relu2")
    x = torch.randn(2, 3, 8)
    pre = n.norm(x) @ n.weight.t() + n.bias
    torch.testing.assert_close(n(x), torch.relu(pre) ** 2, rtol=1e-5, atol=1e-6)


def test_causal_at_every_position_with_the_shift(shifted):
    cfg, model = shifted
    assert_causal(model, cfg.model.vocab, cfg.model.context)


def test_a_conversation_carries_the_previous_token_across_calls(shifted):
    cfg, model = shifted
    ids = torch.randint(0, cfg.model.vocab, (2, cfg.model.context))
    full = model(ids)
    first = model.run(ids[:, :5], keep_state=True)
    pieces, state = [first.logits], first.state
    for t in range(5, ids.shape[1]):  # one token at a time, as generation does
        step = model.run(ids[:, t: t + 1], state=state, keep_state=True)
        pieces.append(step.logits)
        state = step.state
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, rtol=1e-4, atol=1e-4)


def test_gradients_reach_the_shift(shifted):
    cfg, model = shifted
    ids = torch.randint(0, cfg.model.vocab, (2, cfg.model.context + 1))
    loss = torch.nn.functional.cross_entropy(model(ids[:, :-1]).reshape(-1, cfg.model.vocab), ids[:, 1:].reshape(-1))
    loss.backward()
    n = model.neurons
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in (n.shift_logit, n.shift_down, n.shift_up))


def test_an_unknown_activation_is_one_line():
    from babyllm.errors import ConfigError

    with pytest.raises(ConfigError, match="model.activation = 'swish': use one of gelu, relu2"):
        load_config("tiny", ["model.activation=swish"])
