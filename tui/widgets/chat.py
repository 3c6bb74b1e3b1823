"""Chat pane: talk to the live model (Infer2) while it trains; replies stream in piece by piece.

The pane owns the conversation: the app hands it the chat (an Infer2-like object: ``stream``,
``command``, ``notices``) and the run's chat log once the Tutor is built; a reply streams in a worker
thread of the pane's, which posts each piece back to it.
"""

from __future__ import annotations

import contextlib
import re
from typing import Any

from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Input, Static
from textual.worker import get_current_worker

from babyllm.errors import BabyError
from babyllm.infer2.commands import cut_at_limit
from tui.keys import Keys, Scope
from tui.messages import ChatDone, ChatPiece
from tui.widgets.base import GuardedStatic, Pane, PaneKit

MAX_MESSAGES = 200
MAX_INPUT = 4000  # characters in one chat message: a huge paste is cut here, cheaply
# Control characters (escape sequences, BEL, tabs, newlines) are data in a chat message, never keys
# or terminal commands: each becomes a space. DEL and the C1 range too.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")
STILL_ANSWERING = "Still answering the last message; wait for it to finish."
NOT_YET = "The model is still starting (or chat is unavailable); try again in a moment."


def clean_text(text: str) -> str:
    """What a pasted or typed chat message may contain: printable text, at most MAX_INPUT characters."""
    return _CONTROL.sub(" ", text[: MAX_INPUT * 2])[:MAX_INPUT]


class ChatInput(Input):
    """The chat's input line. Focus leaves it only by esc (the app's binding): tab and shift+tab,
    typed or inside an unbracketed paste, would otherwise move focus and let the next typed words
    fire the cockpit's keys (its keys: the action table's chat rows). A bracketed paste is cleaned of
    control characters first."""

    def __init__(self, keys: Keys, **kwargs: Any) -> None:
        super().__init__(max_length=MAX_INPUT, **kwargs)
        keys.bind(self, Scope.CHAT)

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
    """The conversation: its lines, its input, and the worker that streams the model's replies."""

    NAME = "chat"
    SHORT = "chat"
    UPDATES = ("add_line", "add_notice", "start_reply", "append", "end_reply")
    TITLE = "chat"

    def __init__(self, key: str, kit: PaneKit) -> None:
        super().__init__(key, kit)
        self._reply: Static | None = None
        self._reply_text = Text()
        self.chat: Any = None  # set by connect(): an Infer2, or a viewer's WatchChat
        self._chat_log: Any = None  # babyllm.run.chatlog.ChatLog: the cockpit's chats go to the run's chat.log
        self.answering = False  # a reply is streaming
        self._reply_so_far = ""

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="chat-log"):
            yield GuardedStatic(Text("Talk to the model as it trains. /help lists the settings commands.", style="dim"))
        keys = self.kit.keys
        sends, leaves = keys.first("submit", Scope.CHAT), keys.first("leave", short=True)
        yield ChatInput(keys, placeholder=f"say something ({sends} sends, {leaves} leaves)", id="chat-input")

    def on_mount(self) -> None:
        keys = self.kit.keys
        self.border_subtitle = f"{keys.first('chat')} chat · {keys.first('leave', short=True)} leave"
        # Anchored: the newest line stays at the bottom as replies grow and at every size (a resize
        # re-lays it out there), until the user scrolls up to read; a new line anchors it again.
        self.query_one("#chat-log", VerticalScroll).anchor()

    def _add(self, widget: Static) -> None:
        log = self.query_one("#chat-log", VerticalScroll)
        log.mount(widget)
        extra = len(log.children) - MAX_MESSAGES
        for old in list(log.children)[:max(extra, 0)]:
            old.remove()
        log.scroll_end(animate=False)  # (after the layout: re-anchors if the user had scrolled up)

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
        self._reply.update(self._reply_text)  # (the anchored log keeps the reply's end in view)

    def end_reply(self, error: str | None = None, hit_limit: bool = False) -> None:
        if hit_limit and self._reply is not None:
            self._reply_text.append(f" {cut_at_limit()}", style="dim italic")
            self._reply.update(self._reply_text)
        if error:
            self.add_line("", error, "red")
        self._reply = None

    @on(Input.Submitted, "#chat-input")
    def submitted(self, event: Input.Submitted) -> None:
        text = clean_text(event.value).strip()
        event.input.value = ""
        if text:
            self.submit(text)

    # -- the conversation ----------------------------------------------------------------------

    def connect(self, chat: Any, chat_log: Any = None) -> None:
        """The chat to talk to (built when the Tutor is) and, if the run has a folder, its chat log."""
        self.chat, self._chat_log = chat, chat_log

    def submit(self, text: str) -> None:
        """A message typed in the input: a /command runs at once, anything else streams a reply."""
        if self.chat is None:
            self.add_line("", NOT_YET, "yellow")
        elif text.startswith("/"):
            self._command(text)
        elif self.answering:
            if self.last_line() != STILL_ANSWERING:  # once: an unbracketed paste submits many lines
                self.add_line("", STILL_ANSWERING, "yellow")
        else:
            self._ask(text)

    def _command(self, text: str) -> None:
        self.add_line("you", text, "dim")
        try:
            reply = self.chat.command(text)
        except BabyError as e:
            self.add_line("", str(e), "red")
        else:
            self.add_line("", reply, "dim")

    def _ask(self, text: str) -> None:
        if getattr(self.chat, "needs_load", False):  # a viewer's chat loads the newest save first
            self.add_line("", "loading the run's newest save on the CPU…", "dim italic")
        self.add_line("you", text)
        if self._chat_log is not None:
            self._chat_log.write("you", text)
        self._reply_so_far = ""
        self.start_reply()
        self.answering = True
        self._stream(text)

    def reload(self) -> str:
        """A viewer's chat: load the newest save at the next message; returns what it said."""
        try:
            reply = self.chat.reload()
        except Exception as e:  # noqa: BLE001 - the run's folder may be unreadable for a moment
            reply = f"cannot look for saves: {e}"
        self.add_line("", reply, "dim")
        return reply

    def stop_streaming(self) -> None:
        """The app is stopping: a reply still streaming ends at its next piece."""
        self.workers.cancel_group(self, "chat")

    @work(thread=True, group="chat", exit_on_error=False)
    def _stream(self, prompt: str) -> None:
        worker = get_current_worker()
        try:
            for piece in self.chat.stream(prompt):
                if worker.is_cancelled:
                    break
                self.post_message(ChatPiece(piece))
            self.post_message(ChatDone())
        except BabyError as e:
            self.post_message(ChatDone(str(e)))
        except Exception as e:  # noqa: BLE001 - a chat failure must not take the cockpit down
            self.post_message(ChatDone(f"chat failed: {type(e).__name__}: {e}"))

    def on_chat_piece(self, message: ChatPiece) -> None:
        self._show_notices()  # a trimmed prompt is said before the reply it concerns
        self.append(message.text)
        self._reply_so_far += message.text

    def on_chat_done(self, message: ChatDone) -> None:
        self.answering = False
        self._show_notices()
        self.end_reply(message.error, hit_limit=bool(getattr(self.chat, "hit_limit", False)) and not message.error)
        if self._chat_log is not None:
            self._chat_log.write("baby", self._reply_so_far)

    def _show_notices(self) -> None:
        notices = getattr(self.chat, "notices", None)
        if notices:
            for n in list(notices):
                self.add_notice(str(n))
            with contextlib.suppress(AttributeError):
                notices.clear()
