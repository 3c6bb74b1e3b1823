"""Messages to the cockpit: from worker threads (the Tutor, chat streams), and from its panes.

Every one of them is posted with ``post_message``, which is thread-safe and never blocks the poster.
They are dataclasses (Textual's Message initialises itself in ``__post_init__``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from textual.message import Message

from babyllm.snapshot import Snapshot


@dataclass
class SnapshotReady(Message):
    """The Tutor published a snapshot. Coalesces: a newer one replaces any still waiting in the queue."""

    snapshot: Snapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SnapshotReady)


@dataclass
class TutorReady(Message):
    """The Tutor was built (in the worker thread) and is about to train."""

    tutor: Any


@dataclass
class TutorFinished(Message):
    """Tutor.run() returned (finished its steps, or was stopped)."""

    result: str | None


@dataclass
class TutorFailed(Message):
    """Building or running the Tutor raised; ``details`` is the traceback (empty for a BabyError)."""

    message: str
    details: str = ""
    exit_code: int = 1  # 2: a user mistake found late (a BabyError), as the CLI exits for one


@dataclass
class TutorSaid(Message):
    """A progress line from the Tutor while it starts (tokenizer training, encoding...)."""

    text: str


@dataclass
class TutorProgress(Message):
    """How preparing the corpus goes while the Tutor is built (coalesced: only the newest matters)."""

    text: str

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, TutorProgress)


@dataclass
class ChatPiece(Message):
    """A piece of a streamed chat reply (posted to the chat pane by its worker)."""

    bubble: ClassVar[bool] = False  # the chat pane handles it; nothing above it should

    text: str


@dataclass
class ChatDone(Message):
    """A chat reply ended; ``error`` says why when it ended badly."""

    bubble: ClassVar[bool] = False

    error: str | None = None



@dataclass
class Flash(Message):
    """A pane asks for a short note on the status line (it confirms a key: "loss plot: log scale on, …")."""

    text: str
    seconds: float = 4.0


@dataclass
class RedrawWanted(Message):
    """A pane's plot is to be redrawn on the next tick, due or not (it was resized, its settings changed)."""

    pane: str  # its NAME
