"""babyLLM: a small attention-free language model, and the school that trains it."""

from typing import Any

__all__ = ["BabyLLM", "Config", "load_config"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Lazy, so light modules (calligraphist, config) load without importing torch.
    if name == "BabyLLM":
        from babyllm.model.network import BabyLLM

        return BabyLLM
    if name in ("Config", "load_config"):
        from babyllm import config

        return getattr(config, name)
    raise AttributeError(f"module 'babyllm' has no attribute {name!r}")
