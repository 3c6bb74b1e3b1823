"""`babyllm eval` (score a save on held-out text) and `babyllm bench --quality` (train for a budget, score it);
the metric is babyllm.model.bpb."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from babyllm.config import Config
from babyllm.durations import duration
from babyllm.errors import BabyError
from babyllm.model.bpb import Score, score

CURVE_POINTS = 8  # the text report's time-to-quality line shows at most this many validations (--json: all)

# --- commands: `babyllm eval` and `babyllm bench --quality` ---------------------------------------------


def thinned(rows: list[Any], most: int) -> list[Any]:
    """At most `most` rows, evenly spread, always with the first and the last."""
    if len(rows) <= most:
        return list(rows)
    return [rows[round(i * (len(rows) - 1) / (most - 1))] for i in range(most)]


def held_out_split(cfg: Config, tokenizer: Tokenizer, corpus: str | None) -> tuple[np.ndarray, np.ndarray]:
    """(training tokens, held-out tokens) of the run's corpus, or of `corpus`, under `tokenizer`.

    Held-out is the last data.val_fraction of the tokens: the run's own validation split.
    """
    from babyllm.school.librarian import Librarian

    if corpus:
        cfg.data.corpus = str(Path(corpus).expanduser().resolve())
    lib = Librarian(cfg, tokenizer=tokenizer)
    return lib.train_tokens, lib.val_tokens


def print_score(label: str, s: Score, extra: dict[str, Any] | None = None, as_json: bool = False) -> None:
    if as_json:
        print(json.dumps({**(extra or {}), **s.to_dict()}, indent=2))
        return
    print(f"{label}: {s.bpb:.4f} bits/byte ({s.nats_per_token:.4f} nats/token) on {s.tokens:,} held-out tokens "
          f"({s.bytes:,} bytes); unigram {s.unigram_bpb:.4f} bits/byte")


def eval_main(args: argparse.Namespace) -> int:
    """`babyllm eval`: score a run's newest good save on held-out text."""
    from babyllm.model.runtime import pick_device
    from babyllm.run.runfiles import check_run_dir
    from babyllm.school.soul import load_for_inference

    device = pick_device(args.device)
    cfg, model, tokenizer, step = load_for_inference(check_run_dir(args.run_dir, "read"), device)
    train, held = held_out_split(cfg, tokenizer, args.corpus)
    s = score(model, tokenizer, train, held, device, cfg.train.dtype)
    print_score(f"{args.run_dir} step {step:,}", s, {"run_dir": str(args.run_dir), "step": step}, args.json)
    return 0


def bench_quality(args: argparse.Namespace) -> int:
    """`babyllm bench --quality`: train a config from scratch for a time budget, then score it."""
    from babyllm.config import load_config
    from babyllm.school.tutor import Tutor

    configs = args.config or ["cpu"]
    if len(configs) != 1:
        raise BabyError("bench --quality measures one --config at a time")
    cfg = load_config(configs[0], args.overrides)
    if args.corpus:
        cfg.data.corpus = str(Path(args.corpus).expanduser().resolve())
    if args.device != "auto":
        cfg.train.device = args.device
    minutes = args.minutes if args.minutes is not None else 5.0
    if minutes <= 0:
        raise BabyError(f"--minutes {minutes:g}: must be > 0")
    cfg.train.minutes, cfg.train.steps, cfg.train.save_every = minutes, 0, 0
    if not args.json:
        print(f"training {cfg.name} for {minutes:g} min of training time, then scoring the held-out "
              f"last {cfg.data.val_fraction:.0%} of the corpus", file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="babyllm-quality-") as tmp:
        tutor = Tutor(cfg, Path(tmp) / "run", say=lambda m: print(m, file=sys.stderr))
        state = tutor.run()
        if state != "finished":
            raise BabyError(f"training ended {state}: {tutor.snapshot().error or 'see above'}")
        s = tutor.score_held_out()
        corpus = tutor.snapshot().corpus
        curve = tutor.exam.curve
    extra = {"config": cfg.name, "corpus": Path(corpus.root).as_posix() if corpus else "", "minutes": minutes,
             "steps": tutor.step_count,
             "tokens_trained": tutor.tokens, "tokens_per_s": tutor.tokens / max(tutor.train_seconds, 1e-9),
             "device": str(tutor.device), "dtype": tutor.dtype,
             # time to quality: each validation's bits per byte (on the run's validation batches) by training time
             "curve": [{"step": n, "train_seconds": round(s, 2), "val_bpb": round(b, 4)} for n, s, b in curve]}
    if not args.json:
        print(f"{cfg.name}: {tutor.step_count:,} steps, {tutor.tokens:,} tokens in {minutes:g} min "
              f"({extra['tokens_per_s']:,.0f} tokens/s on {tutor.device}, {tutor.dtype})")
        print("validation bits per byte by training time: "
              + ", ".join(f"{duration(s)} {b:.3f}" for _, s, b in thinned(curve, CURVE_POINTS)))
    print_score(f"{cfg.name} held-out", s, extra, args.json)
    return 0
