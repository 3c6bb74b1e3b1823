"""A test helper: Memory layers whose every path carries signal."""

import torch

from babyllm.model.memory import Memory


def stir(*memories: Memory) -> None:
    """Random gates and up-projections (fresh ones start uniform and silent), so every product matters."""
    with torch.no_grad():
        for mem in memories:
            mem.gate_logits.normal_()
            mem.up.weight.normal_()
            if mem.mlp:
                mem.proj_bias.normal_()
