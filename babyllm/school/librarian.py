"""LIBRARIAN: reads the corpus, keeps the byte-level BPE tokenizer and serves batches of token ids.

A corpus is a file or a folder (searched recursively) of plain text (.txt, .md: a file is a
document) and of records (.jsonl, .csv, .parquet: each row's `data.text_field` is a document).
Corpora of several GB are prepared without being held in memory: the tokenizer is trained on a
bounded sample spread over the corpus (see sample_text), and the encoding is streamed through
the tokenizer in batches and written to the token cache as it goes.
"""

from __future__ import annotations

import codecs
import contextlib
import csv
import hashlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from babyllm.config import Config
from babyllm.errors import CorpusError
from babyllm.paths import CORPORA

PLAIN_SUFFIXES = (".txt", ".md")  # one file, one document
RECORD_SUFFIXES = (".jsonl", ".csv", ".parquet")  # one row, one document (its data.text_field)
CORPUS_SUFFIXES = PLAIN_SUFFIXES + RECORD_SUFFIXES
END_OF_TEXT = "<|endoftext|>"  # separates documents in the token stream
CHUNK = 1 << 18  # bytes read at a time, so a large corpus is never held whole
MAX_CARRY = 16 << 20  # characters a plain document may run without a safe cut before it is cut anyway
SAMPLE_CHARS = 100_000_000  # the tokenizer's training sample: at most this many characters of the corpus
ENCODE_BATCH = 2 << 20  # characters handed to the tokenizer at once (several pieces: its threads share them)
BAD_ROWS_NAMED = 3  # bad rows named one by one per file; the rest are counted
CACHE_VERSION = "2"
PARQUET_EXTRA = 'pip install -e ".[parquet]" (or pip install pyarrow)'

Say = Callable[[str], None]


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


@dataclass
class CorpusFile:
    """One readable corpus file."""

    path: Path
    size: int

    @property
    def records(self) -> bool:
        return self.path.suffix.lower() in RECORD_SUFFIXES


def find_corpus(path: str | Path | None) -> Path:
    """The corpus path: the one given, or the corpus shipped in corpora/."""
    p = Path(path).expanduser() if path else CORPORA
    if not p.exists():
        raise CorpusError(f"{p}: corpus not found (give a {'/'.join(CORPUS_SUFFIXES)} file "
                          "or a folder of them with --corpus)")
    return p


def list_corpus(root: Path, say: Say, text_field: str = "text") -> list[CorpusFile]:
    """The usable files under root, skipping unreadable, empty and binary ones with a warning.

    A .csv or .parquet file without the `text_field` column is an error (the config names the wrong
    column), not a warning: every row of it would be unusable.
    """
    if root.is_file():
        candidates = [root]
    else:
        candidates = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in CORPUS_SUFFIXES)
    files: list[CorpusFile] = []
    for p in candidates:
        try:
            with p.open("rb") as fh:
                head = fh.read(8192)
            size = p.stat().st_size
        except OSError as e:
            say(f"{p}: skipped, cannot read ({e.strerror})")
            continue
        parquet = p.suffix.lower() == ".parquet"
        if parquet and not head.startswith(b"PAR1"):
            say(f"{p}: skipped, not a Parquet file")
        elif not parquet and b"\x00" in head:
            say(f"{p}: skipped, looks binary (contains NUL bytes)")
        elif not head.strip():
            say(f"{p}: skipped, empty")
        elif _has_column(p, text_field, say):
            files.append(CorpusFile(p, size))
    if not files:
        raise CorpusError(f"{root}: no usable text (need non-empty {', '.join(CORPUS_SUFFIXES)} files)")
    return files


def _has_column(path: Path, field: str, say: Say) -> bool:
    """Records can be read for `field`: True, or False for a damaged file (said); a wrong column is an error."""
    suffix = path.suffix.lower()
    if suffix == ".csv":
        with path.open(encoding="utf-8-sig", errors="replace", newline="") as fh:
            columns = next(csv.reader(fh), [])
    elif suffix == ".parquet":
        try:
            columns = _parquet(path).schema_arrow.names
        except CorpusError:
            raise
        except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a damaged file
            say(f"{path}: skipped, cannot read as Parquet ({e})")
            return False
    else:
        return True
    if field not in columns:
        raise CorpusError(f"{path}: no column '{field}' for data.text_field; its columns: "
                          f"{', '.join(map(str, columns)) or 'none'} (set --set data.text_field=NAME)")
    return True


def _parquet(path: Path) -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise CorpusError(f"{path}: reading .parquet needs pyarrow: {PARQUET_EXTRA}") from None
    return pq.ParquetFile(path)


# --- reading: each reader yields (piece, bytes of the file consumed); END_OF_TEXT ends a document --


def _safe_cut(text: str, start: int = 0) -> int:
    """Where text can be split so that encoding the parts gives the same ids as encoding the whole.

    The byte-level pre-tokenizer never joins a single newline or space that stands between two
    visible characters with anything before it, so cutting just after one ("a\\nb" -> "a\\n" | "b",
    "a b" -> "a" | " b") leaves every pre-token, and so every id, as it was. Only cuts at or after
    `start` are looked for (the text before it was searched already); 0: no such place.
    """
    def solid(c: str) -> bool:
        return not c.isspace() and c.isprintable()

    for mark, after in (("\n", 1), (" ", 0)):
        i = len(text) - 1
        while (i := text.rfind(mark, max(start - 1, 1), i)) > 0:
            if solid(text[i - 1]) and solid(text[i + 1]):
                return i + after
    return 0


class _Utf8:
    """Decodes one file's bytes leniently (U+FFFD), saying once where the first invalid UTF-8 was."""

    def __init__(self, path: Path, say: Say) -> None:
        self.path, self.say = path, say
        self.lenient = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self.strict: codecs.IncrementalDecoder | None = codecs.getincrementaldecoder("utf-8")()
        self.offset = 0

    def __call__(self, raw: bytes, final: bool = False) -> str:
        if self.strict is not None:
            try:
                self.strict.decode(raw, final=final)
            except UnicodeDecodeError as e:
                self.say(f"{self.path}: invalid UTF-8 near byte {self.offset + e.start}; replaced with U+FFFD")
                self.strict = None
        text = self.lenient.decode(raw, final=final)
        if self.offset == 0 and text.startswith("\ufeff"):  # a byte-order mark (Excel, Notepad) is not text
            text = text[1:]
        self.offset += len(raw)
        return text


def _read_plain(path: Path, field: str, say: Say) -> Iterator[tuple[str, int]]:
    decode, carry, pos = _Utf8(path, say), "", 0
    with path.open("rb") as fh:
        while raw := fh.read(CHUNK):
            pos += len(raw)
            searched, text = len(carry), carry + decode(raw)
            cut = _safe_cut(text, searched) or (len(text) if len(text) > MAX_CARRY else 0)
            carry, text = text[cut:], text[:cut]
            if text:
                yield text, pos
    text = carry + decode(b"", final=True)
    if text:
        yield text, pos
    yield END_OF_TEXT, pos


class _BadRows:
    """Names the first few bad rows of a file and counts the rest."""

    def __init__(self, path: Path, say: Say) -> None:
        self.path, self.say, self.count = path, say, 0

    def __call__(self, where: str, why: str) -> None:
        self.count += 1
        if self.count <= BAD_ROWS_NAMED:
            self.say(f"{self.path}: {where}: {why}; skipped")

    def close(self) -> None:
        if self.count > BAD_ROWS_NAMED:
            self.say(f"{self.path}: {self.count:,} bad rows in all, skipped")


def _row_text(value: Any, field: str, bad: _BadRows, where: str) -> str | None:
    if isinstance(value, str):
        return value
    if value is None:
        bad(where, f"no '{field}' value (data.text_field)")
    else:
        bad(where, f"'{field}' is {type(value).__name__}, not text")
    return None


def _lines(path: Path, say: Say, pos: list[int]) -> Iterator[str]:
    """A file's decoded lines; pos[0] follows the bytes read."""
    decode = _Utf8(path, say)
    with path.open("rb") as fh:
        for raw in fh:
            pos[0] += len(raw)
            yield decode(raw)


def _read_jsonl(path: Path, field: str, say: Say) -> Iterator[tuple[str, int]]:
    bad, pos = _BadRows(path, say), [0]
    for n, line in enumerate(_lines(path, say, pos), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, RecursionError) as e:
            bad(f"line {n}", f"not valid JSON ({getattr(e, 'msg', 'too deeply nested')})")
            continue
        if not isinstance(row, dict):
            bad(f"line {n}", f"a JSON {type(row).__name__}, not an object with a '{field}' field")
            continue
        text = _row_text(row.get(field), field, bad, f"line {n}")
        if text:
            yield text, pos[0]
            yield END_OF_TEXT, pos[0]
    bad.close()


def _read_csv(path: Path, field: str, say: Say) -> Iterator[tuple[str, int]]:
    # Documents can be long; the csv module's 128 KB field limit is raised (never lowered) for them.
    csv.field_size_limit(max(csv.field_size_limit(), 1 << 30))
    bad, pos = _BadRows(path, say), [0]
    reader = csv.reader(_lines(path, say, pos))
    try:
        header = next(reader)
        column = header.index(field)
        for n, row in enumerate(reader, 1):
            if not row:
                continue
            where = f"row {n} (line {reader.line_num})"
            text = _row_text(row[column] if column < len(row) else None, field, bad, where)
            if text:
                yield text, pos[0]
                yield END_OF_TEXT, pos[0]
    except csv.Error as e:
        bad(f"line {reader.line_num}", f"unreadable CSV ({e}); the rest of the file")
    bad.close()


def _read_parquet(path: Path, field: str, say: Say) -> Iterator[tuple[str, int]]:
    pf = _parquet(path)
    rows, size = max(pf.metadata.num_rows, 1), path.stat().st_size
    bad, n = _BadRows(path, say), 0
    try:
        for batch in pf.iter_batches(columns=[field], batch_size=4096):
            for value in batch.column(0).to_pylist():
                n += 1
                text = _row_text(value, field, bad, f"row {n}")
                if text:
                    yield text, size * n // rows
                    yield END_OF_TEXT, size * n // rows
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        bad(f"after row {n}", f"unreadable Parquet ({e}); the rest of the file")
    bad.close()


READERS: dict[str, Callable[[Path, str, Say], Iterator[tuple[str, int]]]] = {
    ".txt": _read_plain, ".md": _read_plain, ".jsonl": _read_jsonl, ".csv": _read_csv, ".parquet": _read_parquet,
}


def read_corpus(files: list[CorpusFile], text_field: str, say: Say) -> Iterator[tuple[str, int]]:
    """The corpus as (piece, bytes of the corpus consumed): text pieces, END_OF_TEXT after each document."""
    before = 0
    for f in files:
        for piece, pos in READERS[f.path.suffix.lower()](f.path, text_field, say):
            yield piece, before + pos
        before += f.size


def sample_text(stream: Iterable[tuple[str, int]], total: int, limit: int = SAMPLE_CHARS) -> Iterator[str]:
    """At most `limit` characters of text, spread evenly over the corpus, to train the tokenizer on.

    A piece is kept while the characters kept so far, with it, stay within `limit` times the share
    of the corpus read so far, so a corpus of a few GB gives a sample of about `limit` characters
    drawn from its beginning, middle and end (a corpus under the limit is used whole).
    """
    kept = 0
    for piece, pos in stream:
        if piece == END_OF_TEXT:
            continue
        if kept + len(piece) <= limit * pos / max(total, 1):
            kept += len(piece)
            yield piece


def corpus_digest(files: list[CorpusFile], text_field: str = "text",
                  report: Callable[[int, int], None] | None = None) -> str:
    """A content hash of the corpus (and of the records' text field), so caches follow the text
    rather than file names or dates."""
    h = hashlib.sha256(CACHE_VERSION.encode())
    total, done = sum(f.size for f in files), 0
    for f in files:
        h.update(f"{f.path.name}\0{f.size}\0{text_field if f.records else ''}\0".encode())
        with f.path.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                h.update(chunk)
                done += len(chunk)
                if report:
                    report(done, total)
    return h.hexdigest()[:16]


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

    def _stream(self, stage: str, say: Say) -> Iterator[tuple[str, int]]:
        for piece, pos in read_corpus(self.files, self.text_field, say):
            self._report(stage, pos, self.size)
            yield piece, pos

    def _cached_tokenizer(self, digest: str, vocab: int, say: Say) -> Tokenizer:
        path = self.cache / f"tokenizer-{digest}-{vocab}.json"
        if _exists(path):
            try:
                return Tokenizer.from_file(str(path))
            except Exception:  # a damaged cache entry is rebuilt, never fatal
                say(f"{path}: damaged tokenizer cache, retraining")
        any_text = False

        def sample() -> Iterator[str]:  # streamed into the trainer, which keeps only its word counts
            nonlocal any_text
            for piece in sample_text(self._stream("sampling", lambda _m: None), self.size, SAMPLE_CHARS):
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
        identical on all of them, and N ranks see exactly what one process with batch x N sees.
        """
        if self.world_size == 1:
            return self.batch(batch)
        data = self.train_tokens
        starts = torch.randint(0, len(data) - self.context - 1, (batch * self.world_size,), generator=self.generator)
        mine = starts[self.rank * batch:(self.rank + 1) * batch].numpy()
        rows = mine[:, None] + np.arange(self.context + 1)
        return torch.from_numpy(data[rows].astype(np.int64))

    def val_batches(self, count: int, batch: int) -> list[torch.Tensor]:
        """The same validation batches every time, so validation losses are comparable across steps."""
        g = torch.Generator().manual_seed(0)
        return [self.batch(batch, "val", g) for _ in range(count)]

    def sampler_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def load_sampler_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)
