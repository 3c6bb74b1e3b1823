"""Chat pane: talk to the live model (Infer2) while it trains; replies stream in piece by piece."""

from __future__ import annotations

import re

from rich.text import Text
from textual import events, on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.widgets import Input, Static

from tui.widgets.base import GuardedStatic, Pane

MAX_MESSAGES = 200
MAX_INPUT = 4000  # characters in one chat message: a huge paste is cut here, cheaply
# Control characters (escape sequences, BEL, tabs, newlines) are data in a chat message, never keys
# or terminal commands: each becomes a space. DEL and the C1 range too.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
STILL_ANSWERING = "Still answering the last message; wait for it to finish."


def clean_text(text: str) -> str:
    """What a pasted or typed chat message may contain: printable text, at most MAX_INPUT characters."""
    return _CONTROL.sub(" ", text[: MAX_INPUT * 2])[:MAX_INPUT]


class ChatInput(Input):
    """The chat's input line. Focus leaves it only by esc (the app's binding): tab and shift+tab,
    typed or inside an unbracketed paste, would otherwise move focus and let the next typed words
    fire the cockpit's keys. A bracketed paste is cleaned of control characters first."""

    BINDINGS = [Binding("tab,shift+tab", "stay", show=False)]

    def __init__(self, **kwargs) -> None:  # type: ignore[no-untyped-def]
        super().__init__(max_length=MAX_INPUT, **kwargs)

    def action_stay(self) -> None:
        """A tab is a character no chat message needs: insert a space instead of moving focus."""
        self.insert_text_at_cursor(" ")

    def _on_paste(self, event: events.Paste) -> None:
        event.stop()
        event.prevent_default()
        text = clean_text(event.text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", " "))
        if text:
            room = MAX_INPUT - len(self.value) + len(self.selected_text)
            selection = self.selection
            if selection.is_empty:
                self.insert_text_at_cursor(text[: max(0, room)])
            else:
                self.replace(text[: max(0, room)], *selection)


class ChatPane(Pane):
    KEY = "3"
    NAME = "chat"
    SHORT = "chat"
    UPDATES = ("add_line", "add_notice", "start_reply", "append", "end_reply")
    TITLE = "chat"

    def __init__(self) -> None:
        super().__init__()
        self._reply: Static | None = None
        self._reply_text = Text()

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="chat-log"):
            yield GuardedStatic(Text("Talk to the model as it trains. /help lists the settings commands.", style="dim"))
        yield ChatInput(placeholder="say something (enter sends, esc leaves)", id="chat-input")

    def on_mount(self) -> None:
        self.border_subtitle = "i chat · esc leave"

    def _add(self, widget: Static) -> None:
        log = self.query_one("#chat-log", VerticalScroll)
        log.mount(widget)
        extra = len(log.children) - MAX_MESSAGES
        for old in list(log.children)[:max(extra, 0)]:
            old.remove()
        log.scroll_end(animate=False)

    def last_line(self) -> str:
        """The plain text of the last line in the chat log ("" if none)."""
        children = self.query_one("#chat-log", VerticalScroll).children
        if not children:
            return ""
        content = getattr(children[-1], "content", "")
        return content.plain if isinstance(content, Text) else str(content)

    def add_line(self, who: str, text: str, style: str = "") -> None:
        line = Text.assemble((f"{who} ", "bold"), (text, style)) if who else Text(text, style=style)
        self._add(GuardedStatic(line, classes="chat-line"))

    def add_notice(self, text: str) -> None:
        """A notice about the reply being written (e.g. a trimmed prompt): above that reply."""
        line = GuardedStatic(Text(text, style="dim italic"), classes="chat-line")
        if self._reply is not None and self._reply.parent is not None:
            self.query_one("#chat-log", VerticalScroll).mount(line, before=self._reply)
        else:
            self._add(line)

    def start_reply(self) -> None:
        self._reply_text = Text.assemble(("baby ", "bold magenta"))
        self._reply = GuardedStatic(self._reply_text, classes="chat-line")
        self._add(self._reply)

    def append(self, piece: str) -> None:
        if self._reply is None:
            self.start_reply()
        self._reply_text.append(piece)
        assert self._reply is not None
        self._reply.update(self._reply_text)
        self.query_one("#chat-log", VerticalScroll).scroll_end(animate=False)

    def end_reply(self, error: str | None = None, hit_limit: bool = False) -> None:
        if hit_limit and self._reply is not None:
            self._reply_text.append(" [stopped at the token limit: /max N for longer replies]", style="dim italic")
            self._reply.update(self._reply_text)
        if error:
            self.add_line("", error, "red")
        self._reply = None

    @on(Input.Submitted, "#chat-input")
    def submitted(self, event: Input.Submitted) -> None:
        text = clean_text(event.value).strip()
        event.input.value = ""
        if text:
            self.cockpit.chat_submit(text)
