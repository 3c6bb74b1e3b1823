"""Infer2's sampling settings and their validation."""

from __future__ import annotations

import math
from dataclasses import dataclass

from babyllm.config import ChatConfig
from babyllm.errors import BabyError


@dataclass
class Settings:
    """Sampling settings; defaults come from the config's [chat] section."""

    temperature: float = 0.8  # 0 = greedy (argmax)
    top_k: int = 40  # 0 = off
    top_p: float = 0.95  # 1 = off
    repetition_penalty: float = 1.1  # 1 = off
    penalty_window: int = 64  # recent tokens the penalty looks at (0 = off)
    max_tokens: int = 200
    stop: tuple[str, ...] = ()  # the reply ends before the first of these it would contain
    seed: int | None = None  # None = a fresh random seed

    @classmethod
    def from_config(cls, chat: ChatConfig) -> Settings:
        return cls(
            temperature=float(chat.temperature),
            top_k=int(chat.top_k),
            top_p=float(chat.top_p),
            repetition_penalty=float(chat.repetition_penalty),
            penalty_window=int(chat.penalty_window),
            max_tokens=int(chat.max_tokens),
        )

    def validate(self) -> Settings:
        """Raise BabyError naming the first bad value; returns self so it can be chained."""
        checks = [
            (_finite(self.temperature) and self.temperature >= 0,
             f"temperature {self.temperature}: must be a number >= 0 (0 = greedy)"),
            (_whole(self.top_k) and self.top_k >= 0, f"top-k {self.top_k}: must be a whole number >= 0 (0 = off)"),
            (_finite(self.top_p) and 0 < self.top_p <= 1, f"top-p {self.top_p}: must be in (0, 1] (1 = off)"),
            (_finite(self.repetition_penalty) and self.repetition_penalty >= 1,
             f"repetition penalty {self.repetition_penalty}: must be a number >= 1 (1 = off)"),
            (_whole(self.penalty_window) and self.penalty_window >= 0,
             f"penalty window {self.penalty_window}: must be a whole number >= 0"),
            (_whole(self.max_tokens) and self.max_tokens >= 1,
             f"max tokens {self.max_tokens}: must be a whole number >= 1"),
            (self.seed is None or _whole(self.seed), f"seed {self.seed}: must be a whole number"),
            (all(isinstance(s, str) and s for s in self.stop), f"stop strings {self.stop!r}: must be non-empty text"),
        ]
        for ok, message in checks:
            if not ok:
                raise BabyError(message)
        return self

    def describe(self) -> str:
        """One line naming every setting (the reply to /settings)."""
        return (
            f"temperature {self.temperature:g}, top-k {self.top_k}, top-p {self.top_p:g}, "
            f"repetition penalty {self.repetition_penalty:g} over {self.penalty_window} tokens, "
            f"max {self.max_tokens} tokens, seed {show(self.seed)}"
        )


def show(value: object) -> str:
    """A setting's value as replies show it (a seed of None is "off (random)")."""
    if value is None:
        return "off (random)"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _whole(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)
