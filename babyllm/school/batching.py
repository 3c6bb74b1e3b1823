"""The batch a run trains with: `train.batch = "auto"` fills a GPU's memory (the benchmark's probe too), within
what the corpus can feed; the global batch, and a warning when one step sees too much of the corpus.

On CUDA the probe trains two steps of a throwaway model at the config's base batch and at twice it and
reads the device's peak memory: a step's memory is fixed (weights, optimizer state) plus a part that grows
with the batch (activations), so the two give the line, and the batch is the largest base x 2^k whose step
fits in FILL_FRACTION of the device. Elsewhere "auto" is BASE_BATCH. Either way the batch is capped so that
an epoch of the training split takes at least MIN_STEPS_PER_EPOCH steps: a batch that sees the whole corpus
in one step only memorises it faster.
"""

from __future__ import annotations

import gc
from collections.abc import Callable
from dataclasses import dataclass

import torch

from babyllm.config import AUTO, Config
from babyllm.model.network import BabyLLM, next_token_loss
from babyllm.model.runtime import autocast

BASE_BATCH = 16  # "auto" off CUDA, and where the CUDA probe starts
FILL_FRACTION = 0.6  # of the device's memory a training step may use (the rest: compile's buffers, fragmentation)
FILL_CAP = 1024  # the largest batch the probe tries
MIN_STEPS_PER_EPOCH = 16  # the automatic batch never sees more than 1/16 of the training split a step
EPOCH_WARN_S = 60.0  # an epoch faster than this is said to be too fast (the run would memorise the corpus)
EPOCH_CHECK_STEP = 20  # the step whose speed that is judged at (past the first, slower steps)


@dataclass(frozen=True)
class Settled:
    """The batch a run trains with and why."""

    batch: int
    reason: str


def fill_batch(step_bytes: Callable[[int], float], base: int, budget_bytes: float, cap: int = FILL_CAP) -> int:
    """Largest base * 2^k <= cap whose step fits budget_bytes, from steps measured at base and 2 * base.

    A probe that runs out of memory raises MemoryError (the batch before it is taken)."""
    first = step_bytes(base)
    if first > budget_bytes or 2 * base > cap:
        return base
    try:
        second = step_bytes(2 * base)
    except MemoryError:
        return base
    per_sequence = max((second - first) / base, 1.0)
    fixed = first - per_sequence * base
    batch = base
    while 2 * batch <= cap and fixed + per_sequence * 2 * batch <= budget_bytes:
        batch *= 2
    return batch


def cuda_step_bytes(cfg: Config, device: torch.device, dtype: str, batch: int) -> float:
    """Peak CUDA memory of two training steps of a throwaway model at this batch (random tokens, no compile)."""
    from babyllm.school.optimizers import make_optimizer

    model = optimizer = None
    try:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        model = BabyLLM(cfg.model).to(device)
        optimizer = make_optimizer(model, cfg.train, device)
        ids = torch.randint(0, cfg.model.vocab, (batch, cfg.model.context + 1), device=device)
        for _ in range(2):
            with autocast(device, dtype):
                logits = model.run(ids[:, :-1], train=True).logits
            next_token_loss(logits, ids[:, 1:]).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        torch.cuda.synchronize(device)
        return float(torch.cuda.max_memory_allocated(device))
    except torch.cuda.OutOfMemoryError as e:
        raise MemoryError(f"batch {batch}: {e}") from None
    finally:
        model = optimizer = None  # (also in the frame a traceback keeps) so its tensors can go
        gc.collect()
        torch.cuda.empty_cache()


def corpus_cap(train_tokens: int, context: int, accumulate: int, world_size: int) -> int:
    """The largest per-rank batch that still takes MIN_STEPS_PER_EPOCH steps for an epoch (at least 1)."""
    windows = train_tokens // max(1, context)
    return max(1, windows // (MIN_STEPS_PER_EPOCH * accumulate * world_size))


def settle(cfg: Config, device: torch.device, dtype: str, train_tokens: int, world_size: int,
           fill: Callable[[], int] | None = None) -> Settled:
    """The batch for train.batch as configured: itself, or for "auto" the CUDA probe's (`fill` stands in for it:
    tests fake a GPU) or BASE_BATCH, capped by what the corpus feeds."""
    t = cfg.train
    if t.batch != AUTO:
        return Settled(int(t.batch), f"train.batch = {t.batch}")
    cap = corpus_cap(train_tokens, cfg.model.context, t.accumulate, world_size)
    if fill is None and device.type == "cuda":
        budget = FILL_FRACTION * torch.cuda.get_device_properties(device).total_memory
        fill = lambda: fill_batch(lambda b: cuda_step_bytes(cfg, device, dtype, b), BASE_BATCH, budget)  # noqa: E731
    if fill is not None:
        filled, why = fill(), f"fills {FILL_FRACTION:.0%} of the GPU's memory"
    else:
        filled, why = BASE_BATCH, f"{BASE_BATCH} off a GPU"
    if filled <= cap:
        return Settled(filled, f"train.batch = auto: {filled} ({why})")
    return Settled(cap, f"train.batch = auto: {cap}, not {filled} ({why}): the corpus feeds {MIN_STEPS_PER_EPOCH} "
                        "steps an epoch at most that (train on more text: --corpus)")


def global_batch_text(batch: int, accumulate: int, world_size: int, context: int) -> str:
    """The global batch as the header says it: sequences (batch x accumulate x ranks) and tokens a step."""
    sequences = batch * accumulate * world_size
    parts = [f"{batch}"] + ([f"{accumulate} micro-batches"] if accumulate > 1 else []) + (
        [f"{world_size} ranks"] if world_size > 1 else [])
    how = " x ".join(parts) if len(parts) > 1 else "one micro-batch"
    return f"global batch {sequences:,} sequences ({how}), {sequences * context:,} tokens a step"


def epoch_warning(train_tokens: int, tokens_per_s: float) -> str | None:
    """What to say when an epoch of the training split goes by faster than EPOCH_WARN_S (None: it does not)."""
    if tokens_per_s <= 0 or train_tokens / tokens_per_s >= EPOCH_WARN_S:
        return None
    seconds = train_tokens / tokens_per_s
    return (f"one epoch of the corpus ({train_tokens:,} training tokens) takes {seconds:.1f} s at "
            f"{tokens_per_s:,.0f} tokens/s: the model will see it over and over and memorise it; "
            "train on more text (--corpus) or a smaller train.batch")


class EpochWatch:
    """Says once, after the first steps (EPOCH_CHECK_STEP), when an epoch goes by too fast (epoch_warning)."""

    def __init__(self, train_tokens: int) -> None:
        self.train_tokens = train_tokens
        self.said = False

    def check(self, step: int, tokens_per_s: float) -> str | None:
        if self.said or step < EPOCH_CHECK_STEP:
            return None
        self.said = True
        return epoch_warning(self.train_tokens, tokens_per_s)
