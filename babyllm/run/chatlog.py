"""Chat text made safe to show (control characters as symbols) and the run's chat.log of every exchange."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from babyllm.snapshot import Say


def _visible_table(keep: str) -> dict[int, str]:
    table = {c: chr(0x2400 + c) for c in range(0x20) if chr(c) not in keep}  # control pictures: \x1b -> ␛
    table[0x7F] = "\u2421"
    table.update({c: "\ufffd" for c in range(0x80, 0xA0)})  # C1 controls
    return table


SCREEN = _visible_table("\n\t")  # an untrained model emits any byte: never let it drive the terminal


LOG = {**_visible_table("\t"), ord("\\"): "\\\\", ord("\n"): "\\n", 0x2028: "\\u2028", 0x2029: "\\u2029"}


def visible(text: str) -> str:
    """Text safe to print to a terminal: control characters other than new line and tab shown as symbols."""
    return text.translate(SCREEN)


class ChatLog:
    """Appends timestamped `you:`/`baby:` lines to chat.log in the run directory; a failure is said once."""

    def __init__(self, path: Path, warn: Say) -> None:
        self.path = path
        self.warn = warn
        self.broken = False

    def write(self, who: str, text: str) -> None:
        if self.broken:
            return
        stamp = datetime.now().isoformat(timespec="seconds")
        body = text.translate(LOG)  # one line per entry: new lines as \\n, controls as symbols
        try:
            with self.path.open("a", encoding="utf-8", errors="replace") as fh:
                fh.write(f"{stamp} {who}: {body}\n")
        except OSError as e:
            self.broken = True
            self.warn(f"warning: cannot write {self.path} ({e.strerror}); chatting without a log")
