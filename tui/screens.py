"""Modal screens: help, a yes/no confirmation (quit, roll back), the Tutor's error, the live-setting form
and the runs to compare. Their keys are the action table's rows of their scope (tui.actions, handed in
as a tui.keys.Keys), and so are the keys their texts name."""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from pathlib import Path
from typing import TypeVar

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.suggester import SuggestFromList
from textual.widgets import Button, Input, SelectionList, Static
from textual.widgets.selection_list import Selection

from babyllm.errors import BabyError
from babyllm.infer2.commands import RELOAD, help_examples
from babyllm.live import LIVE_KEYS
from babyllm.run.listing import RunRow, best_text
from babyllm.run.overlay import choices
from tui.keys import Keys, Scope

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

    def __init__(self, rows: Sequence[tuple[str, str]], *, keys: Keys, title: str = "babyllm-tui keys",
                 intro: str = "", chat: str = CHAT_HELP) -> None:
        super().__init__()
        self.rows, self.heading, self.intro, self.chat = tuple(rows), title, intro, chat
        self.keys = keys
        keys.bind(self, Scope.HELP)

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
            closes = self.keys.first("dismiss", Scope.HELP).capitalize()
            yield Static(Text(f"The mouse works too: click tabs, panes, buttons. {closes} closes.", style="dim"))

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.answer_once(None)


class ConfirmScreen(Dialog[bool]):
    """Yes/no question, on the keys of the table's question rows; the buttons work too.

    A ``risky`` question (its yes loses work) is answered yes only by a key no one types by accident
    (the risky question's row: ctrl+y): neither a letter nor enter confirms it, so words typed by
    someone who thinks they are in the chat can't.
    """

    def __init__(self, question: str, yes: str = "Yes", *, keys: Keys, risky: bool = False) -> None:
        super().__init__()
        self.question = question
        self.yes = yes
        self.risky = risky
        self.scope = Scope.RISKY_QUESTION if risky else Scope.QUESTION
        self.keys = keys
        keys.bind(self, self.scope)

    def compose(self) -> ComposeResult:
        with Vertical(id="confirm-box", classes="dialog"):
            yield Static(self.question, id="confirm-question")
            with Horizontal(id="confirm-buttons"):
                yield Button(f"{self.yes} ({self.keys.first('answer(True)', self.scope)})", variant="primary", id="yes")
                yield Button(f"No ({self.keys.first('answer(False)', self.scope)})", id="no")

    def on_mount(self) -> None:
        if self.risky:  # enter or space on the focused button must not confirm
            self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.answer_once(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.answer_once(yes)


class ErrorScreen(Dialog[None]):
    """The Tutor stopped with an error; the panes stay readable behind it and the last save is untouched."""

    def __init__(self, message: str, details: str = "", *, keys: Keys) -> None:
        super().__init__()
        self.message = message
        self.details = details
        self.keys = keys
        keys.bind(self, Scope.ERROR)

    def compose(self) -> ComposeResult:
        with Vertical(id="error-box", classes="dialog"):
            yield Static(Text("Training stopped with an error", style="bold red"))
            yield Static(Text(self.message))
            if self.details:
                with VerticalScroll(id="error-details"):
                    yield Static(Text(self.details, style="dim"))
            quits, shows = self.keys.first("app.quit_now", Scope.ERROR), self.keys.first("dismiss", Scope.ERROR)
            yield Static(Text(f"The last save is intact. {quits} quits, {shows} shows the panes.", style="dim"))

    def action_dismiss(self) -> None:  # type: ignore[override]
        self.answer_once(None)


class AttachedQuitScreen(Dialog[str]):
    """q in an attached cockpit: leave the run training ("detach"), stop it ("stop", it saves) or cancel ("")."""

    DEFAULT_CSS = """
    #attached-quit-box { width: 56; }
    #attached-quit-buttons { height: auto; margin-top: 1; }
    #attached-quit-buttons Button { width: 100%; }
    """

    def __init__(self, *, keys: Keys) -> None:
        super().__init__()
        self.keys = keys
        keys.bind(self, Scope.ATTACHED_QUIT)

    def compose(self) -> ComposeResult:
        def key(answer: str) -> str:
            return self.keys.first(f"answer('{answer}')", Scope.ATTACHED_QUIT)

        with Vertical(id="attached-quit-box", classes="dialog"):
            yield Static("Leave the cockpit? Another process trains the run.")
            with Vertical(id="attached-quit-buttons"):
                yield Button(f"Detach: leave it training ({key('detach')})", variant="primary", id="detach")
                yield Button(f"Stop the run: it saves, then stops ({key('stop')})", variant="error", id="stop")
                yield Button(f"Cancel ({key('')})", id="cancel")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.answer_once({"detach": "detach", "stop": "stop"}.get(event.button.id or "", ""))

    def action_answer(self, choice: str) -> None:
        self.answer_once(choice)


class PickList(SelectionList[str]):
    """The picker's list: a key (its pick_list rows: space) or a click ticks a run, enter shows the ticked ones."""

    def __init__(self, keys: Keys, *, id: str | None = None) -> None:  # noqa: A002 - Textual's name
        super().__init__(id=id)
        keys.bind(self, Scope.PICK_LIST)


class RunPicker(Dialog[list[Path] | None]):
    """The runs to overlay on the loss plot: the current run's siblings (read in a worker thread, as
    `babyllm runs` lists them), those picked before ticked. Answers the ticked runs' directories, or
    None when cancelled."""

    def __init__(self, root: Path, current: str, picked: Sequence[Path], keys: Keys) -> None:
        super().__init__()
        self.root, self.current, self.picked = root, current, {Path(p) for p in picked}
        self.keys = keys
        keys.bind(self, Scope.PICKER)

    def compose(self) -> ComposeResult:
        keys = self.keys
        ticks, shows = keys.first("select", Scope.PICK_LIST), keys.first("screen.apply", Scope.PICK_LIST)
        cancels = keys.first("cancel", Scope.PICKER)
        with Vertical(id="picker-box", classes="dialog"):
            yield Static(Text(f"Compare runs: overlay runs from {self.root}/ on the loss plot", style="bold"))
            yield Static(Text(f"the current run is always drawn (bright); {ticks} ticks a run, {shows} shows the "
                              f"ticked ones, {cancels} cancels", style="dim"))
            yield PickList(keys, id="picker-list")
            yield Static(Text(f"reading {self.root}/…", style="dim italic"), id="picker-note")
            with Horizontal(id="picker-buttons"):
                yield Button(f"Show ticked runs ({shows})", variant="primary", id="show")
                yield Button(f"Cancel ({keys.first('cancel', Scope.PICKER, short=True)})", id="cancel")

    def on_mount(self) -> None:
        self.query_one(PickList).focus()
        self._list_runs()

    @work(thread=True, exit_on_error=False)
    def _list_runs(self) -> None:
        try:
            rows, note = choices(self.root, self.current), ""
        except BabyError as e:
            rows, note = [], str(e)
        with contextlib.suppress(RuntimeError):  # the app closed while this listed
            self.app.call_from_thread(self._fill, rows, note)

    def _fill(self, rows: list[RunRow], note: str) -> None:
        width = max((len(r.name) for r in rows), default=0)
        options = [Selection(self._row_text(r, width), str(r.run_dir), r.run_dir in self.picked,
                             disabled=r.step is None) for r in rows]
        pick_list = self.query_one(PickList)
        pick_list.add_options(options)
        pick_list.highlighted = next((i for i, o in enumerate(options) if not o.disabled), None)
        if not note:
            greyed = " (greyed: nothing to draw yet)" if any(r.step is None for r in rows) else ""
            note = f"{len(rows)} other run{'s' if len(rows) != 1 else ''} in {self.root}/{greyed}" if rows else (
                f"no other runs in {self.root}/")
        self.query_one("#picker-note", Static).update(Text(note, style="dim"))

    @staticmethod
    def _row_text(r: RunRow, width: int) -> Text:
        steps = f"{r.step:,} steps" if r.step is not None else "no steps"
        best = f"best val {best_text(r.best_val, r.best_val_step)}"
        text = Text(f"{r.name:<{width}}  {steps:>14}  {best:<28}  ")
        text.append(f"{r.state}{f' pid {r.pid}' if r.live else ''}", style="dim")
        if r.note:
            text.append(f"  {r.note}"[:60], style="dim italic")
        return text

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "show":
            self.action_apply()
        else:
            self.action_cancel()

    def action_apply(self) -> None:
        self.answer_once([Path(v) for v in self.query_one(PickList).selected])

    def action_cancel(self) -> None:
        self.answer_once(None)


class SettingScreen(Dialog[tuple[str, str] | None]):
    """A live setting to change: its key (completed from babyllm.live.LIVE_KEYS) and its new value; enter in
    the value asks the run for it ((key, text) is the answer), escape cancels (None)."""

    def __init__(self, settings: dict[str, object], key: str = "", *, keys: Keys) -> None:
        super().__init__()
        self.settings, self.key = settings, key
        self.keys = keys
        keys.bind(self, Scope.SETTING)

    def compose(self) -> ComposeResult:
        sets, cancels = self.keys.first("submit", Scope.SETTING), self.keys.first("cancel", Scope.SETTING)
        with Vertical(id="setting-box", classes="dialog"):
            yield Static(f"Change a live setting (applied at the next step; an event says so). {sets.capitalize()} "
                         f"sets, {cancels} cancels.")
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
