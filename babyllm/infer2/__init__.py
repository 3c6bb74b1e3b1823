"""INFER2: streaming generation from the live model, with a conversation memory.

The parts: `conversation` (Infer2 itself), `settings` (the sampling settings), `sampling` (one token
from logits), `detokenizer` (token ids to text as they come), `stops` (a reply ends before a stop
string), `threads` (chat forwards' native thread limit) and `commands` (the slash commands' table,
which the parser and every help text read).
"""

from typing import Any

__all__ = ["Infer2", "Settings"]


def __getattr__(name: str) -> Any:
    # Lazy, so the light parts (commands, settings) load without importing torch (the viewer's help).
    if name == "Infer2":
        from babyllm.infer2.conversation import Infer2

        return Infer2
    if name == "Settings":
        from babyllm.infer2.settings import Settings

        return Settings
    raise AttributeError(f"module 'babyllm.infer2' has no attribute {name!r}")
