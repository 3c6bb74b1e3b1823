"""Modal screens: help, a yes/no confirmation (quit, roll back) and the Tutor's error."""

from __future__ import annotations

from typing import TypeVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from babyllm.infer2.commands import help_examples

# (keys, what they do) in the order the help screen lists them.
HELP: tuple[tuple[str, str], ...] = (
    ("space  p", "pause / resume training (also resumes after a NaN alarm)"),
    ("s", "save now (the rolling save a resume starts from)"),
    ("c", "checkpoint (a step-numbered save that is kept)"),
    ("r", "roll back to the last save (asks: ctrl+y confirms; at once after a NaN alarm)"),
    ("i  ctrl+t", "chat: focus the chat input (shows the chat pane)"),
    ("escape", "leave the chat input / close a dialog / un-maximise"),
    ("1 … 7", "stats loss chat windows timing sample log: show one (small"),
    ("", "terminal) or maximise it (big terminal; again or 0 restores)"),
    ("0", "back to all panes"),
    ("tab  shift+tab", "move focus between panes (not out of the chat input: esc)"),
    ("l", "loss plot: log scale on/off"),
    ("m", "loss plot: smoothing on/off"),
    ("+  -", "loss plot: stronger / weaker smoothing"),
    ("[  ]", "stats: previous / next stat whose band thresholds are shown"),
    ("? f1", "this help"),
    ("ctrl+p", "command palette: every action here, by name"),
    ("q  ctrl+c", "quit: asks, then saves, stops the Tutor and exits"),
)

CHAT_HELP = "chat commands: " + help_examples()


Answer = TypeVar("Answer")


class Dialog(ModalScreen[Answer]):
    """A modal that answers once: a key and a click landing together (or a key repeated faster
    than the screen pops) must not dismiss it twice, which Textual reports as a crash."""

    _answered = False

    def answer_once(self, result: Answer) -> None:
        if self._answered or not self.is_current:
            return
        self._answered = True
        self.dismiss(result)


class HelpScreen(Dialog[None]):
    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "close")]
    TITLE = "babyllm-tui keys"
    ROWS = HELP
    CHAT = CHAT_HELP

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        for keys, what in self.ROWS:
            table.add_row(keys, what)
        with VerticalScroll(id="help-box", classes="dialog"):
            yield Static(Text(self.TITLE, style="bold"))
            yield Static(table)
            yield Static(Text(self.CHAT, style="dim"))
            yield Static(Text("The mouse works too: click tabs, panes, buttons. Escape closes.", style="dim"))

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.answer_once(None)


class ConfirmScreen(Dialog[bool]):
    """Yes/no question; y (or ``yes_key``) = yes, n/escape = no; the buttons work too.

    A destructive question passes a yes_key no one types by accident (ctrl+y): then neither a
    letter nor enter confirms it, so words typed by someone who thinks they are in the chat can't.
    """

    BINDINGS = [Binding("n,escape", "answer(False)", "no")]

    def __init__(self, question: str, yes: str = "Yes", yes_key: str = "y") -> None:
        super().__init__()
        self.question = question
        self.yes = yes
        self.yes_key = yes_key
        self._bindings.bind(yes_key if yes_key != "y" else "y,enter", "answer(True)", "yes")

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box", classes="dialog"):
            yield Static(self.question, id="confirm-question")
            with Horizontal(id="confirm-buttons"):
                yield Button(f"{self.yes} ({self.yes_key})", variant="primary", id="yes")
                yield Button("No (n)", id="no")

    def on_mount(self) -> None:
        if self.yes_key != "y":  # destructive: enter or space on the focused button must not confirm
            self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.answer_once(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.answer_once(yes)


class ErrorScreen(Dialog[None]):
    """The Tutor stopped with an error; the panes stay readable behind it and the last save is untouched."""

    BINDINGS = [Binding("escape", "dismiss", "look at the panes"), Binding("q", "app.quit_now", "quit")]

    def __init__(self, message: str, details: str = "") -> None:
        super().__init__()
        self.message = message
        self.details = details

    def compose(self) -> ComposeResult:
        with Vertical(id="error-box", classes="dialog"):
            yield Static(Text("Training stopped with an error", style="bold red"))
            yield Static(Text(self.message))
            if self.details:
                with VerticalScroll(id="error-details"):
                    yield Static(Text(self.details, style="dim"))
            yield Static(Text("The last save is intact. q quits, escape shows the panes.", style="dim"))

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.answer_once(None)
