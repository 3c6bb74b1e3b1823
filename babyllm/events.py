"""Event kinds and the one table of their colours (the headless printer's and the cockpit's event log)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal

EventKind = Literal["info", "save", "checkpoint", "val", "alarm", "alert", "error", "state", "ui"]

# Rich styles; "ui" is the cockpit's own notes (a key pressed, a request refused); "alert" is babyllm.school.alerts'.
EVENT_STYLES: Mapping[str, str] = MappingProxyType({
    "save": "green", "checkpoint": "cyan", "val": "#ff8c00", "alarm": "bold red", "alert": "bold yellow",
    "error": "bold red", "state": "dim", "info": "", "ui": "magenta"})
