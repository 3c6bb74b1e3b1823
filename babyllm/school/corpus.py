"""The corpus as text: which files a corpus is, each read as documents (plain text, JSONL, CSV, Parquet rows),
streamed in chunks so a large corpus is never held whole, with bad rows named and skipped."""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from babyllm.errors import CorpusError
from babyllm.paths import CORPORA
from babyllm.snapshot import Say

PLAIN_SUFFIXES = (".txt", ".md")  # one file, one document


RECORD_SUFFIXES = (".jsonl", ".csv", ".parquet")  # one row, one document (its data.text_field)


CORPUS_SUFFIXES = PLAIN_SUFFIXES + RECORD_SUFFIXES


CHUNK = 1 << 18  # bytes read at a time, so a large corpus is never held whole


MAX_CARRY = 1 << 20  # characters a piece may run without a safe cut before it is cut anyway (a piece takes
# about 200 bytes a character to encode: a megabyte of text with no space or newline must not become one piece)


MAX_RECORD = 64 << 20  # bytes of one .jsonl/.csv line: a longer one is skipped, read a chunk at a time


MAX_WORD = 256  # characters of one word (a run of letters, of marks or of spaces) the tokenizer is trained on


LONG_RUN_CHARS = 4_000_000  # characters of over-long runs, cut to MAX_WORD, one tokenizer sample takes


SAMPLE_CHARS = 100_000_000  # the tokenizer's training sample: at most this many characters of the corpus


BAD_ROWS_NAMED = 3  # bad rows named one by one per file; the rest are counted


PARQUET_EXTRA = 'pip install -e ".[parquet]" (or pip install pyarrow)'


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
        _raise_csv_limit()
        with path.open(encoding="utf-8-sig", errors="replace", newline="") as fh:
            head = fh.readline(MAX_RECORD)  # (bounded: a header of 50 MB is not read whole)
        try:
            columns = next(csv.reader([head]), [])
        except csv.Error as e:
            say(f"{path}: skipped, unreadable CSV header ({e})")
            return False
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


def _raise_csv_limit() -> None:
    """Documents can be long: the csv module's 128 KB field limit is raised to MAX_RECORD (never lowered)."""
    csv.field_size_limit(max(csv.field_size_limit(), MAX_RECORD))


def _parquet(path: Path) -> Any:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise CorpusError(f"{path}: reading .parquet needs pyarrow: {PARQUET_EXTRA}") from None
    return pq.ParquetFile(path)


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


def _cut(text: str) -> Iterator[str]:
    """`text` in pieces of at most MAX_CARRY characters, cut at safe places (see _safe_cut) where it has any."""
    while len(text) > MAX_CARRY:
        cut = _safe_cut(text[:MAX_CARRY]) or MAX_CARRY
        yield text[:cut]
        text = text[cut:]
    if text:
        yield text


_LONG_RUN = re.compile(rf"\w{{{MAX_WORD + 1},}}|[^\w\s]{{{MAX_WORD + 1},}}|\s{{{MAX_WORD + 1},}}")
_SURROGATE = re.compile("[\ud800-\udfff]")


def bounded_words(pieces: Iterable[str], budget: int = LONG_RUN_CHARS) -> Iterator[str]:
    """The pieces for the tokenizer's trainer with every run of letters, of marks or of spaces longer than
    MAX_WORD cut into MAX_WORD-long words, and at most `budget` characters of such runs in all: the trainer
    takes time and memory by the length of its words (a 50 MB line without a space is one word to it)."""
    for piece in pieces:
        last = 0
        for m in _LONG_RUN.finditer(piece):
            if m.start() > last:
                yield piece[last:m.start()]
            take = min(m.end() - m.start(), max(0, budget))
            budget -= take
            end = m.start() + take
            yield from (piece[i:min(i + MAX_WORD, end)] for i in range(m.start(), end, MAX_WORD))
            last = m.end()
        if last < len(piece):
            yield piece[last:] if last else piece


def _read_plain(path: Path, field: str, say: Say) -> Iterator[tuple[str, int]]:
    decode, carry, pos = _Utf8(path, say), "", 0
    with path.open("rb") as fh:
        while raw := fh.read(CHUNK):
            pos += len(raw)
            searched, text = len(carry), carry + decode(raw)
            cut = _safe_cut(text, searched) or (len(text) if len(text) > MAX_CARRY else 0)
            carry, text = text[cut:], text[:cut]
            yield from ((piece, pos) for piece in _cut(text))
    yield from ((piece, pos) for piece in _cut(carry + decode(b"", final=True)))
    yield END_OF_TEXT, pos


class _BadRows:
    """Names the first few bad rows of a file and counts the rest."""

    def __init__(self, path: Path, say: Say) -> None:
        self.path, self.say, self.count = path, say, 0

    def __call__(self, where: str, why: str, done: str = "skipped") -> None:
        self.count += 1
        if self.count <= BAD_ROWS_NAMED:
            self.say(f"{self.path}: {where}: {why}; {done}")

    def close(self) -> None:
        if self.count > BAD_ROWS_NAMED:
            self.say(f"{self.path}: {self.count:,} bad rows in all, skipped or mended")


def _row_text(value: Any, field: str, bad: _BadRows, where: str) -> str | None:
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # a JSON escape such as "\ud800": no character, and no UTF-8 for it
            bad(where, "lone UTF-16 surrogates in the text", "replaced with U+FFFD")
            return _SURROGATE.sub("\ufffd", value)
        return value
    if value is None:
        bad(where, f"no '{field}' value (data.text_field)")
    else:
        bad(where, f"'{field}' is {type(value).__name__}, not text")
    return None


def _lines(path: Path, say: Say, pos: list[int], bad: _BadRows) -> Iterator[str]:
    """A file's decoded lines; pos[0] follows the bytes read. A line over MAX_RECORD bytes is skipped (read a
    chunk at a time, never whole) and comes as an empty line."""
    decode = _Utf8(path, say)
    with path.open("rb") as fh:
        n = 0
        while raw := fh.readline(MAX_RECORD + 1):
            n += 1
            pos[0] += len(raw)
            if len(raw) > MAX_RECORD and not raw.endswith(b"\n"):
                while (rest := fh.readline(CHUNK)) and not rest.endswith(b"\n"):
                    pos[0] += len(rest)
                pos[0] += len(rest)
                bad(f"line {n}", f"longer than {MAX_RECORD:,} bytes")
                raw = b"\n"
            yield decode(raw)


def _read_jsonl(path: Path, field: str, say: Say) -> Iterator[tuple[str, int]]:
    bad, pos = _BadRows(path, say), [0]
    for n, line in enumerate(_lines(path, say, pos, bad), 1):
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
            yield from ((piece, pos[0]) for piece in _cut(text))
            yield END_OF_TEXT, pos[0]
    bad.close()


def _read_csv(path: Path, field: str, say: Say) -> Iterator[tuple[str, int]]:
    _raise_csv_limit()
    bad, pos = _BadRows(path, say), [0]
    reader = csv.reader(_lines(path, say, pos, bad))
    try:
        header = next(reader)
        column = header.index(field)
        for n, row in enumerate(reader, 1):
            if not row:
                continue
            where = f"row {n} (line {reader.line_num})"
            text = _row_text(row[column] if column < len(row) else None, field, bad, where)
            if text:
                yield from ((piece, pos[0]) for piece in _cut(text))
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
                    yield from ((piece, size * n // rows) for piece in _cut(text))
                    yield END_OF_TEXT, size * n // rows
    except Exception as e:  # noqa: BLE001 - pyarrow raises several types for a damaged file
        bad(f"after row {n}", f"unreadable Parquet ({e}); the rest of the file")
    bad.close()


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


END_OF_TEXT = "<|endoftext|>"  # separates documents in the token stream


CACHE_VERSION = "2"


READERS: dict[str, Callable[[Path, str, Say], Iterator[tuple[str, int]]]] = {
    ".txt": _read_plain, ".md": _read_plain, ".jsonl": _read_jsonl, ".csv": _read_csv, ".parquet": _read_parquet,
}
