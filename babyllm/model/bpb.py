"""Learning quality in bits per byte: held-out scoring and the unigram reference.

Bits per byte (bpb) compare models across vocabularies: the total cross-entropy of the held-out tokens
(in nats) divided by the UTF-8 bytes those tokens spell, over ln 2. "Held-out" is the last
`data.val_fraction` of the corpus's tokens (the Librarian's validation split). Every held-out token after
the first is scored exactly once, in consecutive windows of the model's context (each window starts
with no memory of the one before, as in training). The unigram reference scores the same tokens by
their training-split frequencies (add-one smoothed): a model that beats it has learned more than which
tokens are common.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np
import torch
from tokenizers import Tokenizer

from babyllm.model.network import BabyLLM
from babyllm.model.runtime import autocast

LN2 = math.log(2.0)


@dataclass(frozen=True)
class Score:
    """What `babyllm eval` reports for one save on one held-out text."""

    nats_per_token: float
    bpb: float
    unigram_bpb: float
    tokens: int  # held-out tokens scored
    bytes: int  # UTF-8 bytes those tokens spell

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def token_bytes(tokenizer: Tokenizer) -> np.ndarray:
    """UTF-8 bytes each token id spells [V] (special tokens such as <|endoftext|> spell none).

    The Librarian's tokenizer is byte-level BPE: each character of a token's string stands for one byte.
    """
    vocab = tokenizer.get_vocab(with_added_tokens=True)
    out = np.zeros(tokenizer.get_vocab_size(), dtype=np.int64)
    special = {t.content for t in tokenizer.get_added_tokens_decoder().values() if t.special}
    for text, i in vocab.items():
        out[i] = 0 if text in special else len(text)
    return out


def scored_bytes(held: np.ndarray, per_token: np.ndarray) -> int:
    """Bytes spelled by the scored held-out tokens (all but the first, which nothing predicts)."""
    return int(per_token[np.asarray(held[1:], dtype=np.int64)].sum())


def unigram_nats(train: np.ndarray, held: np.ndarray, vocab: int) -> float:
    """Total nats of held[1:] under add-one-smoothed unigram frequencies of `train`."""
    counts = np.bincount(np.asarray(train, dtype=np.int64), minlength=vocab).astype(np.float64) + 1.0
    logp = np.log(counts / counts.sum())
    return float(-logp[np.asarray(held[1:], dtype=np.int64)].sum())


def bits_per_byte(nats: float, n_bytes: int) -> float:
    return nats / max(n_bytes, 1) / LN2


@torch.no_grad()
def model_nats(model: BabyLLM, held: np.ndarray, device: torch.device, dtype: str = "fp32",
               batch: int = 16) -> float:
    """Total nats of held[1:] under the model, in consecutive windows of its context (each token once)."""
    T = model.cfg.context
    ids = torch.from_numpy(np.asarray(held, dtype=np.int64))
    n_full = (len(ids) - 1) // T
    total = 0.0
    # Full windows in batches: window w predicts ids[w*T+1 : (w+1)*T+1] from ids[w*T : (w+1)*T].
    inputs = ids[: n_full * T].view(n_full, T)
    targets = ids[1 : n_full * T + 1].view(n_full, T)
    for i in range(0, n_full, batch):
        total += _window_nats(model, inputs[i:i + batch], targets[i:i + batch], device, dtype)
    rest = len(ids) - 1 - n_full * T  # a shorter last window
    if rest > 0:
        start = n_full * T
        total += _window_nats(model, ids[start:start + rest][None], ids[start + 1:][None], device, dtype)
    return total


def _window_nats(model: BabyLLM, x: torch.Tensor, y: torch.Tensor, device: torch.device, dtype: str) -> float:
    with autocast(device, dtype):
        logits = model.run(x.to(device)).logits
    loss = torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                                             y.to(device).reshape(-1), reduction="sum")
    return loss.item()


def score(model: BabyLLM, tokenizer: Tokenizer, train: np.ndarray, held: np.ndarray, device: torch.device,
          dtype: str = "fp32", batch: int = 16) -> Score:
    """The model's held-out nats per token and bits per byte, beside the unigram bits per byte."""
    per_token = token_bytes(tokenizer)
    n_bytes = scored_bytes(held, per_token)
    nats = model_nats(model, held, device, dtype, batch)
    n_tokens = len(held) - 1
    uni = unigram_nats(train, held, tokenizer.get_vocab_size())
    return Score(nats / n_tokens, bits_per_byte(nats, n_bytes), bits_per_byte(uni, n_bytes), n_tokens, n_bytes)
