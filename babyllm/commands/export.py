"""`babyllm export RUN -o DIR`: a run's newest good save (or one save folder) as a folder of its own: the weights,
config.json, the tokenizer and a model card (babyllm.model.pretrained), loaded back with BabyLLM.from_pretrained."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from babyllm.errors import BabyError

NOT_MEASURED = "not measured"


def add_export_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", metavar="RUN", help="a run directory (its newest good save), a run's name under runs/, "
                                              "or one save folder, e.g. runs/NAME/best")
    p.add_argument("-o", "--output", metavar="DIR", type=Path, required=True,
                   help="the folder to write (new, or empty): model.safetensors, config.json, tokenizer.json, "
                        "README.md")
    p.add_argument("--corpus", metavar="F", help="score the held-out last data.val_fraction of this corpus "
                                                 "instead of the run's own")
    p.add_argument("--no-score", action="store_true",
                   help="skip scoring held-out bits per byte for the model card (it reads the corpus)")


def export_main(args: argparse.Namespace) -> int:
    from babyllm.model import pretrained
    from babyllm.run.runfiles import check_run_dir, is_save_folder, run_name_dir
    from babyllm.school import soul

    out = _check_output(args.output)
    given = Path(args.run).expanduser()
    if not given.exists() and "/" not in args.run:  # a run's name
        given = run_name_dir(args.run)
    run = check_run_dir(given, "read", flag="babyllm export")
    run_dir = run.parent if is_save_folder(run) else run
    tokenizer = soul.load_tokenizer(run_dir)
    warn = lambda m: print(f"warning: {m}", file=sys.stderr)  # noqa: E731
    if is_save_folder(run):
        loaded = soul.read_save(run, tokenizer=tokenizer, with_state=False)
    else:
        loaded = soul.load_newest(run, None, tokenizer, say=warn, with_state=False)
    meta = loaded.meta
    cfg = soul.config_from_dict(meta["config"], meta.get("config_name", "saved"), str(loaded.path / "meta.json"))
    model = soul.model_from(cfg, loaded.model_state, loaded.path)
    scores = {} if args.no_score else _score(cfg, model.eval(), tokenizer, args.corpus, warn)
    info = _info(run_dir, loaded.path, meta, cfg, scores)
    pretrained.write(out, cfg.model, loaded.model_state, tokenizer, info, model_card(info, model))
    size = (out / pretrained.WEIGHTS_FILE).stat().st_size
    print(f"exported {run_dir.name} step {loaded.step:,} ({loaded.path.name}) to {out}: "
          f"{pretrained.WEIGHTS_FILE} ({size / 1e6:,.1f} MB), {pretrained.CONFIG_FILE}, {pretrained.TOKENIZER_FILE}, "
          f"{pretrained.CARD_FILE}")
    print(f"held-out: {_bpb_line(info)}")
    print(f"use it: BabyLLM.from_pretrained(\"{out}\"), or babyllm chat --run-dir {out}")
    return 0


def _check_output(out: Path) -> Path:
    out = out.expanduser()
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise BabyError(f"-o {out}: exists and is not an empty folder; export into a new one (nothing was written)")
    if not out.parent.is_dir():
        raise BabyError(f"-o {out}: no such folder {out.parent}")
    return out


def _score(cfg: Any, model: Any, tokenizer: Any, corpus: str | None, warn: Any) -> dict[str, Any]:
    """Held-out bits per byte as `babyllm eval` measures it; {} (said as a warning) when the corpus cannot be read."""
    import torch

    from babyllm.commands.quality import held_out_split
    from babyllm.model.bpb import score

    try:
        train, held = held_out_split(cfg, tokenizer, corpus)
    except BabyError as e:
        warn(f"held-out bits per byte {NOT_MEASURED}: {e} (give the corpus with --corpus, or --no-score)")
        return {}
    s = score(model, tokenizer, train, held, torch.device("cpu"), cfg.train.dtype)
    return {"held_out_bpb": s.bpb, "unigram_bpb": s.unigram_bpb, "held_out_tokens": s.tokens}


def _info(run_dir: Path, save: Path, meta: dict[str, Any], cfg: Any, scores: dict[str, Any]) -> dict[str, Any]:
    """config.json's "babyllm" table: how the model was trained (and the run's config but its model sizes)."""
    from babyllm import __version__

    sections = {k: v for k, v in cfg.to_dict().items() if k != "model"}
    return {"babyllm_version": __version__, "config_name": cfg.name, "run": run_dir.name, "save": save.name,
            "step": int(meta["step"]), "tokens": meta.get("tokens"), "train_seconds": meta.get("train_seconds"),
            "corpus": cfg.data.corpus or "the corpus shipped with babyllm", "val_loss": meta.get("val_loss"),
            "val_bpb": meta.get("val_bpb"), **scores, "config": sections}


def _bpb_line(info: dict[str, Any]) -> str:
    if "held_out_bpb" not in info:
        return NOT_MEASURED
    share = info["config"]["data"]["val_fraction"]
    return (f"{info['held_out_bpb']:.4f} bits per byte on {info['held_out_tokens']:,} held-out tokens, the corpus's "
            f"last {share:.0%} (unigram {info['unigram_bpb']:.4f})")


def model_card(info: dict[str, Any], model: Any) -> str:
    """README.md of an export: what it is, what it was trained on and how well it does, how to load it."""
    from babyllm.durations import duration

    m = model.cfg
    params = sum(p.numel() for p in model.parameters())
    tokens = f"{info['tokens']:,} tokens" if isinstance(info.get("tokens"), int) else "tokens not recorded"
    took = info.get("train_seconds")
    took = f", {duration(took)} of training" if isinstance(took, (int, float)) else ""
    val = info.get("val_bpb")
    val = f"{val:.4f} bits per byte" if isinstance(val, float) else NOT_MEASURED
    rows = [("config", f"{info['config_name']}: {params:,} parameters (vocab {m.vocab:,}, embed {m.embed:,}, "
                       f"{m.neurons:,} neurons, context {m.context}, {len(m.windows)} windows)"),
            ("corpus", str(info["corpus"])),
            ("trained", f"{info['step']:,} steps, {tokens}{took} (run {info['run']}, {info['save']})"),
            ("held-out", _bpb_line(info)),
            ("validation at the save", f"{val} (the run's validation batches)")]
    table = "\n".join(f"| {k} | {v} |" for k, v in rows)
    return f"""---
library_name: babyllm
tags: [babyllm, attention-free]
---

# babyLLM: {info['run']} at step {info['step']:,}

A small attention-free language model (babyLLM: Embed, Neurons, Windows, Memory, Memory 2, Logits), exported
by `babyllm export` (babyllm-tui {info['babyllm_version']}).

| | |
| --- | --- |
{table}

## Use

```python
import torch
from babyllm import BabyLLM
from babyllm.model.pretrained import load_tokenizer

model = BabyLLM.from_pretrained("path/to/this/folder")             # eval mode, on the CPU
tokenizer = load_tokenizer("path/to/this/folder")                   # (tokenizers.Tokenizer, size-checked)
logits = model(torch.tensor([tokenizer.encode("Once upon a time").ids]))   # [1, T, vocab]
```

Or from a shell: `babyllm chat --run-dir path/to/this/folder`, `babyllm sample --run-dir path/to/this/folder
--prompt "Once upon a time"`, `babyllm eval --run-dir path/to/this/folder`.

Files: `model.safetensors` (the weights), `config.json` (the model's sizes; under "babyllm", how it was trained),
`tokenizer.json` (byte-level BPE, Hugging Face tokenizers).
"""

