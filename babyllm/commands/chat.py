"""`babyllm chat` and `babyllm sample`: talk to (or sample from) a run's latest save with Infer2."""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from babyllm.errors import BabyError, CheckpointError
from babyllm.infer2 import Infer2, Settings
from babyllm.infer2.commands import cut_at_limit
from babyllm.model.pretrained import is_export
from babyllm.run.chatlog import ChatLog, visible
from babyllm.run.runfiles import CHAT_LOG, RUNS, check_run_dir, is_save_folder, run_name_dir

PROMPT = "you> "
REPLY = "baby> "
EMPTY_HINT = "(type some text for babyLLM to continue, /help for commands, /quit to leave)"
QUIT = ("/quit", "/exit", "/q")


def find_run_dir(args: argparse.Namespace, runs_root: Path = RUNS) -> Path:
    """The run directory from --run/--run-dir, else the most recently saved run; a clear error if missing."""
    from babyllm.run.rundir import resolve_run_dir

    run, run_dir = getattr(args, "run", None), getattr(args, "run_dir", None)
    if run_dir is not None:
        return check_run_dir(run_dir, "read", "--run-dir", runs_root)
    if run:
        return check_run_dir(run_name_dir(run, runs_root), "read", "--run", runs_root)
    return Path(resolve_run_dir(None, None, True, "", runs_root=runs_root))


def load(args: argparse.Namespace):
    """(config, model, tokenizer, step, run_dir) of the run's newest good save, on GPU when there is one."""
    import torch

    from babyllm.school.soul import load_for_inference

    run_dir = find_run_dir(args)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    try:
        cfg, model, tokenizer, step = load_for_inference(
            run_dir, device=device, say=lambda m: print(f"warning: {m}", file=sys.stderr))
    except PermissionError as e:
        raise CheckpointError(f"{run_dir}: cannot read the run directory ({e.strerror})") from None
    except OSError as e:
        raise CheckpointError(f"{run_dir}: cannot read the run ({e.strerror or e})") from None
    return cfg, model, tokenizer, step, run_dir


def run_name(run_dir: Path) -> str:
    return f"{run_dir.parent.name}/{run_dir.name}" if is_save_folder(run_dir) else run_dir.name


def _utf8_safe(stream: TextIO) -> None:
    """Never die on a character the terminal's encoding cannot show."""
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None:
        with contextlib.suppress(ValueError, OSError):
            reconfigure(errors="replace")


# --- chat -----------------------------------------------------------------------------------------------


def chat_loop(
    infer: Infer2,
    log: ChatLog | None = None,
    read: Callable[[str], str] | None = None,
    out: TextIO | None = None,
) -> int:
    """The interactive loop: read a line, run a command or stream a reply; returns 0 on /quit, EOF or Ctrl-C.

    Ctrl-C while a reply is streaming stops that reply only; at the prompt it leaves.
    """
    out = out or sys.stdout
    read = read or input
    say = lambda text: print(text, file=out, flush=True)  # noqa: E731
    turns = 0
    while True:
        try:
            line = read(PROMPT)
        except (EOFError, KeyboardInterrupt):
            say("")
            return 0
        text = line.strip()
        if not text:
            say(EMPTY_HINT)
            continue
        if text.startswith("/"):
            if text.split()[0].lower() in QUIT:
                return 0
            try:
                say(infer.command(text))
                if text.split()[0].lower() == "/reset":
                    turns = 0
            except BabyError as e:
                say(f"error: {e}")
            if log is not None:
                log.write("you", text)
            continue
        # Later turns start on a new line after the last reply, so the model sees a conversation.
        prompt = line if turns == 0 else "\n" + line
        if log is not None:
            log.write("you", line)
        pieces: list[str] = []
        print(REPLY, end="", file=out, flush=True)
        try:
            for piece in infer.stream(prompt):
                pieces.append(piece)
                print(visible(piece), end="", file=out, flush=True)
            cut = f" {cut_at_limit()}" if infer.hit_limit else ""
            say(cut if pieces else "(no reply: the model ended the text at once)")
        except KeyboardInterrupt:
            say(" [interrupted]")
        except BabyError as e:
            say(f"\nerror: {e}")
        turns += 1
        for notice in infer.take_notices():
            say(f"({notice})")
        if log is not None:
            log.write("baby", "".join(pieces))


def chat_main(args: argparse.Namespace) -> int:
    """`babyllm chat [--run NAME | --run-dir D]`."""
    _utf8_safe(sys.stdout)
    cfg, model, tokenizer, step, run_dir = load(args)
    infer = Infer2(model, tokenizer, Settings.from_config(cfg.chat))
    print(f"loaded run {run_name(run_dir)} at step {step:,} ({run_dir}, config {cfg.name}, {infer.device})")
    print(f"{infer.describe()}\ntype /help for commands, /quit or Ctrl-D to leave")
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (line editing and history for input())
    log = None  # (an exported model's folder is for sharing: no chat.log is added to it)
    if not is_export(run_dir):
        log_dir = run_dir.parent if is_save_folder(run_dir) else run_dir
        log = ChatLog(log_dir / CHAT_LOG, lambda m: print(m, file=sys.stderr))
        log.write("info", f"chat with step {step} of {run_dir}")
    return chat_loop(infer, log)


# --- sample ---------------------------------------------------------------------------------------------


def sample_settings(args: argparse.Namespace, base: Settings) -> Settings:
    """The config's sampling settings with --max-tokens/--temperature/--seed applied and checked."""
    max_tokens = getattr(args, "max_tokens", None)
    temperature = getattr(args, "temperature", None)
    seed = getattr(args, "seed", 0)
    if max_tokens is not None:
        if max_tokens < 1:
            raise BabyError(f"--max-tokens {max_tokens}: must be at least 1")
        base.max_tokens = max_tokens
    if temperature is not None:
        if not math.isfinite(temperature) or temperature < 0:
            raise BabyError(f"--temperature {temperature}: must be a number >= 0 (0 = greedy)")
        base.temperature = temperature
    base.seed = seed
    return base.validate()


def sample_main(args: argparse.Namespace) -> int:
    """`babyllm sample --prompt TEXT [--max-tokens N] [--seed S] [--temperature T]`: one completion on stdout."""
    prompt = getattr(args, "prompt", None) or ""
    if not prompt.strip():
        raise BabyError("--prompt is empty: give some text for the model to continue, "
                        "e.g. --prompt \"Once upon a time\"")
    sample_settings(args, Settings())  # bad values fail before the (slow) load
    _utf8_safe(sys.stdout)
    cfg, model, tokenizer, step, run_dir = load(args)
    settings = sample_settings(args, Settings.from_config(cfg.chat))
    print(f"loaded run {run_name(run_dir)} at step {step:,} ({run_dir})", file=sys.stderr)
    infer = Infer2(model, tokenizer, settings)
    show = visible if sys.stdout.isatty() else (lambda text: text)  # raw text when piped to a file
    try:
        for piece in infer.stream(prompt):
            for notice in infer.take_notices():
                print(f"note: {notice}", file=sys.stderr)
            sys.stdout.write(show(piece))
            sys.stdout.flush()
        for notice in infer.take_notices():
            print(f"note: {notice}", file=sys.stderr)
        sys.stdout.write("\n")
        sys.stdout.flush()
    except BrokenPipeError:  # `babyllm sample ... | head`: the reader left, which is fine
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115  (so the exit-time flush stays quiet)
    return 0
