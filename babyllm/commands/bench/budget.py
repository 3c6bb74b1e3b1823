"""How long each of the benchmark's measurements may take."""

from __future__ import annotations


def budgets(quick: bool, cuda: bool) -> dict[str, float]:
    """Time boxes (seconds) and counts; `quick` is for tests (a couple of steps, tiny time boxes)."""
    if quick:
        return dict(gemm_s=0.02, gemm_flops=2e8, warmup_s=0.0, min_warmup=1, steps=2, min_steps=2, train_s=2.0,
                    gen_tokens=8, naive_positions=2, naive_s=2.0)
    # Two warm-up steps at least: the allocator reaches its steady state (no more page faults) in the second.
    return dict(gemm_s=0.25, gemm_flops=4e12 if cuda else 1e11, warmup_s=1.0, min_warmup=2, steps=8, min_steps=2,
                train_s=20.0, gen_tokens=64, naive_positions=4, naive_s=8.0)
