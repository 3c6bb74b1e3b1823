"""`babyllm`: headless commands (info, train, chat, sample, bench, eval, export, plot, ctl, runs)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from babyllm.commands import startup
from babyllm.errors import BabyError, exit_code


def version_line() -> str:
    """`--version`: babyllm's version, and the Python and torch it runs on (torch's from its metadata: no import)."""
    from importlib import metadata

    from babyllm import __version__

    try:
        torch = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch = "not installed"
    return f"babyllm-tui {__version__} (Python {sys.version.split()[0]}, torch {torch})"


def add_config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="F", help="a shipped config's name (tiny, cpu, default) or a .toml path")
    p.add_argument("--set", metavar="K=V", action="append", default=[], dest="overrides",
                   help="override a config value, e.g. --set model.neurons=512 (repeatable)")


def add_run_args(p: argparse.ArgumentParser) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument("--run", metavar="NAME", help="run name: the run directory is runs/NAME")
    g.add_argument("--run-dir", metavar="D", type=Path, help="run directory (saves, metrics, logs)")


def add_training_args(p: argparse.ArgumentParser) -> None:
    """Arguments shared by `babyllm train` and `babyllm-tui`."""
    add_config_args(p)
    p.add_argument("--corpus", metavar="PATH", help="a corpus file or a folder of them (default: the shipped corpus)")
    add_run_args(p)
    p.add_argument("--steps", type=int, metavar="N", help="stop after N steps in total (default: train.steps)")
    p.add_argument("--minutes", type=float, metavar="M",
                   help="stop after M minutes of training time; the LR schedule runs on this clock (train.minutes)")
    p.add_argument("--resume", action="store_true", help="continue the run from its latest save")


def cockpit_parser() -> argparse.ArgumentParser:
    """`babyllm-tui`'s arguments (tui.cli runs it)."""
    p = argparse.ArgumentParser(
        prog="babyllm-tui",
        description="Train babyLLM and watch it live: stats, loss, windows, guesses, chat. "
                    "Default: the shipped corpus with the config that suits this machine "
                    "(default on a GPU, cpu otherwise). Keys: ? in the app.")
    p.add_argument("--version", action="version", version=version_line())
    add_training_args(p)
    p.add_argument("--watch", metavar="RUN_DIR", type=Path,
                   help="view a run trained by another process (read-only: follows its metrics, events and "
                        "saves; chat loads its newest save); not with the training options")
    p.add_argument("--attach", metavar="RUN_DIR", type=Path,
                   help="the full cockpit on a run another process trains (every key, live chat), over its "
                        "control socket; q asks: detach (it trains on) or stop it")
    return p


def cmd_info(args: argparse.Namespace) -> int:
    """Parameter counts per part and training FLOPs per token for a config."""
    import torch

    from babyllm.config import load_config, machine_default
    from babyllm.model.network import BabyLLM

    name, why = (args.config, "") if args.config else machine_default()
    cfg = load_config(name, args.overrides)
    with torch.device("meta"):  # shapes only: counting never allocates the weights
        model = BabyLLM(cfg.model)
    counts = model.param_counts()
    macs = model.forward_macs_per_token()
    total = sum(counts.values())
    flops = model.train_flops_per_token()
    if args.json:
        print(json.dumps({"config": cfg.name, "machine_default": not args.config, "params": counts,
                          "total_params": total, "forward_macs_per_token": macs,
                          "train_flops_per_token": flops, "model": cfg.to_dict()["model"]}, indent=2))
        return 0
    m = cfg.model
    if why:
        print(f"no --config: {cfg.name}, what babyllm-tui and babyllm train use on this machine ({why})")
    print(f"config {cfg.name}: vocab {m.vocab:,}, embed {m.embed:,}, neurons {m.neurons:,}, context {m.context}, "
          f"{len(m.windows)} windows, memory rank {m.memory_rank}")
    print(f"{'part':<10}{'parameters':>14}{'share':>8}{'fwd MACs/token':>17}")
    for name, n in counts.items():
        print(f"{name:<10}{n:>14,}{n / total:>8.1%}{macs[name]:>17,}")
    print(f"{'total':<10}{total:>14,}{1:>8.0%}{sum(macs.values()):>17,}")
    print(f"training FLOPs per token (6 x forward MACs): {flops / 1e6:,.1f} M")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from babyllm.commands.train import main as train_main

    return train_main(args)


def cmd_chat(args: argparse.Namespace) -> int:
    from babyllm.commands.chat import chat_main

    return chat_main(args)


def cmd_sample(args: argparse.Namespace) -> int:
    from babyllm.commands.chat import sample_main

    return sample_main(args)


def cmd_bench(args: argparse.Namespace) -> int:
    if args.quality:
        from babyllm.commands.quality import bench_quality

        return bench_quality(args)
    if args.corpus or args.minutes is not None:
        raise BabyError("--corpus and --minutes go with bench --quality")
    from babyllm.commands.bench import main as bench_main

    return bench_main(args)


def cmd_eval(args: argparse.Namespace) -> int:
    from babyllm.commands.quality import eval_main

    return eval_main(args)


def cmd_export(args: argparse.Namespace) -> int:
    from babyllm.commands.export import export_main

    return export_main(args)


def cmd_plot(args: argparse.Namespace) -> int:
    from babyllm.commands.plot import plot_main

    return plot_main(args)


def cmd_ctl(args: argparse.Namespace) -> int:
    from babyllm.commands.ctl import ctl_main

    return ctl_main(args)


def cmd_runs(args: argparse.Namespace) -> int:
    from babyllm.commands.ctl import runs_main

    return runs_main(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="babyllm", description=__doc__)
    parser.add_argument("--version", action="version", version=version_line())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="parameter counts and FLOPs per token of a config (default: this machine's)")
    add_config_args(p)
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("train", help="train headless, printing banded stats")
    add_training_args(p)
    p.set_defaults(func=cmd_train, takes_signals=True)  # (it handles SIGINT, SIGTERM and SIGHUP: commands.train)

    p = sub.add_parser("chat", help="chat with a run's latest save")
    add_run_args(p)
    p.set_defaults(func=cmd_chat)

    p = sub.add_parser("sample", help="one completion of a prompt from a run's latest save")
    add_run_args(p)
    p.add_argument("--prompt", required=True, help="the text to continue")
    p.add_argument("--max-tokens", type=int, metavar="N", help="most tokens to generate")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="sampling seed (same seed, same output)")
    p.add_argument("--temperature", type=float, metavar="T", help="sampling temperature (0 = greedy)")
    p.set_defaults(func=cmd_sample)

    p = sub.add_parser("bench", help="measure matmul peak, training and generation speed")
    p.add_argument("--config", metavar="F", action="append",
                   help="config(s) to measure (repeatable; default: cpu and default)")
    p.add_argument("--set", metavar="K=V", action="append", default=[], dest="overrides",
                   help="config override (repeatable)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda")
    p.add_argument("--dtype", choices=("fp32", "bf16"), help="training precision (default: each config's)")
    p.add_argument("--compile", action="store_true", help="use torch.compile")
    p.add_argument("--batch", metavar="N|auto",
                   help="training batch (default: each config's); auto: fill the GPU's memory")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--scaling", action="store_true",
                   help="also measure how speed and memory grow with context, neurons and batch")
    p.add_argument("--quality", action="store_true",
                   help="learning quality instead: train one config from scratch for --minutes, "
                        "score held-out bits per byte")
    p.add_argument("--corpus", metavar="PATH", help="with --quality: the corpus (default: the config's)")
    p.add_argument("--minutes", type=float, metavar="M", help="with --quality: the training-time budget (default 5)")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("eval", help="score a run's newest save in bits per byte on held-out text")
    p.add_argument("--run-dir", metavar="R", type=Path, required=True,
                   help="run directory (or one save folder in it)")
    p.add_argument("--corpus", metavar="F",
                   help="score the last data.val_fraction of this corpus instead of the run's own")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_eval)

    from babyllm.commands.export import add_export_args
    from babyllm.commands.plot import add_plot_args

    p = sub.add_parser("export", help="write a run's newest good save as a folder of its own: model.safetensors, "
                                      "config.json, tokenizer.json and a model card (BabyLLM.from_pretrained)")
    add_export_args(p)
    p.set_defaults(func=cmd_export)

    p = sub.add_parser("plot", help="draw runs' loss curves to a PNG/SVG/PDF (needs the [plot] extra)")
    add_plot_args(p)
    p.set_defaults(func=cmd_plot, uses_torch=False)

    from babyllm.commands.ctl import add_ctl_args, add_runs_args

    p = sub.add_parser("ctl", help="ask a live run to pause, resume, save, checkpoint, roll back or stop; "
                                   "or its status")
    add_ctl_args(p)
    p.set_defaults(func=cmd_ctl, uses_torch=False)  # a script's quick question: no torch import (seconds)

    p = sub.add_parser("runs", help="list the runs under runs/: state, step, best validation loss, last save")
    add_runs_args(p)
    p.set_defaults(func=cmd_runs, uses_torch=False)

    p = sub.add_parser("completion", help="print shell completion for babyllm and babyllm-tui: "
                                          "eval \"$(babyllm completion bash)\" (in ~/.bashrc; zsh: ~/.zshrc)")
    p.add_argument("shell", choices=("bash", "zsh"))
    p.set_defaults(func=cmd_completion, uses_torch=False)
    return parser


def cmd_completion(args: argparse.Namespace) -> int:
    from babyllm.commands.completion import script

    print(script(args.shell, {"babyllm": build_parser(), "babyllm-tui": cockpit_parser()}), end="")
    return 0


def run_command(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    """Run a command; user mistakes become one line on stderr and exit_code(), never a traceback."""
    try:
        if getattr(args, "uses_torch", True):
            from babyllm.model.gemm import matmul_choice

            matmul_choice()  # a mistyped BABYLLM_MATMUL is a one-line error before anything starts
        return func(args)
    except BabyError as e:
        print(f"error: {e}", file=sys.stderr)
        return exit_code(e)
    except KeyboardInterrupt as e:
        return startup.exit_code(e)
    except BrokenPipeError:  # output piped into `head` and closed early: not an error worth a traceback
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    guard = startup.StartupGuard().install()  # first: a signal while starting ends it cleanly (commands.startup)
    try:
        args = build_parser().parse_args(argv)
        if getattr(args, "uses_torch", True):  # (runtime imports torch: ctl and runs answer without it)
            from babyllm.model.runtime import tune_malloc

            tune_malloc()  # before the command allocates anything
        if not getattr(args, "takes_signals", False):
            guard.release()  # (a command that does not handle them itself keeps Python's defaults)
        guard.check()  # (one that came while starting: nothing is done yet)
        return run_command(args.func, args)
    except KeyboardInterrupt as e:
        return startup.exit_code(e)
    finally:
        guard.release()  # (main may be called in a process that goes on: a test, a script)


if __name__ == "__main__":
    sys.exit(main())
