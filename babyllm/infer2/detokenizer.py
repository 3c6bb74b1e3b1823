"""Token ids -> readable text, one token at a time (a character split across tokens is held back)."""

from __future__ import annotations

import codecs
import re

from tokenizers import Tokenizer, decoders


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
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


_LONE_BYTES = re.compile("[\udc80-\udcff]")  # the bytes utf-8's surrogateescape could not decode


def shown_bytes(data: bytes) -> str:
    """One token's bytes as text on their own: UTF-8 where they decode, and each byte that cannot (a piece of a
    character byte-level BPE split across tokens) as what it is, e.g. "<0xE2>", never U+FFFD."""
    text = data.decode("utf-8", errors="surrogateescape")
    return _LONE_BYTES.sub(lambda m: f"<0x{ord(m.group()) - 0xDC00:02X}>", text)


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

    def stream(self) -> TextStream:
        return TextStream(self)

    def shown(self, token: int) -> str:
        """A token's own text, as a guess-versus-truth sample shows it (shown_bytes; "?" for an id out of range)."""
        if not 0 <= token < self.size:
            return "?"
        if self.byte_level:
            return shown_bytes(self.bytes[token])
        return self.tokenizer.decode([token], skip_special_tokens=False)


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
