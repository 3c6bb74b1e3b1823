"""A trained model as a folder of its own (`babyllm export`): the weights, config.json, the tokenizer and a model
card, loaded back with one call (BabyLLM.from_pretrained), the way Hugging Face's hub mixins keep a model.

An export folder holds::

    model.safetensors   the weights (safetensors: loading never runs code from the file)
    config.json         {"model_type": "babyllm", "export_format": 1, <ModelConfig's fields>, "babyllm": {how it
                        was trained: config name, step, tokens, corpus, scores, "config": the run's other sections}}
    tokenizer.json      the byte-level BPE tokenizer (Hugging Face tokenizers: Tokenizer.from_file)
    README.md           the model card: corpus, steps, held-out bits per byte

Nothing here knows of runs, saves or training: the export command gathers what the folder holds.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save
from tokenizers import Tokenizer

from babyllm.config import Config, ModelConfig, _apply_table, validate
from babyllm.errors import CheckpointError, ConfigError
from babyllm.safefile import open_checked, read_bounded

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
TOKENIZER_FILE = "tokenizer.json"
CARD_FILE = "README.md"
MODEL_TYPE = "babyllm"
EXPORT_FORMAT = 1
INFO = "babyllm"  # config.json's table of how the model was trained
CONFIG_LIMIT = 1 << 20  # bytes config.json may hold (it is a few hundred)
TOKENIZER_LIMIT = 64 << 20  # a tokenizer of 65,535 tokens is a few MB
WEIGHTS_SLACK = 1 << 20  # bytes of safetensors header beyond the weights themselves

M = TypeVar("M", bound=torch.nn.Module)


def is_export(folder: Path) -> bool:
    """A folder `babyllm export` wrote (its config.json says model_type "babyllm")."""
    try:
        text = read_bounded(Path(folder) / CONFIG_FILE, CONFIG_LIMIT, Path(folder))
        return json.loads(text.decode("utf-8")).get("model_type") == MODEL_TYPE
    except (OSError, ValueError, AttributeError, RecursionError, CheckpointError):
        return False


def read_config(folder: Path) -> tuple[ModelConfig, dict[str, Any]]:
    """The model's sizes and the training information config.json holds; CheckpointError (one line) if unusable."""
    path = Path(folder) / CONFIG_FILE
    try:
        data = json.loads(read_bounded(path, CONFIG_LIMIT, Path(folder)).decode("utf-8"))
    except FileNotFoundError:
        raise CheckpointError(f"{folder}: not an exported babyllm model (no {CONFIG_FILE}; write one with "
                              "babyllm export RUN -o DIR)") from None
    except (OSError, ValueError, RecursionError) as e:
        raise CheckpointError(f"{path}: unreadable ({str(e)[:120]})") from None
    if not isinstance(data, dict) or data.get("model_type") != MODEL_TYPE:
        raise CheckpointError(f"{path}: not a babyllm model's config (model_type is not \"{MODEL_TYPE}\")")
    if data.get("export_format") != EXPORT_FORMAT:
        raise CheckpointError(f"{path}: export format {data.get('export_format')!r}; this babyllm reads "
                              f"{EXPORT_FORMAT} (a newer babyllm wrote it?)")
    sizes = {f.name: data[f.name] for f in dataclasses.fields(ModelConfig) if f.name in data}
    cfg = Config(name=path.parent.name)
    try:  # checked as a config file's [model] table is: one line naming the key and value
        _apply_table(cfg, {"model": sizes}, where=str(path), base=path.parent)
        validate(cfg, where=str(path))
    except ConfigError as e:
        raise CheckpointError(str(e)) from None
    info = data.get(INFO)
    return cfg.model, info if isinstance(info, dict) else {}


def build(make: Callable[[ModelConfig], M], folder: str | Path, device: str | torch.device = "cpu") -> M:
    """`make(config)` with the folder's weights loaded, in eval mode on `device` (BabyLLM.from_pretrained)."""
    folder = Path(folder)
    cfg, _ = read_config(folder)
    model = make(cfg)
    weights = folder / WEIGHTS_FILE
    try:
        fd, size = open_checked(weights, folder)  # no link out, no device; a size the config can need at most
        os.close(fd)
        most = sum(p.numel() * p.element_size() for p in model.parameters()) + WEIGHTS_SLACK
        if size > most:
            raise CheckpointError(f"{weights}: {size:,} bytes, more than {CONFIG_FILE}'s model can hold ({most:,}); "
                                  "not read")
        state = load_file(str(weights))
    except FileNotFoundError:
        raise CheckpointError(f"{folder / WEIGHTS_FILE}: missing") from None
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{folder / WEIGHTS_FILE}: damaged ({str(e)[:120]})") from None
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        raise CheckpointError(f"{folder / WEIGHTS_FILE}: the weights do not fit {CONFIG_FILE} "
                              f"({str(e).splitlines()[0][:160]})") from None
    return model.to(device).eval()


def load_tokenizer(folder: str | Path) -> Tokenizer:
    path = Path(folder) / TOKENIZER_FILE
    try:
        return Tokenizer.from_str(read_bounded(path, TOKENIZER_LIMIT, Path(folder)).decode("utf-8"))
    except CheckpointError:
        raise
    except Exception as e:  # tokenizers raises a plain Exception for a missing or bad file
        raise CheckpointError(f"{path}: unusable tokenizer ({str(e).splitlines()[0][:120]})") from None


def write(folder: Path, model: ModelConfig, weights: dict[str, torch.Tensor], tokenizer: Tokenizer,
          info: dict[str, Any], card: str) -> None:
    """Write an export folder atomically: into a hidden temp folder beside it, renamed into place."""
    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir(parents=True)
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in weights.items()}
        (tmp / WEIGHTS_FILE).write_bytes(save(tensors, metadata={"format": "pt"}))  # (save_file makes it 0600)
        config = {"model_type": MODEL_TYPE, "export_format": EXPORT_FORMAT, **dataclasses.asdict(model), INFO: info}
        (tmp / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        tokenizer.save(str(tmp / TOKENIZER_FILE))
        (tmp / CARD_FILE).write_text(card, encoding="utf-8")
        with contextlib.suppress(FileNotFoundError):
            folder.rmdir()  # an empty folder given as -o is replaced
        os.replace(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
