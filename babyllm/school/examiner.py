"""The evaluation: validation loss and bits per byte, the best so far, samples, the held-out score."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

from babyllm.config import Config
from babyllm.events import EventKind
from babyllm.infer2.detokenizer import TokenText
from babyllm.model import bpb
from babyllm.model.network import BabyLLM, next_token_loss
from babyllm.model.runtime import autocast
from babyllm.school.librarian import Librarian
from babyllm.school.progress import Progress, perplexity
from babyllm.snapshot import Sample

SAMPLE_TOKENS = 48  # positions shown in a guess-versus-truth sample


class Examiner:
    """Judges the eager model on held-out text (rank 0 only, no collectives); validation notes its result in
    Progress and says it as a "val" event."""

    def __init__(self, cfg: Config, model: BabyLLM, librarian: Librarian, progress: Progress, *,
                 device: torch.device, dtype: str, world_size: int,
                 event: Callable[[EventKind, str], None]) -> None:
        self.cfg, self.model, self.librarian, self.progress = cfg, model, librarian, progress
        self.device, self.dtype, self.world_size = device, dtype, world_size
        self.event = event
        lib = librarian
        self.token_bytes = bpb.token_bytes(lib.tokenizer)
        held_bytes = bpb.scored_bytes(lib.val_tokens, self.token_bytes)
        self.unigram_bpb = bpb.bits_per_byte(
            bpb.unigram_nats(lib.train_tokens, lib.val_tokens, lib.vocab_size), held_bytes)
        self.val_bytes_per_token = math.nan  # of the validation batches' targets, set with them
        self._val_batches: list[torch.Tensor] | None = None
        self._token_text: list[str] | None = None

    @torch.no_grad()
    def validate(self) -> float:
        """Mean loss over the fixed validation batches (same batches every time)."""
        t = self.cfg.train
        if self._val_batches is None:  # the global batch size, so N ranks validate like one process
            self._val_batches = [b.to(self.device) for b in
                                 self.librarian.val_batches(t.eval_batches, self.cfg.batch_size * self.world_size)]
            targets = torch.cat([b[:, 1:].reshape(-1).cpu() for b in self._val_batches]).numpy()
            self.val_bytes_per_token = float(self.token_bytes[targets].mean())
        losses = []
        for b in self._val_batches:
            with autocast(self.device, self.dtype):
                logits = self.model.run(b[:, :-1]).logits
            losses.append(next_token_loss(logits, b[:, 1:]))
        return torch.stack(losses).mean().item()

    def examine(self) -> tuple[float, bool]:
        """Validate now and note it in Progress and an event: (the loss, whether it is a new best)."""
        p = self.progress
        val = self.validate()
        p.val_loss = val
        p.val_bpb = val / max(self.val_bytes_per_token, 1e-9) / bpb.LN2
        if math.isfinite(val) and val < p.best_val:
            p.best_val, p.best_val_step = val, p.step_count
            self.event("val", f"val loss {val:.4f} (new best)")
            return val, True
        self.event("val", f"val loss {val:.4f} (best {p.best_val:.4f} @{p.best_val_step})")
        return val, False

    def latest(self) -> dict[str, float]:
        """The latest validation as a step's stats (a step validated before recording carries it)."""
        p = self.progress
        return {"val_loss": p.val_loss, "perplexity": perplexity(p.val_loss), "val_bpb": p.val_bpb}

    @torch.no_grad()
    def make_sample(self, step: int) -> Sample:
        """The model's argmax guess versus the true next token on a validation snippet."""
        T = self.cfg.model.context
        val = self.librarian.val_tokens
        span = max(1, len(val) - T - 1)
        start = (step * 7919) % span  # a different snippet each time, no RNG drawn
        ids = torch.from_numpy(np.asarray(val[start:start + T + 1], dtype=np.int64)).to(self.device)
        with autocast(self.device, self.dtype):
            logits = self.model.run(ids[None, :-1]).logits[0]
        keep = min(T, SAMPLE_TOKENS)
        guesses = logits[-keep:].argmax(-1).tolist()
        truths = ids[1:][-keep:].tolist()
        if self._token_text is None:  # each token alone: a byte of a split character as <0xE2>, not U+FFFD
            table = TokenText(self.librarian.tokenizer)
            self._token_text = [table.shown(i) for i in range(table.size)]
        text = self._token_text
        shown = lambda i: text[i] if 0 <= i < len(text) else "?"  # noqa: E731
        return Sample(step, self.librarian.decode(ids[:-1][-keep:].tolist()),
                      tuple(shown(g) for g in guesses), tuple(shown(t) for t in truths))

    def score_held_out(self) -> bpb.Score:
        """The model's bits per byte on all the held-out text as it is now (`babyllm bench --quality`)."""
        lib = self.librarian
        return bpb.score(self.model, lib.tokenizer, lib.train_tokens, lib.val_tokens, self.device, self.dtype)
