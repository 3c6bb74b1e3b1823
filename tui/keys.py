"""What a row of the cockpit's action table is (Action), where its keys are bound (Scope), and Keys: one
table's keys as people read them, for the bindings of a dialog or widget and for the prose that names a key.

The table itself is tui.actions.ACTIONS. This module imports nothing of the cockpit's, so the panes and the
dialogs, which tui.actions imports through tui.panes, can take a Keys from the app without an import cycle.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from textual.binding import Binding
from textual.dom import DOMNode


class Where(Enum):
    """Which cockpit an action belongs to: the live one (it trains), the viewer (--watch) or both."""

    LIVE = "live"
    VIEWER = "viewer"
    BOTH = "both"

    def includes(self, viewer: bool) -> bool:
        return self is Where.BOTH or (self is Where.VIEWER) == viewer


class Scope(Enum):
    """Where a row's keys are bound: the cockpit itself (the app), or one dialog or widget. The values are
    the names a help text uses to quote a key ("{risky_question:answer(True)}", see Keys.say)."""

    COCKPIT = "cockpit"
    QUESTION = "question"  # a yes/no question (quit?)
    RISKY_QUESTION = "risky_question"  # a question whose yes loses work (roll back?): no letter confirms it
    ATTACHED_QUIT = "attached_quit"  # q in an attached cockpit: detach, stop the run or cancel
    ERROR = "error"  # the Tutor's error screen
    SETTING = "setting"  # the live-setting form
    PICKER = "picker"  # the runs to compare
    PICK_LIST = "pick_list"  # the picker's list of runs
    HELP = "help"
    CHAT = "chat"  # the chat input


@dataclass(frozen=True)
class Action:
    """One row of the table. ``keys`` are Textual key names ("space,p"). A row without an action only
    documents a key something else binds (tab, ctrl+p); one without keys is reached from the palette
    alone. Empty texts leave a row out of that place: no ``help``, not on the help screen; no
    ``palette``, not in the palette; ``footer`` False, bound but not in the footer.

    ``target`` names the pane whose ``action_…`` method runs (tui.panes; "" = the app's own); with
    ``show_target`` a one-pane-at-a-time (compact) cockpit shows that pane first. ``scopes`` say where the
    keys are bound; ``builtin`` rows document a key the widget binds itself (Input's enter)."""

    keys: str
    action: str
    label: str = ""  # the footer's word
    footer: bool = False
    help: str = ""
    palette: str = ""
    where: Where = Where.BOTH
    key_display: str | None = None  # the footer's key ("p" for "space,p")
    help_keys: str = ""  # the keys as shown, when not just the bound ones ("+  -": one help row for two)
    target: str = ""
    show_target: bool = False
    scopes: tuple[Scope, ...] = (Scope.COCKPIT,)
    builtin: bool = False

    def bound_keys(self, sep: str = "  ") -> str:
        """The keys this row binds, as people read them ("space  p", "?  f1")."""
        return sep.join(KEY_NAMES.get(k, k) for k in self.key_list())

    def key_list(self) -> list[str]:
        return [k for k in self.keys.split(",") if k]

    def help_text_keys(self) -> str:
        """The keys the help screen shows for this row."""
        return self.help_keys or self.bound_keys()

    def binding(self) -> Binding:
        return Binding(self.keys, self.action, self.label, show=bool(self.label and self.footer),
                       key_display=self.key_display)


KEY_NAMES = {"question_mark": "?", "plus": "+", "minus": "-", "equals_sign": "=",
             "left_square_bracket": "[", "right_square_bracket": "]", "less_than_sign": "<",
             "greater_than_sign": ">"}
SHORT_NAMES = {"escape": "esc"}  # how some prose spells a key ("esc leaves"; the help's key column: "escape")


def spoken(key: str, short: bool = False) -> str:
    """A Textual key name as people read it ("question_mark" -> "?"; short: "escape" -> "esc")."""
    name = KEY_NAMES.get(key, key)
    return SHORT_NAMES.get(name, name) if short else name


class Keys:
    """One action table's keys as people read them: every text that names a key asks here, so a key
    changed in the table changes everywhere (tui.actions.ACTIONS; tests pass their own tables)."""

    def __init__(self, actions: Iterable[Action]) -> None:
        self.actions = tuple(actions)

    def row(self, action: str, scope: Scope = Scope.COCKPIT) -> Action | None:
        """The first row with keys that binds `action` in `scope` (either cockpit's: texts name it alike)."""
        return next((a for a in self.actions if a.action == action and scope in a.scopes and a.keys), None)

    def all(self, action: str, scope: Scope = Scope.COCKPIT) -> str:
        """Every key of `action` ("space  p"; "" when none is bound)."""
        row = self.row(action, scope)
        return row.bound_keys() if row is not None else ""

    def first(self, action: str, scope: Scope = Scope.COCKPIT, short: bool = False) -> str:
        """The key a text names for `action` ("space" of "space,p")."""
        row = self.row(action, scope)
        return spoken(row.key_list()[0], short) if row is not None else ""

    def either(self, action: str, scope: Scope = Scope.COCKPIT) -> str:
        """Its keys as a sentence says them ("n or esc")."""
        row = self.row(action, scope)
        return " or ".join(spoken(k, short=True) for k in row.key_list()) if row is not None else ""

    def bindings(self, scope: Scope) -> list[Binding]:
        """The bindings of a dialog or widget, in either cockpit (the cockpit's own: tui.actions.bindings)."""
        return [a.binding() for a in self.actions if scope in a.scopes and a.keys and a.action and not a.builtin]

    def bind(self, node: DOMNode, scope: Scope) -> None:
        """Bind a scope's rows on this node (per instance: they follow this table). A key the node's class
        binds too is the table's now, as a subclass's BINDINGS would take it (PickList's enter)."""
        ours: dict[str, list[Binding]] = {}
        for b in self.bindings(scope):
            for key in b.key.split(","):
                ours.setdefault(key, []).append(b.with_key(key, b.key_display))
        node._bindings.key_to_bindings.update(ours)

    def say(self, text: str) -> str:
        """A text with the keys it quotes filled in: "{risky_question:answer(True)}" is that row's first key,
        "{cockpit:leave short}" the short spelling ("esc")."""
        return text.format_map(_Quoted(self))


class _Quoted:
    """Scope names -> that scope's keys, for str.format_map (Keys.say)."""

    def __init__(self, table: Keys) -> None:
        self.table = table

    def __getitem__(self, name: str) -> _ScopeKeys:
        return _ScopeKeys(self.table, Scope(name))


@dataclass(frozen=True)
class _ScopeKeys:
    """One scope's keys in a format field: its spec names the action ("answer(True)", "leave short")."""

    keys: Keys
    scope: Scope

    def __format__(self, spec: str) -> str:
        action, _, how = spec.partition(" ")
        return self.keys.first(action, self.scope, short=how == "short")
