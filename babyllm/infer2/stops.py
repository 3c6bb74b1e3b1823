"""Stop strings: a reply's text is released only where it cannot be the start of one, and ends before one."""

from __future__ import annotations


class StopRelease:
    """A reply's text so far, and how much of it has been shown."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = stops
        self.text = ""
        self.shown = 0
        self.hold = max((len(s) for s in stops), default=0)  # a stop string may begin this far before `shown`

    def push(self, piece: str) -> tuple[str, bool]:
        """Add text; returns (the text now safe to show, whether the reply reached a stop string)."""
        self.text += piece
        cut = self._cut()
        if cut is not None:
            return self._take(cut), True
        held = find_partial(self.text, self.stops) if self.stops else 0
        return self._take(len(self.text) - held), False

    def finish(self, piece: str) -> str:
        """The rest of the reply (after its last text, `piece`), up to a stop string if one completed."""
        self.text += piece
        cut = self._cut()
        return self._take(len(self.text) if cut is None else cut)

    def _cut(self) -> int | None:
        return find_stop(self.text, self.stops, max(0, self.shown - self.hold)) if self.stops else None

    def _take(self, end: int) -> str:
        if end <= self.shown:
            return ""
        out, self.shown = self.text[self.shown:end], end
        return out


def find_stop(text: str, stops: tuple[str, ...], start: int) -> int | None:
    """Where the first stop string begins in text (searching from start), if any."""
    hits = [i for i in (text.find(s, start) for s in stops) if i >= 0]
    return min(hits) if hits else None


def find_partial(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest end of text that begins some stop string (to hold back for now)."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best
