"""The chat slash commands: one table that Infer2's parser dispatches on and every help text is made from."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from babyllm.errors import BabyError

# What a command does: set a sampling setting, or one of Infer2's own actions.
SET = "set"
HELP = "help"
RESET = "reset"
SETTINGS = "settings"


def parse_float(text: str, label: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BabyError(f"{label} '{text}': not a number") from None
    if not math.isfinite(value):
        raise BabyError(f"{label} '{text}': must be a finite number")
    return value


def parse_int(text: str, label: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise BabyError(f"{label} '{text}': not a whole number") from None


def parse_seed(text: str, label: str) -> int | None:
    if text.lower() in ("off", "none", "random"):
        return None
    return parse_int(text, label)


@dataclass(frozen=True)
class ChatCommand:
    """One slash command: how it is typed, what help says about it, and what it does."""

    name: str  # "/temp"
    argument: str = ""  # the value it takes, as help names it ("T"); "" = none
    description: str = ""  # a note after it in the /help line, e.g. "0 = greedy"
    example: str = ""  # a value the help screens show it with ("0.8")
    aliases: tuple[str, ...] = ()
    action: str = SET
    setting: str = ""  # SET: the Settings field
    label: str = ""  # SET: the setting's name in replies and errors
    parse: Callable[[str, str], object] = parse_float  # SET: text -> value (raises BabyError)

    def usage(self) -> str:
        """"/temp T (0 = greedy)": the command as the /help line lists it."""
        text = f"{self.name} {self.argument}" if self.argument else self.name
        return f"{text} ({self.description})" if self.description else text

    def shown(self) -> str:
        """"/temp 0.8": the command as the help screens show it."""
        return f"{self.name} {self.example}" if self.example else self.name


COMMANDS: tuple[ChatCommand, ...] = (
    ChatCommand("/temp", "T", "0 = greedy", "0.8", ("/temperature",), setting="temperature", label="temperature"),
    ChatCommand("/topk", "K", "0 = off", "40", setting="top_k", label="top-k", parse=parse_int),
    ChatCommand("/topp", "P", "1 = off", "0.9", setting="top_p", label="top-p"),
    ChatCommand("/max", "N", "", "200", setting="max_tokens", label="max tokens", parse=parse_int),
    ChatCommand("/penalty", "R", "1 = off", "1.2", setting="repetition_penalty", label="repetition penalty"),
    ChatCommand("/seed", "S", "or /seed off", "3", setting="seed", label="seed", parse=parse_seed),
    ChatCommand("/settings", action=SETTINGS),
    ChatCommand("/reset", description="forget the conversation", action=RESET),
    ChatCommand("/help", aliases=("/?",), action=HELP),
)

# The read-only viewer's chat (tui.watch) adds this one and handles it itself.
RELOAD = ChatCommand("/reload", description="load the newest save at the next message", action="reload")


def cut_at_limit() -> str:
    """The mark after a reply that stopped at the token limit (Infer2.hit_limit), in `babyllm chat` and the
    cockpit's chat alike: "[stopped at the token limit: /max N for longer replies]"."""
    limit = next(c for c in COMMANDS if c.setting == "max_tokens")
    return f"[stopped at the token limit: {limit.name} {limit.argument} for longer replies]"


def find(name: str, commands: Iterable[ChatCommand] = COMMANDS) -> ChatCommand | None:
    """The command typed as `name` (lower case, with its slash), or None."""
    return next((c for c in commands if name == c.name or name in c.aliases), None)


def help_line(extra: tuple[ChatCommand, ...] = ()) -> str:
    """The /help reply: "commands: /temp T (0 = greedy), ..., /help"."""
    return "commands: " + ", ".join(c.usage() for c in _listed(extra))


def help_examples(extra: tuple[ChatCommand, ...] = ()) -> str:
    """The help screens' line: "/temp 0.8  /topk 40  ...  /help"."""
    return "  ".join(c.shown() for c in _listed(extra))


def _listed(extra: tuple[ChatCommand, ...]) -> list[ChatCommand]:
    """The commands with `extra` before /help (which stays last)."""
    *rest, last = COMMANDS
    return [*rest, *extra, last]
