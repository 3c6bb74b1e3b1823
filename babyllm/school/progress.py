"""Where a run stands (steps, tokens, the training clock, losses, validation, the last save), for every part."""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

RECENT_LOSSES = 1000  # training losses kept for loss_100 / loss_1000 (and in a save's training state)


@dataclass
class Progress:
    """One object the parts share: the step advances it, validation and saves update it, a save restores it.

    Everything but the last save's record is what a save holds (babyllm.school.saves)."""

    step_count: int = 0  # steps applied (a NaN/inf step is not)
    tokens: int = 0  # tokens trained on, over all ranks
    train_seconds: float = 0.0  # the training clock: time spent in steps (not validation, saves or pauses)
    losses: deque[float] = field(default_factory=lambda: deque(maxlen=RECENT_LOSSES))
    val_loss: float = math.nan  # the latest validation
    val_bpb: float = math.nan
    best_val: float = math.inf
    best_val_step: int = 0  # the validation step that gave best_val
    last_saved_step: int | None = None  # the last save or checkpoint (not best/)
    last_save_path: Path | None = None
    last_save_error: str | None = None

    def intact(self) -> str:
        """What survives a failure, for its one-line message."""
        path = self.last_save_path
        return f"the last save ({path.name}) is intact" if path is not None else "no save was written yet"


def perplexity(loss: float) -> float:
    """exp(loss), inf where it overflows."""
    try:
        return math.exp(loss)
    except OverflowError:
        return math.inf
