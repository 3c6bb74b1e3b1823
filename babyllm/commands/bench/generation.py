"""Generation speed: Infer2's chat tokens/s, and the naive one-token-per-pass reference against one whole pass."""

from __future__ import annotations

import statistics
import time
from typing import Any

from babyllm.commands.bench.timing import best_time, sync_fn
from babyllm.config import Config

PROMPT = "The morning was quiet, and the kettle had just begun to sing when"



def measure_naive(model: Any, ids: Any, device: Any, dtype: str, budget: dict[str, float]) -> dict[str, Any]:
    """Whole-sequence forward vs the one-token-per-pass reference (the prefix rerun for every position)."""
    import torch

    from babyllm.model.runtime import autocast

    sync = sync_fn(device)
    B, T = ids.shape
    with torch.inference_mode(), autocast(device, dtype):
        # Training has already run these shapes: an untimed call only where calls are cheap.
        t_whole = best_time(lambda: model.run(ids).logits, sync, 0.0, min_reps=1, warm=False)
        cheap = t_whole < 0.05 * budget["naive_s"]
        if cheap:
            t_whole = min(t_whole, best_time(lambda: model.run(ids).logits, sync, 0.0, min_reps=2))
        # Positions at the middles of k equal strata of 1..T: their mean time estimates the mean over all T.
        k = int(budget["naive_positions"])
        while k > 2 and t_whole * k / 2 > budget["naive_s"]:
            k -= 1
        positions = sorted({max(1, min(T, round((j + 0.5) * T / k))) for j in range(k)})
        per_position = []
        for p in positions:
            prefix = ids[:, :p]
            if cheap:
                model.run(prefix).logits[:, -1]  # untimed: each new length is a new shape
            sync()
            t0 = time.perf_counter()
            model.run(prefix).logits[:, -1]
            sync()
            per_position.append(time.perf_counter() - t0)
    whole_tps = B * T / t_whole
    naive_tps = B / statistics.mean(per_position)
    return dict(whole_tokens_per_s=whole_tps, naive_tokens_per_s=naive_tps, speedup=whole_tps / naive_tps,
                positions=positions, position_ms=[t * 1000 for t in per_position], batch=B, context=T)


def measure_generation(tutor: Any, cfg: Config, budget: dict[str, float]) -> dict[str, Any]:
    """Infer2 chat speed at this config: tokens sampled per second (prompt prefill included)."""
    from babyllm.infer2 import Infer2, Settings

    model = tutor.model
    calls = [0]
    hook = model.logits.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    try:
        settings = Settings.from_config(cfg.chat)
        settings.seed = 0
        settings.max_tokens = 4
        for _ in Infer2(model, tutor.librarian.tokenizer, settings).stream(PROMPT):  # warm-up
            pass
        settings.max_tokens = int(budget["gen_tokens"])
        chat = Infer2(model, tutor.librarian.tokenizer, settings)
        calls[0] = 0
        t0 = time.perf_counter()
        pieces = []
        for piece in chat.stream(PROMPT):  # until gen_tokens, or gen_s on a slow machine
            pieces.append(piece)
            if time.perf_counter() - t0 > budget["gen_s"]:
                break
        text = "".join(pieces)
        sync_fn(tutor.device)()
        elapsed = time.perf_counter() - t0
    finally:
        hook.remove()
    tokens = calls[0]  # one forward per sampled token (the prompt's prefill gives the first)
    return dict(tokens_per_s=tokens / elapsed, tokens=tokens, seconds=elapsed, chars=len(text))
