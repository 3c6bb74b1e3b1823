"""Room: what the cockpit's rooms share. CockpitApp (tui.app: the layout and the messages) is made of
rooms, each a mixin in its own module: the snapshot intake (tui.intake), the training controls
(tui.controls), the lifecycle (tui.lifecycle) and the views (tui.views). They are mixins, not objects
the app holds, because Textual looks a key's action (``action_…``), a message's handler (``on_…``) and its overrides
(``check_action``, ``exit``) up on the App itself, and because they share the app's state: the newest
snapshot, paused, quitting. That state is declared here, once, and set by CockpitApp.__init__.
"""

from __future__ import annotations

from typing import Any

from textual.app import App

from babyllm.calligraphist import Calligraphist
from babyllm.events import EventKind
from babyllm.snapshot import Event, History, Snapshot
from tui.asked import Asked
from tui.keys import Action, Keys
from tui.pace import Pace
from tui.refresh import Refresher
from tui.tutor_thread import TutorThread
from tui.widgets.base import Pane
from tui.widgets.chat import ChatPane
from tui.widgets.events import EventsPane
from tui.widgets.status import StatusBar, TokenRate


class Room(App[int]):
    """The state every room of CockpitApp reads or writes, and the helpers they all use."""

    viewer: bool  # a viewer (--watch): no training controls
    attached: bool  # the Tutor trains in another process (--attach)
    actions: tuple[Action, ...]
    keys: Keys  # the action table's keys, for every text that names one
    calligraphist: Calligraphist
    pace: Pace
    token_rate: TokenRate
    panes: list[Pane]
    refresher: Refresher
    status: StatusBar
    snapshot: Snapshot | None  # the newest one
    paused: bool
    quitting: bool
    compact: bool  # one pane at a time (a small terminal)
    active_pane: str  # the pane shown when compact (its tab is selected)
    exit_code: int
    failure: str | None
    _tutor_thread: TutorThread
    asked: Asked  # the live settings asked for and not yet shown by a snapshot

    @property
    def tutor(self) -> Any:
        """The Tutor (a Watcher in a viewer), or None while it is still being built."""
        return self._tutor_thread.tutor

    @property
    def tutor_thread(self) -> TutorThread:
        return self._tutor_thread

    @property
    def history(self) -> History | None:
        return getattr(self.tutor, "history", None)

    def pane(self, name: str) -> Pane:
        return next(p for p in self.panes if name == p.NAME)

    @property
    def chat_pane(self) -> ChatPane:
        return self.pane(ChatPane.NAME)  # type: ignore[return-value]

    @property
    def events_pane(self) -> EventsPane:
        return self.pane(EventsPane.NAME)  # type: ignore[return-value]

    def _step(self) -> int:
        return self.snapshot.step if self.snapshot else 0

    def _event(self, kind: EventKind, text: str) -> None:
        """A line in the event log (the cockpit's own: a key pressed, a chat failing)."""
        self.events_pane.add(Event(self._step(), kind, text))

    def _ui_event(self, text: str) -> None:
        self._event("ui", text)

