"""Modal screens: help, a yes/no confirmation (quit, roll back), the Tutor's error and the live-setting form."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Button, Input, Static

from babyllm.infer2.commands import RELOAD, help_examples
from babyllm.live import LIVE_KEYS

CHAT_HELP = "chat commands: " + help_examples()
VIEWER_CHAT_HELP = "chat: " + help_examples(extra=(RELOAD,))


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
    """The keys, as the app's action table gives them (tui.actions.help_rows), and the chat's commands."""

    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "close")]

    def __init__(self, rows: Sequence[tuple[str, str]], *, title: str = "babyllm-tui keys", intro: str = "",
                 chat: str = CHAT_HELP) -> None:
        super().__init__()
        self.rows, self.heading, self.intro, self.chat = tuple(rows), title, intro, chat

    def compose(self) -> ComposeResult:
        table = Table.grid(padding=(0, 2))
        table.add_column(style="bold")
        table.add_column()
        if self.intro:
            table.add_row("", self.intro)
        for keys, what in self.rows:
            table.add_row(keys, what)
        with VerticalScroll(id="help-box", classes="dialog"):
            yield Static(Text(self.heading, style="bold"))
            yield Static(table)
            yield Static(Text(self.chat, style="dim"))
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


class AttachedQuitScreen(Dialog[str]):
    """q in an attached cockpit: leave the run training ("detach"), stop it ("stop", it saves) or cancel ("")."""

    BINDINGS = [Binding("d,enter", "answer('detach')", "detach"), Binding("s", "answer('stop')", "stop the run"),
                Binding("n,escape", "answer('')", "cancel")]

    DEFAULT_CSS = """
    #attached-quit-box { width: 56; }
    #attached-quit-buttons { height: auto; margin-top: 1; }
    #attached-quit-buttons Button { width: 100%; }
    """

    def compose(self) -> ComposeResult:
        with Vertical(id="attached-quit-box", classes="dialog"):
            yield Static("Leave the cockpit? Another process trains the run.")
            with Vertical(id="attached-quit-buttons"):
                yield Button("Detach: leave it training (d)", variant="primary", id="detach")
                yield Button("Stop the run: it saves, then stops (s)", variant="error", id="stop")
                yield Button("Cancel (n)", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.answer_once({"detach": "detach", "stop": "stop"}.get(event.button.id or "", ""))

    def action_answer(self, choice: str) -> None:
        self.answer_once(choice)


class SettingScreen(Dialog[tuple[str, str] | None]):
    """A live setting to change: its key (completed from babyllm.live.LIVE_KEYS) and its new value; enter in
    the value asks the run for it ((key, text) is the answer), escape cancels (None)."""

    BINDINGS = [Binding("escape", "cancel", "cancel")]

    def __init__(self, settings: dict[str, object], key: str = "") -> None:
        super().__init__()
        self.settings, self.key = settings, key

    def compose(self) -> ComposeResult:
        with Vertical(id="setting-box", classes="dialog"):
            yield Static("Change a live setting (applied at the next step; an event says so). Enter sets, "
                         "escape cancels.")
            yield Input(self.key, placeholder="key, e.g. train.lr", id="setting-key",
                        suggester=SuggestFromList(LIVE_KEYS, case_sensitive=False))
            yield Input(self._now(self.key), placeholder="value", id="setting-value")

    def on_mount(self) -> None:
        self.query_one("#setting-value" if self.key else "#setting-key", Input).focus()

    def _now(self, key: str) -> str:
        value = self.settings.get(key)
        return "" if value is None else f"{value:g}" if isinstance(value, float) else str(value)

    @on(Input.Submitted, "#setting-key")
    def _key_given(self, event: Input.Submitted) -> None:
        value = self.query_one("#setting-value", Input)
        value.value = value.value or self._now(event.value.strip())
        value.focus()

    @on(Input.Submitted, "#setting-value")
    def _value_given(self, event: Input.Submitted) -> None:
        key = self.query_one("#setting-key", Input).value.strip()
        if key and event.value.strip():
            self.answer_once((key, event.value.strip()))

    def action_cancel(self) -> None:
        self.answer_once(None)
