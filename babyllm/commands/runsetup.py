"""Run set-up for `babyllm train` and the cockpit: the config and run directory from the arguments, and the Tutor."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from babyllm.config import Config, apply_override, default_config_name, load_config, range_problem, validate
from babyllm.errors import BabyError
from babyllm.run.mirrors import check_installed
from babyllm.run.runfiles import RUNS

if TYPE_CHECKING:  # torch is imported only once the arguments are known to be good
    from babyllm.school.tutor import Tutor


def config_from_args(args: argparse.Namespace, default: str | None = None) -> Config:
    """The config named by --config (or the one that suits this machine), with --corpus/--steps/--set applied."""
    return apply_run_args(load_config(args.config or default or default_config_name(), args.overrides), args)


def apply_run_args(cfg: Config, args: argparse.Namespace) -> Config:
    """Apply --corpus (relative to the shell's directory), --steps and --minutes to a loaded config, checked as
    the config's own values are (babyllm.config.validate)."""
    if getattr(args, "corpus", None):
        cfg.data.corpus = str(Path(args.corpus).expanduser().resolve())
    for flag, key in (("steps", "train.steps"), ("minutes", "train.minutes")):
        value = getattr(args, flag, None)
        if value is not None:
            problem = range_problem(key, value)
            if problem:
                raise BabyError(f"--{flag} {value}: {problem.partition(': ')[2]}")
            setattr(cfg.train, flag, value)
    return cfg


def prepare_run(args: argparse.Namespace, runs_root: Path = RUNS) -> tuple[Config, Path]:
    """The config and run directory for `babyllm train` / `babyllm-tui` arguments.

    Resuming without --config continues with the config the run was saved with (plus --set, --corpus
    and --steps); otherwise the config comes from --config (or the one that suits this machine).
    """
    from babyllm.run.rundir import resolve_run_dir
    from babyllm.school.soul import resume_config  # torch: only once arguments parse

    run = getattr(args, "run", None)
    run_dir_arg = getattr(args, "run_dir", None)
    resume = bool(getattr(args, "resume", False))
    if resume and not getattr(args, "config", None):
        run_dir = resolve_run_dir(run, run_dir_arg, True, "", runs_root)
        cfg = resume_config(run_dir, say=lambda message: print(f"warning: {message}", file=sys.stderr))
        for item in getattr(args, "overrides", None) or ():
            apply_override(cfg, item)
        apply_run_args(cfg, args)
        validate(cfg, where=f"{run_dir} (saved config)")
        check_installed(cfg.log)  # (a tracker switched on with no package: one line, before anything starts)
        return cfg, run_dir
    cfg = config_from_args(args)
    check_installed(cfg.log)
    return cfg, resolve_run_dir(run, run_dir_arg, resume, cfg.name, runs_root)


def make_tutor(cfg: Config, run_dir: Path, resume: bool, **kwargs: Any) -> Tutor:
    """The Tutor for a prepared run (it takes the run's lock and builds the model); kwargs go to Tutor."""
    from babyllm.school.tutor import Tutor

    return Tutor(cfg, run_dir, resume=resume, **kwargs)
