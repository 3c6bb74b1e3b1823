"""One check shared by the model's tests: every position's output depends only on the tokens up to it."""

from __future__ import annotations

import torch


def assert_causal(model: torch.nn.Module, vocab: int, context: int) -> None:
    """Changing the tokens after position t leaves the outputs up to t as they were, and changes the rest."""
    ids = torch.randint(0, vocab, (2, context))
    base = model(ids)
    for t in range(context - 1):
        changed = ids.clone()
        changed[:, t + 1:] = torch.randint(0, vocab, (2, context - t - 1))
        out = model(changed)
        torch.testing.assert_close(out[:, : t + 1], base[:, : t + 1], rtol=0, atol=1e-5)
        assert not torch.allclose(out[:, t + 1:], base[:, t + 1:])
