"""How long each of the benchmark's measurements may take: seconds, never a count of slow things.

A GEMM call is cut to what the machine does in `call_s` (the batch-sized dimension shrinks; the first call
of each precision measures the speed), training runs for `train_s` after at least `min_warmup` warm-up and
`min_steps` timed steps, the naive reference and generation stop at their own time boxes. So a slow
machine, or a precision it only emulates (bf16 without AVX512-BF16), shortens the figures' sample rather
than the run's patience; a whole `babyllm bench` stays within a few minutes on 2 cores.
"""

from __future__ import annotations


def budgets(quick: bool, cuda: bool) -> dict[str, float]:
    """Time boxes (seconds) and the few counts that must be met; `quick` is for tests."""
    if quick:
        return dict(gemm_s=0.02, call_s=0.002, warmup_s=0.0, min_warmup=1, min_steps=2, train_s=0.5,
                    gen_tokens=8, gen_s=2.0, naive_positions=2, naive_s=2.0)
    # Two warm-up steps at least: the allocator reaches its steady state (no more page faults) in the second.
    return dict(gemm_s=0.25, call_s=0.02 if cuda else 0.08, warmup_s=1.0, min_warmup=2, min_steps=2,
                train_s=15.0, gen_tokens=64, gen_s=8.0, naive_positions=4, naive_s=8.0)
