"""Asked: the live settings a cockpit asked the run for that its snapshots do not show yet, so the keys that
derive a new value (the learning-rate keys) and what the palette and the form call "now" start from them."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from babyllm.snapshot import Snapshot

# An asked setting that no snapshot shows this long after, while the run took two steps, was refused
# (or overtaken): the snapshot's value is the truth again.
ASKED_STALE_S = 5.0


def _same(a: object, b: object) -> bool:
    """Equal as settings are: a rate parsed from the text it was sent as may differ in its last bit."""
    numbers = all(isinstance(x, int | float) and not isinstance(x, bool) for x in (a, b))
    if numbers:
        return math.isclose(a, b, rel_tol=1e-9)  # type: ignore[arg-type]
    return a == b


@dataclass(frozen=True)
class _Ask:
    value: object
    step: int  # the newest snapshot's step when it was asked
    at: float  # when (the clock's seconds)


class Asked:
    """The live settings this cockpit asked for that the run's snapshots do not show yet: queued until the
    run's next step, or still on their way over the socket (an attached cockpit). What the keys and the
    palette derive a value from (< and > halve and double train.lr; the form and the palette's "now") is
    the newest asked value, else the snapshot's, so two presses before the next step compound."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._asked: dict[str, list[_Ask]] = {}
        self._base: dict[str, object] = {}  # each key's value in the snapshots when it was first asked

    def ask(self, key: str, value: object, snap: Snapshot | None) -> None:
        if key not in self._asked and snap is not None:
            self._base[key] = snap.settings.get(key)
        self._asked.setdefault(key, []).append(_Ask(value, snap.step if snap else 0, self._clock()))

    def seen(self, snap: Snapshot) -> None:
        """A new snapshot: an asked value it shows (changed from before) is done, with those asked before it;
        one it never shows, after ASKED_STALE_S and two of the run's steps, was refused."""
        now = self._clock()
        for key in list(self._asked):
            value, asks = snap.settings.get(key), self._asked[key]
            if not _same(value, self._base.get(key)):
                done = [i for i, a in enumerate(asks) if _same(a.value, value)]
                if done:
                    del asks[:done[-1] + 1]
                    self._base[key] = value
            asks[:] = [a for a in asks if not (snap.step >= a.step + 2 and now - a.at > ASKED_STALE_S)]
            if not asks:
                del self._asked[key]
                self._base.pop(key, None)

    def values(self, settings: Mapping[str, object]) -> dict[str, object]:
        """The live settings as they will be once what was asked is applied."""
        return {**settings, **{key: asks[-1].value for key, asks in self._asked.items()}}
