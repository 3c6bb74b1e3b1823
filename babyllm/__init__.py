"""babyLLM: a small attention-free language model, and the school that trains it."""

from babyllm.config import Config, load_config
from babyllm.model import BabyLLM

__all__ = ["BabyLLM", "Config", "load_config"]
__version__ = "0.1.0"
