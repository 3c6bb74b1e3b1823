"""Infer2: one conversation with a (possibly training) BabyLLM."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Iterator
from contextlib import nullcontext
from typing import Any

import torch
from tokenizers import Tokenizer

from babyllm.config import ChatConfig
from babyllm.errors import BabyError
from babyllm.infer2 import commands
from babyllm.infer2.detokenizer import TokenText
from babyllm.infer2.sampling import sample_next
from babyllm.infer2.settings import Settings, show
from babyllm.infer2.stops import StopRelease
from babyllm.infer2.threads import native_threads
from babyllm.model.network import BabyLLM, State

NOTICE_LIMIT = 50  # notices kept when nobody reads them
CPU_THREADS = 1  # intra-op threads for a chat forward on CPU (see babyllm.infer2.threads)


class Infer2:
    """A conversation with a (possibly training) BabyLLM: streamed replies, commands and a memory.

    A reply is a prefill of the prompt in one `BabyLLM.run(..., keep_state=True)` pass, then one token
    per call carrying the model's `State` (the windows' history, at most one context long, and both
    memories' buffers), so the work per token never grows with the length of the conversation. The
    State survives between replies until `reset()`.

    Safe beside a training Tutor on the same in-memory model:
    - every forward runs under `torch.inference_mode()` and, if a lock is given, holds it only for that
      forward (the prefill or one token), so the optimizer never changes weights half-way through one;
    - sampling uses its own `torch.Generator`, never the global RNG, so training results are unchanged;
    - the model's train/eval flag is left alone (babyLLM has no dropout or batch norm).
    """

    def __init__(
        self,
        model: BabyLLM,
        tokenizer: Tokenizer,
        settings: Settings | None = None,
        lock: threading.Lock | None = None,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.settings = (settings or Settings.from_config(ChatConfig())).validate()
        self.lock = lock
        self.cpu_threads: int | None = CPU_THREADS  # intra-op threads per forward on CPU (None = torch's)
        self.text = TokenText(tokenizer)
        self.notices: list[str] = []
        self.hit_limit = False  # whether the last reply stopped at max_tokens (not by itself or a stop text)
        self.generator = torch.Generator()
        self._seed_generator()
        self._busy = threading.Lock()  # one reply at a time per conversation
        self._forget()

    # --- public API -----------------------------------------------------------------------------------

    @property
    def context(self) -> int:
        return self.model.cfg.context

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def reset(self) -> None:
        """Forget the conversation (the model's state and the recent tokens); reseed if a seed is set.

        Called while a reply is streaming (from another thread), it takes effect when that reply ends.
        """
        if not self._busy.acquire(blocking=False):
            self._reset_pending = True
            return
        try:
            self._forget()
        finally:
            self._busy.release()

    def _forget(self) -> None:
        self._reset_pending = False
        self._state: State | None = None
        self._pending: list[int] = []  # sampled but not yet fed to the model
        self._recent: list[int] = []  # recent token ids, for the repetition penalty
        self._seed_generator()

    def take_notices(self) -> list[str]:
        """The notices so far, emptied."""
        out, self.notices[:] = list(self.notices), []
        return out

    def reply(self, prompt: str) -> str:
        return "".join(self.stream(prompt))

    def stream(self, prompt: str) -> Iterator[str]:
        """Yield the reply to `prompt` as text pieces while tokens are sampled; the conversation continues."""
        if not isinstance(prompt, str):
            raise BabyError(f"prompt must be text, got {type(prompt).__name__}")
        ids = self.tokenizer.encode(prompt).ids if prompt else []
        if not ids and not self._pending and self._state is None:
            raise BabyError("empty prompt: give some text for the model to continue")
        return self._generate(ids)

    def command(self, line: str) -> str:
        """Run a slash command ("/temp 0.8", "/reset", ...; see babyllm.infer2.commands); returns a reply line.

        A bad value raises BabyError and leaves the settings unchanged.
        """
        parts = line.strip().split()
        if not parts or not parts[0].startswith("/"):
            raise BabyError(f"'{line.strip()}' is not a command: commands start with / (type /help)")
        name, args = parts[0].lower(), parts[1:]
        cmd = commands.find(name)
        if cmd is None:
            raise BabyError(f"unknown command '{parts[0]}': type /help for the list")
        if cmd.action == commands.HELP:
            return commands.help_line()
        if cmd.action == commands.SETTINGS:
            return self.describe()
        if cmd.action == commands.RESET:
            self._expect_args(name, args, 0)
            return self._reset_reply()
        return self._set(cmd, name, args)

    def describe(self) -> str:
        return self.settings.describe()

    # --- internals ------------------------------------------------------------------------------------

    def _reset_reply(self) -> str:
        self.reset()
        if self._reset_pending:
            return "the conversation will be forgotten when this reply ends"
        return "conversation forgotten: the next prompt starts afresh"

    def _set(self, cmd: commands.ChatCommand, name: str, args: list[str]) -> str:
        """A setter command: no value shows the setting, one value sets it (validated first)."""
        if not args:
            return f"{cmd.label} is {show(getattr(self.settings, cmd.setting))}"
        self._expect_args(name, args, 1)
        value = cmd.parse(args[0], cmd.label)
        change: dict[str, Any] = {cmd.setting: value}  # (parse gave the field's type; validate checks it)
        self.settings = dataclasses.replace(self.settings, **change).validate()
        if cmd.setting == "seed":
            self._seed_generator()
        return f"{cmd.label} set to {show(value)}"

    @staticmethod
    def _expect_args(name: str, args: list[str], n: int) -> None:
        if len(args) != n:
            raise BabyError(f"{name}: expected {n} value{'s' if n != 1 else ''}, got {len(args)} (type /help)")

    def _seed_generator(self) -> None:
        if self.settings.seed is None:
            self.generator.seed()  # non-deterministic, and never touches the global RNG
        else:
            self.generator.manual_seed(self.settings.seed)

    def _notice(self, message: str) -> None:
        self.notices.append(message)
        del self.notices[:-NOTICE_LIMIT]

    def _forward(self, ids: list[int]) -> torch.Tensor:
        """Feed ids after the current state; returns the fp32 CPU logits [V] of the last position."""
        device = self.device
        x = torch.tensor([ids], dtype=torch.long, device=device)
        threads = native_threads().limit(self.cpu_threads) if device.type == "cpu" else nullcontext()
        with threads, torch.inference_mode(), (self.lock if self.lock is not None else nullcontext()):
            out = self.model.run(x, self._state, keep_state=True)
            logits = out.logits[0, -1].float().cpu()
        self._state = out.state
        self._pending = []
        return logits

    def _generate(self, prompt_ids: list[int]) -> Iterator[str]:
        if not self._busy.acquire(blocking=False):
            raise BabyError("a reply is already being generated in this conversation")
        try:
            yield from self._generate_locked(prompt_ids)
        finally:
            if self._reset_pending:
                self._forget()
            self._busy.release()

    def _generate_locked(self, prompt_ids: list[int]) -> Iterator[str]:
        s = dataclasses.replace(self.settings).validate()  # this reply's settings, even if changed meanwhile
        self.hit_limit = False
        feed = self._feed(prompt_ids)
        text = self.text.stream()
        release = StopRelease(s.stop)
        vocab = min(self.text.size, self.model.cfg.vocab)
        logits = self._forward(feed) if feed else None
        for i in range(s.max_tokens):
            if logits is None:  # nothing to feed (a finished reply always leaves its last token to feed)
                break
            token = self._sample(logits[:vocab], s)
            if token in self.text.special:  # the model ended the text
                break
            piece, stopped = release.push(text.push(token))
            if piece:
                yield piece
            if stopped:
                return
            if i + 1 < s.max_tokens:
                logits = self._forward([token])
        else:
            self.hit_limit = True
        tail = release.finish(text.flush())
        if tail:
            yield tail

    def _feed(self, prompt_ids: list[int]) -> list[int]:
        """The tokens the next forward takes: the last reply's unfed token and the prompt, at most a context."""
        feed = self._pending + prompt_ids
        if len(feed) > self.context:
            self._notice(f"prompt longer than the context: kept the last {self.context} tokens")
            feed = feed[-self.context :]
        self._remember(prompt_ids)
        return feed

    def _sample(self, logits: torch.Tensor, s: Settings) -> int:
        """The next token (sampling is on the CPU, single-threaded there like the forwards)."""
        with native_threads().limit(self.cpu_threads), torch.inference_mode():
            token = sample_next(logits, s, self._recent, self.generator)
        self._pending = [token]
        self._remember([token])
        return token

    def _remember(self, ids: list[int]) -> None:
        self._recent.extend(ids)
        keep = max(self.settings.penalty_window, 1)
        if len(self._recent) > 4 * keep:
            del self._recent[:-keep]
