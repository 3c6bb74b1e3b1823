"""LIBRARIAN: reads the corpus, keeps the byte-level BPE tokenizer and serves batches of token ids."""

from __future__ import annotations

import codecs
import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

from babyllm.config import Config
from babyllm.errors import CorpusError
from babyllm.paths import CORPORA

TEXT_SUFFIXES = (".txt", ".md")
END_OF_TEXT = "<|endoftext|>"  # separates documents (files) in the token stream
CHUNK = 1 << 20  # bytes read at a time, so a large corpus is never held whole
CACHE_VERSION = "1"

Say = Callable[[str], None]


def warn_to_stderr(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


@dataclass
class CorpusFile:
    """One readable corpus file."""

    path: Path
    size: int


def find_corpus(path: str | Path | None) -> Path:
    """The corpus path: the one given, or the corpus shipped in corpora/."""
    p = Path(path).expanduser() if path else CORPORA
    if not p.exists():
        raise CorpusError(f"{p}: corpus not found (give a .txt/.md file or a folder of them with --corpus)")
    return p


def list_corpus(root: Path, say: Say) -> list[CorpusFile]:
    """The usable files under root (recursively .txt and .md), skipping empty and binary ones with a warning."""
    if root.is_file():
        candidates = [root]
    else:
        candidates = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES)
    files: list[CorpusFile] = []
    for p in candidates:
        try:
            with p.open("rb") as fh:
                head = fh.read(8192)
            size = p.stat().st_size
        except OSError as e:
            say(f"{p}: skipped, cannot read ({e.strerror})")
            continue
        if b"\x00" in head:
            say(f"{p}: skipped, looks binary (contains NUL bytes)")
        elif not head.strip():
            say(f"{p}: skipped, empty")
        else:
            files.append(CorpusFile(p, size))
    if not files:
        raise CorpusError(f"{root}: no usable text (need non-empty .txt or .md files)")
    return files


def read_text(files: list[CorpusFile], say: Say) -> Iterator[str]:
    """Stream the corpus as text pieces that end on line breaks; invalid UTF-8 is replaced, said once per file."""
    for f in files:
        lenient = codecs.getincrementaldecoder("utf-8")(errors="replace")
        strict: codecs.IncrementalDecoder | None = codecs.getincrementaldecoder("utf-8")()
        carry = ""
        with f.path.open("rb") as fh:
            while True:
                raw = fh.read(CHUNK)
                final = not raw
                if strict is not None:
                    try:
                        strict.decode(raw, final=final)
                    except UnicodeDecodeError as e:
                        say(f"{f.path}: invalid UTF-8 near byte {e.start}; replaced with U+FFFD")
                        strict = None
                text = carry + lenient.decode(raw, final=final)
                if final:
                    break
                cut = text.rfind("\n") + 1
                carry, text = text[cut:], text[:cut]
                if text:
                    yield text
        if text.strip():
            yield text
        yield END_OF_TEXT


def corpus_digest(files: list[CorpusFile]) -> str:
    """A content hash of the corpus, so caches follow the text rather than file names or dates."""
    h = hashlib.sha256(CACHE_VERSION.encode())
    for f in files:
        h.update(f"{f.path.name}\0{f.size}\0".encode())
        with f.path.open("rb") as fh:
            while chunk := fh.read(CHUNK):
                h.update(chunk)
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


def default_cache_dir() -> Path:
    return Path(os.environ.get("BABYLLM_CACHE") or Path.home() / ".cache" / "babyllm")


def atomic_write_bytes(path: Path, write: Callable[[Path], None]) -> None:
    """Write via a temp file in the same folder and rename, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class Librarian:
    """LIBRARIAN: corpus -> tokenizer -> cached token array -> train/validation batches of [B, T+1] ids."""

    def __init__(self, cfg: Config, tokenizer: Tokenizer | None = None, say: Say = warn_to_stderr, rank: int = 0,
                 world_size: int = 1) -> None:
        self.context = cfg.model.context
        self.root = find_corpus(cfg.data.corpus)
        self.files = list_corpus(self.root, say)
        self.cache = Path(cfg.data.cache_dir).expanduser() if cfg.data.cache_dir else default_cache_dir()
        digest = corpus_digest(self.files)
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

    def _cached_tokenizer(self, digest: str, vocab: int, say: Say) -> Tokenizer:
        path = self.cache / f"tokenizer-{digest}-{vocab}.json"
        if path.exists():
            try:
                return Tokenizer.from_file(str(path))
            except Exception:  # a damaged cache entry is rebuilt, never fatal
                say(f"{path}: damaged tokenizer cache, retraining")
        tok = train_tokenizer(read_text(self.files, lambda _m: None), vocab)
        atomic_write_bytes(path, lambda tmp: tmp.write_text(tok.to_str(), encoding="utf-8"))
        return tok

    def _cached_tokens(self, digest: str, say: Say) -> np.ndarray:
        path = self.cache / f"tokens-{digest}-{tokenizer_digest(self.tokenizer)}.u16"
        self.encoded_from_cache = path.exists()
        if not self.encoded_from_cache:
            atomic_write_bytes(path, lambda tmp: self._encode_to(tmp, say))
        return np.memmap(path, dtype=np.uint16, mode="r")

    def _encode_to(self, out: Path, say: Say) -> None:
        with out.open("wb") as fh:
            for text in read_text(self.files, say):
                ids = [self.eot] if text == END_OF_TEXT else self.tokenizer.encode(text).ids
                np.asarray(ids, dtype=np.uint16).tofile(fh)

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
