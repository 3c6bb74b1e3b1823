"""LIBRARIAN: reads the corpus, keeps the byte-level BPE tokenizer and serves batches of token ids.

A corpus is a file or a folder (searched recursively) of plain text (.txt, .md: a file is a
document) and of records (.jsonl, .csv, .parquet: each row's `data.text_field` is a document).
Corpora of several GB are prepared without being held in memory: the tokenizer is trained on a
bounded sample spread over the corpus (see sample_text), and the encoding is streamed through
the tokenizer in batches and written to the token cache as it goes.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from babyllm.config import Config
from babyllm.errors import CorpusError
from babyllm.model.footprint import host_available
from babyllm.run.runfiles import READ_LIMITS, TOKENIZER_FILE
from babyllm.safefile import read_bounded
from babyllm.school.corpus import (
    END_OF_TEXT,
    SAMPLE_CHARS,
    bounded_words,
    corpus_digest,
    find_corpus,
    list_corpus,
    read_corpus,
    sample_text,
)
from babyllm.snapshot import Say

ENCODE_BATCH = 2 << 20  # characters handed to the tokenizer at once (several pieces: its threads share them)
TRAINER_BYTES_PER_CHAR = 100  # the tokenizer trainer's memory per sampled character at worst (random text)
RESIDENT_SHARE = 0.05  # the training split stays on a GPU when it takes at most this share of its free memory


def warn_to_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


@dataclass(frozen=True)
class Progress:
    """How far preparing the corpus is: `done` of `total` bytes of the stage (total 0: no measure)."""

    stage: str  # "checking", "sampling", "training tokenizer", "encoding"
    done: int
    total: int

    def line(self, width: int = 20) -> str:
        if self.total <= 0:
            return f"preparing corpus: {self.stage}…"
        frac = min(self.done / self.total, 1.0)
        bar = "█" * round(frac * width) + "·" * (width - round(frac * width))
        return (f"preparing corpus: {self.stage} {bar} {frac:4.0%} "
                f"({_size(self.done)} of {_size(self.total)})")


ProgressFn = Callable[[Progress], None]


def _size(n: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


class _Reporter:
    """Passes progress on at most every `every` seconds (and at each stage's start and end)."""

    def __init__(self, fn: ProgressFn | None, every: float = 0.25) -> None:
        self.fn, self.every = fn, every
        self.last_stage, self.last_time = "", -1e9

    def __call__(self, stage: str, done: int, total: int) -> None:
        if self.fn is None:
            return
        now = time.monotonic()
        edge = stage != self.last_stage or done >= total
        if edge or now - self.last_time >= self.every:
            self.last_stage, self.last_time = stage, now
            self.fn(Progress(stage, done, total))


# --- reading: each reader yields (piece, bytes of the file consumed); END_OF_TEXT ends a document --


def train_tokenizer(texts: Iterator[str], vocab: int) -> Tokenizer:
    """A byte-level BPE trained on the texts: every byte is encodable and decoding gives the text back."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[END_OF_TEXT],
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return tok


def sample_limit() -> int:
    """The characters the tokenizer is trained on: SAMPLE_CHARS, or fewer where the machine's memory would not
    hold the trainer's words (it keeps every distinct word: text with few repeats costs the most)."""
    free = host_available()
    return SAMPLE_CHARS if free is None else min(SAMPLE_CHARS, max(1 << 20, free[0] // (2 * TRAINER_BYTES_PER_CHAR)))


def tokenizer_digest(tok: Tokenizer) -> str:
    return hashlib.sha256(tok.to_str().encode()).hexdigest()[:16]


def token_dtype(vocab_size: int) -> type[np.unsignedinteger]:
    """The narrowest cache element that holds every id: uint16 up to 65,536 tokens, else uint32."""
    return np.uint16 if vocab_size <= 1 << 16 else np.uint32


def encode_stream(tok: Tokenizer, pieces: Iterable[str], dtype: type[np.unsignedinteger],
                  batch_chars: int | None = None) -> Iterator[np.ndarray]:
    """The ids of the pieces (END_OF_TEXT as its one id), batch by batch, in order.

    Pieces are gathered up to `batch_chars` characters and encoded together (the tokenizer uses its
    threads on a batch), so memory stays at about one batch whatever the corpus size.
    """
    batch_chars = batch_chars or ENCODE_BATCH
    eot = np.asarray([tok.token_to_id(END_OF_TEXT)], dtype=dtype)
    encode = getattr(tok, "encode_batch_fast", tok.encode_batch)  # no offsets: faster (tokenizers >= 0.20)
    batch: list[str] = []
    chars = 0

    def flush() -> np.ndarray:
        encoded = iter(encode([p for p in batch if p != END_OF_TEXT]))
        return np.concatenate([eot if p == END_OF_TEXT else np.asarray(next(encoded).ids, dtype=dtype)
                               for p in batch])

    for piece in pieces:
        batch.append(piece)
        chars += len(piece)
        if chars >= batch_chars:
            yield flush()
            batch, chars = [], 0
    if batch:
        yield flush()


def _exists(path: Path) -> bool:
    """Is there a cache entry? A folder that cannot even be searched has none (writing it then says why)."""
    try:
        return path.is_file()
    except OSError:
        return False


def default_cache_dir() -> Path:
    return Path(os.environ.get("BABYLLM_CACHE") or Path.home() / ".cache" / "babyllm")


def atomic_write_bytes(path: Path, write: Callable[[Path], object]) -> None:
    """Write via a temp file in the same folder and rename, so a crash never leaves half a file.

    A cache that cannot be written (read-only, full, a file in the way) is one line naming the
    folder and the fix; nothing half-written is left behind.
    """
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise CorpusError(
            f"{path.parent}: cannot write the corpus cache ({e.strerror or e}); make it writable or "
            "point data.cache_dir (or $BABYLLM_CACHE) at a writable folder with room for it") from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


class Librarian:
    """LIBRARIAN: corpus -> tokenizer -> cached token array -> train/validation batches of [B, T+1] ids.

    `progress` hears how preparing an uncached corpus goes (a few times a second at most).
    """

    def __init__(self, cfg: Config, tokenizer: Tokenizer | None = None, say: Say = warn_to_stderr, rank: int = 0,
                 world_size: int = 1, progress: ProgressFn | None = None) -> None:
        self.context = cfg.model.context
        self.text_field = cfg.data.text_field
        self.root = find_corpus(cfg.data.corpus)
        self.files = list_corpus(self.root, say, self.text_field)
        self.size = sum(f.size for f in self.files)
        self.cache = Path(cfg.data.cache_dir).expanduser() if cfg.data.cache_dir else default_cache_dir()
        self._report = _Reporter(progress)
        digest = corpus_digest(self.files, self.text_field, lambda d, t: self._report("checking", d, t))
        self.tokenizer = tokenizer or self._cached_tokenizer(digest, cfg.model.vocab, say)
        if self.tokenizer.get_vocab_size() > cfg.model.vocab:
            raise CorpusError(
                f"tokenizer has {self.tokenizer.get_vocab_size()} tokens but model.vocab = {cfg.model.vocab}; "
                "use the config the tokenizer was trained with"
            )
        self.eot = self.tokenizer.token_to_id(END_OF_TEXT)
        tokens = self._cached_tokens(digest, say)
        n_val = max(int(len(tokens) * cfg.data.val_fraction), self.context + 2)
        if len(tokens) - n_val < self.context + 2:
            raise CorpusError(
                f"{self.root}: only {len(tokens):,} tokens; need at least {2 * (self.context + 2):,} "
                f"(one context of {self.context} for training plus one for validation). Add text or lower model.context"
            )
        self.train_tokens = tokens[:-n_val]
        self.val_tokens = tokens[-n_val:]
        # One sampler stream shared by every rank (see train_batch), so its state is the same everywhere.
        self.rank, self.world_size = rank, world_size
        self.generator = torch.Generator().manual_seed(cfg.train.seed)
        self._resident: torch.Tensor | None = None  # the training split on the device (keep_on), or None
        self._offsets: torch.Tensor | None = None

    def _stream(self, stage: str, say: Say) -> Iterator[tuple[str, int]]:
        for piece, pos in read_corpus(self.files, self.text_field, say):
            self._report(stage, pos, self.size)
            yield piece, pos

    def _cached_tokenizer(self, digest: str, vocab: int, say: Say) -> Tokenizer:
        path = self.cache / f"tokenizer-{digest}-{vocab}.json"
        if _exists(path):
            try:
                return Tokenizer.from_str(read_bounded(path, READ_LIMITS[TOKENIZER_FILE]).decode("utf-8"))
            except Exception:  # a damaged (or oversized) cache entry is rebuilt, never fatal
                say(f"{path}: damaged tokenizer cache, retraining")
        any_text = False

        def sample() -> Iterator[str]:  # streamed into the trainer, which keeps only its word counts
            nonlocal any_text
            for piece in bounded_words(sample_text(self._stream("sampling", lambda _m: None), self.size,
                                                   sample_limit())):
                any_text = any_text or bool(piece.strip())
                yield piece
            self._report("training tokenizer", 0, 0)

        tok = train_tokenizer(sample(), vocab)
        if not any_text:
            raise self._no_text()
        atomic_write_bytes(path, lambda tmp: tmp.write_text(tok.to_str(), encoding="utf-8"))
        return tok

    def _no_text(self) -> CorpusError:
        field = f" (rows need a text '{self.text_field}' field: data.text_field)" if any(
            f.records for f in self.files) else ""
        return CorpusError(f"{self.root}: no usable text{field}")

    def _cached_tokens(self, digest: str, say: Say) -> np.ndarray:
        dtype = token_dtype(self.tokenizer.get_vocab_size())
        path = self.cache / f"tokens-{digest}-{tokenizer_digest(self.tokenizer)}.u{8 * np.dtype(dtype).itemsize}"
        self.encoded_from_cache = _exists(path) and path.stat().st_size > 0
        if not self.encoded_from_cache:
            atomic_write_bytes(path, lambda tmp: self._encode_to(tmp, dtype, say))
        try:
            return np.memmap(path, dtype=dtype, mode="r")
        except OSError as e:
            raise CorpusError(f"{path}: cannot read the token cache ({e.strerror or e}); delete it or "
                              "point data.cache_dir (or $BABYLLM_CACHE) at another folder") from None

    def _encode_to(self, out: Path, dtype: type[np.unsignedinteger], say: Say) -> None:
        any_text = False
        with out.open("wb") as fh:
            pieces = (p for p, _pos in self._stream("encoding", say))
            for chunk in encode_stream(self.tokenizer, pieces, dtype):
                any_text = any_text or bool((chunk != self.eot).any())
                chunk.tofile(fh)
        self._report("encoding", self.size, self.size)
        if not any_text:
            raise self._no_text()

    # --- text <-> ids -------------------------------------------------------------------------------

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text).ids

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=False)

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    # --- batches ------------------------------------------------------------------------------------

    def batch(self, batch: int, split: str = "train", generator: torch.Generator | None = None) -> torch.Tensor:
        """Random windows [batch, T+1] of token ids (inputs are [:, :-1], targets [:, 1:])."""
        data = self.train_tokens if split == "train" else self.val_tokens
        g = generator or self.generator
        starts = torch.randint(0, len(data) - self.context - 1, (batch,), generator=g).numpy()
        rows = starts[:, None] + np.arange(self.context + 1)
        return torch.from_numpy(data[rows].astype(np.int64))

    def train_batch(self, batch: int) -> torch.Tensor:
        """This rank's training windows [batch, T+1]: its slice of the global batch of batch x world size.

        Every rank draws the same global batch from the shared generator and keeps rows
        [rank*batch:(rank+1)*batch], so the ranks train on different windows, the sampler state stays
        identical on all of them, and N ranks see exactly what one process with batch x N sees. With the
        training split kept on the device (keep_on), the windows are gathered there, from the same starts.
        """
        if self.world_size == 1 and self._resident is None:
            return self.batch(batch)
        data = self.train_tokens
        starts = torch.randint(0, len(data) - self.context - 1, (batch * self.world_size,), generator=self.generator)
        mine = starts[self.rank * batch:(self.rank + 1) * batch]
        if self._resident is not None and self._offsets is not None:  # only the starts cross to the device
            return self._resident[mine.to(self._resident.device).unsqueeze(1) + self._offsets].long()
        rows = mine.numpy()[:, None] + np.arange(self.context + 1)
        return torch.from_numpy(data[rows].astype(np.int64))

    def keep_on(self, device: torch.device, free_bytes: int) -> bool:
        """Keep the training split on `device` (as int32) when it takes at most RESIDENT_SHARE of `free_bytes`,
        so a step's windows are gathered there and nothing waits for a host-to-device copy. Whether it did."""
        size = len(self.train_tokens) * 4
        if size > RESIDENT_SHARE * free_bytes:
            return False
        self._resident = torch.from_numpy(self.train_tokens.astype(np.int32)).to(device)
        self._offsets = torch.arange(self.context + 1, device=device)
        return True

    def val_batches(self, count: int, batch: int) -> list[torch.Tensor]:
        """The same validation batches every time, so validation losses are comparable across steps."""
        g = torch.Generator().manual_seed(0)
        return [self.batch(batch, "val", g) for _ in range(count)]

    def sampler_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def load_sampler_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)
