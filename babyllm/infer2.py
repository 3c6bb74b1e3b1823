"""INFER2: streaming generation from the live model, with a conversation memory.

One `Infer2` is one conversation with a BabyLLM. A reply is a prefill of the prompt in one
`BabyLLM.run(..., keep_state=True)` pass, then one token per call carrying the model's `State`
(the windows' history, at most one context long, and both memories' buffers), so the work per token
never grows with the length of the conversation. The State survives between replies until `reset()`.

Safe beside a training Tutor on the same in-memory model:
- every forward runs under `torch.inference_mode()` and, if a lock is given, holds it only for that
  forward (the prefill or one token), so the optimizer never changes weights half-way through one;
- sampling uses its own `torch.Generator`, never the global RNG, so training results are unchanged;
- the model's train/eval flag is left alone (babyLLM has no dropout or batch norm).
"""

from __future__ import annotations

import codecs
import ctypes
import dataclasses
import math
import threading
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from typing import Callable, Iterator

import torch
from tokenizers import Tokenizer, decoders

from babyllm.config import ChatConfig
from babyllm.errors import BabyError
from babyllm.model import BabyLLM, State
from babyllm.runtime import openmp_library

NOTICE_LIMIT = 50  # notices kept when nobody reads them
CPU_THREADS = 1  # intra-op threads for a chat forward on CPU (see _NativeThreads)


@dataclass
class Settings:
    """Sampling settings; defaults come from the config's [chat] section."""

    temperature: float = 0.8  # 0 = greedy (argmax)
    top_k: int = 40  # 0 = off
    top_p: float = 0.95  # 1 = off
    repetition_penalty: float = 1.1  # 1 = off
    penalty_window: int = 64  # recent tokens the penalty looks at (0 = off)
    max_tokens: int = 200
    stop: tuple[str, ...] = ()  # the reply ends before the first of these it would contain
    seed: int | None = None  # None = a fresh random seed

    @classmethod
    def from_config(cls, chat: ChatConfig) -> "Settings":
        return cls(
            temperature=float(chat.temperature),
            top_k=int(chat.top_k),
            top_p=float(chat.top_p),
            repetition_penalty=float(chat.repetition_penalty),
            penalty_window=int(chat.penalty_window),
            max_tokens=int(chat.max_tokens),
        )

    def validate(self) -> "Settings":
        """Raise BabyError naming the first bad value; returns self so it can be chained."""
        checks = [
            (_finite(self.temperature) and self.temperature >= 0,
             f"temperature {self.temperature}: must be a number >= 0 (0 = greedy)"),
            (_whole(self.top_k) and self.top_k >= 0, f"top-k {self.top_k}: must be a whole number >= 0 (0 = off)"),
            (_finite(self.top_p) and 0 < self.top_p <= 1, f"top-p {self.top_p}: must be in (0, 1] (1 = off)"),
            (_finite(self.repetition_penalty) and self.repetition_penalty >= 1,
             f"repetition penalty {self.repetition_penalty}: must be a number >= 1 (1 = off)"),
            (_whole(self.penalty_window) and self.penalty_window >= 0,
             f"penalty window {self.penalty_window}: must be a whole number >= 0"),
            (_whole(self.max_tokens) and self.max_tokens >= 1,
             f"max tokens {self.max_tokens}: must be a whole number >= 1"),
            (self.seed is None or _whole(self.seed), f"seed {self.seed}: must be a whole number"),
            (all(isinstance(s, str) and s for s in self.stop), f"stop strings {self.stop!r}: must be non-empty text"),
        ]
        for ok, message in checks:
            if not ok:
                raise BabyError(message)
        return self


def _finite(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _whole(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


# --- text: token ids -> readable text, one token at a time ----------------------------------------------


def _byte_decoder() -> dict[str, int]:
    """The inverse of byte-level BPE's byte -> printable character table (GPT-2's bytes_to_unicode)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs)}


class TokenText:
    """Per-token bytes of a tokenizer, and which ids are special (end of text)."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self.size = tokenizer.get_vocab_size()
        added = tokenizer.get_added_tokens_decoder()
        self.special = frozenset(i for i, t in added.items() if t.special)
        self.byte_level = isinstance(tokenizer.decoder, decoders.ByteLevel)
        self.bytes: list[bytes] = []
        if self.byte_level:
            table = _byte_decoder()
            for i in range(self.size):
                token = tokenizer.id_to_token(i)
                if token is None:
                    self.bytes.append(b"")
                elif i in added:  # added tokens are stored as plain text, not byte-level characters
                    self.bytes.append(added[i].content.encode("utf-8"))
                elif all(ch in table for ch in token):
                    self.bytes.append(bytes(table[ch] for ch in token))
                else:  # not a byte-level token after all: fall back to the library's decoder
                    self.byte_level = False
                    break

    def stream(self) -> "TextStream":
        return TextStream(self)


class TextStream:
    """Turns token ids into text as they come, holding back a character split across tokens.

    Byte-level BPE can cut a multi-byte UTF-8 character between tokens; the incomplete tail is kept
    (not shown as U+FFFD) until the next token completes it. Bytes that can never form a character
    become U+FFFD as soon as that is certain, exactly as a whole-sequence decode would show them.
    """

    def __init__(self, table: TokenText) -> None:
        self.table = table
        self.utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.ids: list[int] = []  # only for the fallback path
        self.prefix = 0
        self.read = 0

    def push(self, token: int) -> str:
        if self.table.byte_level:
            return self.utf8.decode(self.table.bytes[token])
        # Fallback for other decoders (HF TextStreamer-style offsets).
        self.ids.append(token)
        decode = self.table.tokenizer.decode
        before = decode(self.ids[self.prefix : self.read], skip_special_tokens=False)
        text = decode(self.ids[self.prefix :], skip_special_tokens=False)
        if len(text) > len(before) and not text.endswith("\ufffd"):
            self.prefix, self.read = self.read, len(self.ids)
            return text[len(before) :]
        return ""

    def flush(self) -> str:
        """Whatever is still held back (an incomplete character becomes U+FFFD)."""
        if self.table.byte_level:
            return self.utf8.decode(b"", final=True)
        decode = self.table.tokenizer.decode
        before = decode(self.ids[self.prefix : self.read], skip_special_tokens=False)
        text = decode(self.ids[self.prefix :], skip_special_tokens=False)
        self.prefix = self.read = len(self.ids)
        return text[len(before) :]


# --- sampling -----------------------------------------------------------------------------------------


def apply_repetition_penalty(logits: torch.Tensor, recent: list[int], penalty: float) -> torch.Tensor:
    """CTRL-style: each distinct recent token's logit is divided by `penalty` if positive, else multiplied."""
    if penalty == 1.0 or not recent:
        return logits
    idx = torch.tensor(sorted(set(recent)), dtype=torch.long)
    chosen = logits[idx]
    logits[idx] = torch.where(chosen > 0, chosen / penalty, chosen * penalty)
    return logits


def tame_logits(logits: torch.Tensor) -> torch.Tensor:
    """Logits any softmax can take: float64, nan dropped (-inf), +inf tokens share the mass, max shifted to 0.

    Exploded but finite weights give logits of 1e9 and more, and a broken one nan or inf; sampling must
    still return a token (the reply is gibberish, not a crash).
    """
    x = torch.nan_to_num(logits.double(), nan=-math.inf)
    top = torch.isposinf(x)
    if bool(top.any()):
        return torch.where(top, 0.0, -math.inf).double()
    if bool(torch.isneginf(x).all()):
        return torch.zeros_like(x)
    return x - x.max()


def sample_next(logits: torch.Tensor, s: Settings, recent: list[int], generator: torch.Generator) -> int:
    """One token id from a [V] CPU logits vector, for any logits (finite, huge, inf or nan)."""
    logits = torch.nan_to_num(logits.double(), nan=-math.inf)
    if s.penalty_window > 0:
        logits = apply_repetition_penalty(logits, recent[-s.penalty_window :], s.repetition_penalty)
    logits = tame_logits(logits)
    if s.temperature == 0:
        return int(torch.argmax(logits))
    logits = tame_logits(logits / s.temperature)
    if 0 < s.top_k < logits.shape[0]:
        kth = torch.topk(logits, s.top_k).values[-1]
        logits = logits.masked_fill(logits < kth, -math.inf)
    if s.top_p < 1.0:
        sorted_logits, order = torch.sort(logits, descending=True)
        probs = torch.softmax(sorted_logits, dim=0)
        before = torch.cumsum(probs, dim=0) - probs  # mass of the tokens ranked above each one
        drop = before >= s.top_p  # the first token is always kept
        logits = logits.index_fill(0, order[drop], -math.inf)
    probs = torch.softmax(logits, dim=0)
    return int(torch.multinomial(probs, 1, generator=generator))


# --- threads -------------------------------------------------------------------------------------------


class _NativeThreads:
    """Per-thread OpenMP and MKL thread counts (the calling thread only; torch.set_num_threads is global).

    One token is a chain of matrix-vector products, bound by memory bandwidth: a second intra-op thread
    gains ~5% on an idle 2-core CPU but, when the cores are busy (the Tutor training in the same process,
    other programs), OpenMP teams spin against each other and generation gets 3-5x slower. So chat
    forwards on CPU run single-threaded in the caller's thread; the setting is restored afterwards and
    other threads (the Tutor's) never see it, so their speed and results are unchanged.
    """

    def __init__(self) -> None:
        self.omp_set = self.omp_get = self.mkl_set = None
        lib = openmp_library()
        if lib is None:
            return
        self.omp_set = getattr(lib, "omp_set_num_threads", None)
        self.omp_get = getattr(lib, "omp_get_max_threads", None)
        self.mkl_set = getattr(lib, "MKL_Set_Num_Threads_Local", None)  # the C API (lower case is Fortran)
        if self.omp_get is not None:
            self.omp_get.restype = ctypes.c_int
        if self.mkl_set is not None:
            self.mkl_set.restype = ctypes.c_int

    @contextmanager
    def limit(self, n: int | None) -> Iterator[None]:
        if not n or self.omp_set is None or self.omp_get is None:
            yield
            return
        torch.get_num_threads()  # torch's one-time per-thread set-up first, so it cannot undo ours later
        before = self.omp_get()
        if before <= n:
            yield
            return
        mkl_before = self.mkl_set(n) if self.mkl_set is not None else None
        self.omp_set(n)
        try:
            yield
        finally:
            self.omp_set(before)
            if mkl_before is not None:
                self.mkl_set(mkl_before)


_threads: _NativeThreads | None = None


def _native_threads() -> _NativeThreads:
    global _threads
    if _threads is None:
        _threads = _NativeThreads()
    return _threads


# --- the conversation -----------------------------------------------------------------------------------

HELP = (
    "commands: /temp T (0 = greedy), /topk K (0 = off), /topp P (1 = off), /max N, /penalty R (1 = off), "
    "/seed S (or /seed off), /settings, /reset (forget the conversation), /help"
)


class Infer2:
    """A conversation with a (possibly training) BabyLLM: streamed replies, commands and a memory."""

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
        """Run a slash command ("/temp 0.8", "/reset", ...); returns a short reply line.

        A bad value raises BabyError and leaves the settings unchanged.
        """
        parts = line.strip().split()
        if not parts or not parts[0].startswith("/"):
            raise BabyError(f"'{line.strip()}' is not a command: commands start with / (type /help)")
        name, args = parts[0].lower(), parts[1:]
        if name in ("/help", "/?"):
            return HELP
        if name == "/reset":
            self._expect_args(name, args, 0)
            self.reset()
            if self._reset_pending:
                return "the conversation will be forgotten when this reply ends"
            return "conversation forgotten: the next prompt starts afresh"
        if name == "/settings":
            return self.describe()
        if name not in SETTERS:
            raise BabyError(f"unknown command '{parts[0]}': type /help for the list")
        field, label, parse = SETTERS[name]
        if not args:
            return f"{label} is {_show(getattr(self.settings, field))}"
        self._expect_args(name, args, 1)
        value = parse(args[0], label)
        new = dataclasses.replace(self.settings, **{field: value}).validate()
        self.settings = new
        if field == "seed":
            self._seed_generator()
        return f"{label} set to {_show(value)}"

    def describe(self) -> str:
        s = self.settings
        return (
            f"temperature {s.temperature:g}, top-k {s.top_k}, top-p {s.top_p:g}, "
            f"repetition penalty {s.repetition_penalty:g} over {s.penalty_window} tokens, "
            f"max {s.max_tokens} tokens, seed {_show(s.seed)}"
        )

    # --- internals ------------------------------------------------------------------------------------

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
        threads = _native_threads().limit(self.cpu_threads) if device.type == "cpu" else nullcontext()
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
        feed = self._pending + prompt_ids
        if len(feed) > self.context:
            self._notice(f"prompt longer than the context: kept the last {self.context} tokens")
            feed = feed[-self.context :]
        self._remember(prompt_ids)
        text = self.text.stream()
        vocab = min(self.text.size, self.model.cfg.vocab)
        generated = ""  # this reply's text so far
        shown = 0  # how much of it has been yielded
        hold_max = max((len(t) for t in s.stop), default=0)

        logits = self._forward(feed) if feed else None
        for i in range(s.max_tokens):
            if logits is None:  # nothing to feed (a finished reply always leaves its last token to feed)
                break
            with _native_threads().limit(self.cpu_threads), torch.inference_mode():  # sampling is on the CPU
                token = sample_next(logits[:vocab], s, self._recent, self.generator)
            self._pending = [token]
            self._remember([token])
            if token in self.text.special:  # the model ended the text
                break
            generated += text.push(token)
            if s.stop:
                cut = _find_stop(generated, s.stop, max(0, shown - hold_max))
                if cut is not None:
                    if cut > shown:
                        yield generated[shown:cut]
                    return
                safe = len(generated) - _partial_stop(generated, s.stop)
            else:
                safe = len(generated)
            if safe > shown:
                yield generated[shown:safe]
                shown = safe
            if i + 1 < s.max_tokens:
                logits = self._forward([token])
        else:
            self.hit_limit = True
        generated += text.flush()
        cut = _find_stop(generated, s.stop, max(0, shown - hold_max)) if s.stop else None
        end = len(generated) if cut is None else cut
        if end > shown:
            yield generated[shown:end]

    def _remember(self, ids: list[int]) -> None:
        self._recent.extend(ids)
        keep = max(self.settings.penalty_window, 1)
        if len(self._recent) > 4 * keep:
            del self._recent[:-keep]


def _find_stop(text: str, stops: tuple[str, ...], start: int) -> int | None:
    """Where the first stop string begins in text (searching from start), if any."""
    hits = [i for i in (text.find(s, start) for s in stops) if i >= 0]
    return min(hits) if hits else None


def _partial_stop(text: str, stops: tuple[str, ...]) -> int:
    """Length of the longest end of text that begins some stop string (to hold back for now)."""
    best = 0
    for s in stops:
        for n in range(min(len(s) - 1, len(text)), best, -1):
            if text.endswith(s[:n]):
                best = n
                break
    return best


def _show(value: object) -> str:
    if value is None:
        return "off (random)"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def _parse_float(text: str, label: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise BabyError(f"{label} '{text}': not a number") from None
    if not math.isfinite(value):
        raise BabyError(f"{label} '{text}': must be a finite number")
    return value


def _parse_int(text: str, label: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise BabyError(f"{label} '{text}': not a whole number") from None


def _parse_seed(text: str, label: str) -> int | None:
    if text.lower() in ("off", "none", "random"):
        return None
    return _parse_int(text, label)


SETTERS: dict[str, tuple[str, str, Callable[[str, str], object]]] = {
    "/temp": ("temperature", "temperature", _parse_float),
    "/temperature": ("temperature", "temperature", _parse_float),
    "/topk": ("top_k", "top-k", _parse_int),
    "/topp": ("top_p", "top-p", _parse_float),
    "/max": ("max_tokens", "max tokens", _parse_int),
    "/penalty": ("repetition_penalty", "repetition penalty", _parse_float),
    "/seed": ("seed", "seed", _parse_seed),
}
