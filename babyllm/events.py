"""Event kinds and the one table of their colours (the headless printer's and the cockpit's event log)."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal, get_args

EventKind = Literal["info", "save", "checkpoint", "save_error", "val", "alarm", "alert", "error", "state", "ui"]
KINDS: tuple[str, ...] = get_args(EventKind)

# Rich styles; "ui" is the cockpit's own notes (a key pressed, a request refused); "alert" is babyllm.school.alerts';
# "save_error" a save or checkpoint that was not written (the Snapshot's last_save_error says why).
EVENT_STYLES: Mapping[str, str] = MappingProxyType({
    "save": "green", "checkpoint": "cyan", "save_error": "bold red", "val": "#ff8c00", "alarm": "bold red",
    "alert": "bold yellow", "error": "bold red", "state": "dim", "info": "", "ui": "magenta"})

# The kinds that say something went wrong: their messages are drawn red, and a stopped run's last one is noted.
FAILURE_KINDS: tuple[str, ...] = ("save_error", "alarm", "error")
