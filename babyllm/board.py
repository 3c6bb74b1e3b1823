"""The snapshot board: recent events, their count, and the publish throttle, shared by the Tutor and the follower."""

from __future__ import annotations

import math
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from babyllm.run.runfiles import RECENT_EVENTS
from babyllm.snapshot import Event, Publish, Snapshot


class Board:
    """Snapshots of a source's fields plus recent events, published at most every `every` seconds (or forced)."""

    def __init__(self, publish: Publish | None = None, every: float = 0.25,
                 on_error: Callable[[Exception], None] | None = None) -> None:
        self.publish_cb = publish
        self.every = every
        self.on_error = on_error
        self.events: deque[Event] = deque(maxlen=RECENT_EVENTS)
        self.count = 0  # events so far (a reader compares it with the last count it saw)
        self.history = 0  # of them, those read back from the run's log: not news (a resume)
        self.current: Snapshot | None = None
        self._last = -math.inf

    def add(self, ev: Event) -> None:
        self.events.append(ev)
        self.count += 1

    def restore(self, events: Iterable[Event]) -> None:
        """Start from events read back from a run's log (a resume): shown as the run's history, never as news."""
        self.events.clear()
        self.events.extend(events)
        self.count = self.history = len(self.events)

    def build(self, **fields: Any) -> Snapshot:
        """A Snapshot of `fields` with the recent events (not published: see offer)."""
        return Snapshot(events=tuple(self.events), event_count=self.count, history_events=self.history, **fields)

    def due(self, force: bool = False) -> bool:
        return force or time.monotonic() - self._last >= self.every

    def offer(self, fields: Callable[[], dict[str, Any]], force: bool = False) -> bool:
        """Publish a snapshot of `fields()` if one is due (or forced); whether it was published.

        A failing reader is reported to `on_error`, never raised: it must not stop training or watching."""
        if not self.due(force):
            return False
        self._last = time.monotonic()
        snap = self.current = self.build(**fields())
        if self.publish_cb is not None:
            try:
                self.publish_cb(snap)
            except Exception as e:  # noqa: BLE001 - a broken reader must not stop training or watching
                if self.on_error is not None:
                    self.on_error(e)
        return True
