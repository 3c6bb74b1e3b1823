"""Messages from worker threads (the Tutor, chat streams) to the cockpit.

Every one of them is posted with ``post_message``, which is thread-safe and never blocks the poster.
"""

from __future__ import annotations

from typing import Any

from textual.message import Message

from babyllm.snapshot import Snapshot


class SnapshotReady(Message):
    """The Tutor published a snapshot. Coalesces: a newer one replaces any still waiting in the queue."""

    def __init__(self, snapshot: Snapshot) -> None:
        super().__init__()
        self.snapshot = snapshot

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SnapshotReady)


class TutorReady(Message):
    """The Tutor was built (in the worker thread) and is about to train."""

    def __init__(self, tutor: Any) -> None:
        super().__init__()
        self.tutor = tutor


class TutorFinished(Message):
    """Tutor.run() returned (finished its steps, or was stopped)."""

    def __init__(self, result: str | None) -> None:
        super().__init__()
        self.result = result


class TutorFailed(Message):
    """Building or running the Tutor raised; ``details`` is the traceback (empty for a BabyError)."""

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__()
        self.message = message
        self.details = details


class TutorSaid(Message):
    """A progress line from the Tutor while it starts (tokenizer training, encoding...)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class TutorProgress(Message):
    """How preparing the corpus goes while the Tutor is built (coalesced: only the newest matters)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, TutorProgress)


class ChatPiece(Message):
    """A piece of a streamed chat reply."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class ChatDone(Message):
    """A chat reply ended; ``error`` says why when it ended badly."""

    def __init__(self, error: str | None = None) -> None:
        super().__init__()
        self.error = error
