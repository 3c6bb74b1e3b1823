"""Chat pane: talk to the live model (Infer2) while it trains; replies stream in piece by piece."""

from __future__ import annotations

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Input, Static

from tui.widgets.base import Pane

MAX_MESSAGES = 200


class ChatPane(Pane):
    KEY = "3"
    NAME = "chat"
    SHORT = "chat"
    TITLE = "chat"

    def __init__(self) -> None:
        super().__init__()
        self._reply: Static | None = None
        self._reply_text = Text()

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="chat-log"):
            yield Static(Text("Talk to the model as it trains. /help lists the settings commands.", style="dim"))
        yield Input(placeholder="say something (enter sends, esc leaves)", id="chat-input")

    def on_mount(self) -> None:
        self.border_subtitle = "i chat · esc leave"

    def _add(self, widget: Static) -> None:
        log = self.query_one("#chat-log", VerticalScroll)
        log.mount(widget)
        extra = len(log.children) - MAX_MESSAGES
        for old in list(log.children)[:max(extra, 0)]:
            old.remove()
        log.scroll_end(animate=False)

    def add_line(self, who: str, text: str, style: str = "") -> None:
        line = Text.assemble((f"{who} ", "bold"), (text, style)) if who else Text(text, style=style)
        self._add(Static(line, classes="chat-line"))

    def start_reply(self) -> None:
        self._reply_text = Text.assemble(("baby ", "bold magenta"))
        self._reply = Static(self._reply_text, classes="chat-line")
        self._add(self._reply)

    def append(self, piece: str) -> None:
        if self._reply is None:
            self.start_reply()
        self._reply_text.append(piece)
        assert self._reply is not None
        self._reply.update(self._reply_text)
        self.query_one("#chat-log", VerticalScroll).scroll_end(animate=False)

    def end_reply(self, error: str | None = None) -> None:
        if error:
            self.add_line("", error, "red")
        self._reply = None

    @on(Input.Submitted, "#chat-input")
    def submitted(self, event: Input.Submitted) -> None:
        text = event.value.strip()
        event.input.value = ""
        if text:
            self.cockpit.chat_submit(text)
