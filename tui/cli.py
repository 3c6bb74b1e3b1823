"""`babyllm-tui`: train babyLLM in the cockpit (with --attach RUN_DIR, drive a live run trained elsewhere;
with --watch RUN_DIR, view one).

Mistakes in the arguments, config, corpus or run directory are one line on stderr and exit code 2,
before the app starts; problems found while the Tutor starts (it builds the tokenizer and encodes
the corpus in its thread) are shown on the error screen.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from babyllm.commands.startup import StartupGuard, exit_code

if TYPE_CHECKING:  # (imported once main() runs: a signal before then would land inside an import)
    from tui.detach import Notifier


def build_parser() -> argparse.ArgumentParser:
    from babyllm.commands.cli import cockpit_parser

    return cockpit_parser()  # (beside babyllm's in babyllm.commands.cli: shell completion is made from both)


def cockpit(args: argparse.Namespace, notifier: Notifier | None = None, guard: StartupGuard | None = None) -> int:
    """The training cockpit in this process; ``notifier`` tells the launcher (tui.detach) of a detach; ``guard``
    holds a signal that came while it started (it ends the start-up before the app takes the signals over)."""
    from babyllm.commands.runsetup import make_tutor, prepare_run
    from babyllm.model import footprint
    from babyllm.model.runtime import pick_device
    from babyllm.school.corpus import find_corpus
    from tui.detach import Detacher

    guard = guard or StartupGuard()

    # Everything that can be checked cheaply is checked here, so it is a one-line error, not a screen.
    cfg, run_dir = prepare_run(args)  # as `babyllm train`: --resume alone continues with the saved config
    find_corpus(cfg.data.corpus or None)
    device = pick_device(cfg.train.device)
    footprint.check(cfg, device)  # (the Tutor checks again; here it is a line before the app, not a screen)

    from tui.app import CockpitApp

    def tutor_factory(publish: Any, say: Any) -> Any:
        return make_tutor(cfg, run_dir, args.resume, publish=publish, say=say,
                          progress=lambda p: app.show_progress(p.line(width=10)))  # fits 80 columns

    detacher = Detacher(run_dir, notifier)
    app = CockpitApp(tutor_factory, chat_factory=lambda tutor: tutor.chat_session(), window=cfg.stats.window,
                     subtitle=f"{cfg.name} · {device} · {run_dir}", on_hangup=cfg.tui.on_hangup, detacher=detacher)
    guard.check()
    guard.release()  # the app handles SIGTERM and SIGHUP from its first moment (nothing is trained before)
    guard.check()
    code = app.run()
    if app.detached:  # the UI is gone; the Tutor trains on in this process, off the terminal
        return detacher.carry_on(app.tutor_thread)
    if notifier is not None:
        notifier.close()
    stopped = app.join_tutor(timeout=app.join_timeout)
    if app.failure:
        print(f"babyllm-tui: {app.failure}", file=sys.stderr)
    if not stopped:
        print("babyllm-tui: the Tutor thread did not stop in time; the last save is intact", file=sys.stderr)
        return 1
    snap = app.tutor.snapshot() if app.tutor is not None else None
    saved = snap.last_save_path if snap is not None else None
    if saved is not None:
        print(f"babyllm-tui: last save {saved} (resume with --run-dir {run_dir} --resume)")
    return code if isinstance(code, int) else app.exit_code


def main(argv: Sequence[str] | None = None) -> int:
    guard = StartupGuard().install()  # first: a signal while starting ends it cleanly (babyllm.commands.startup)
    try:
        from babyllm.commands.cli import run_command
        from babyllm.model.runtime import tune_malloc
        from tui.detach import launch

        tune_malloc()
        args = build_parser().parse_args(argv)
        guard.check()
        if args.attach is not None or args.watch is not None:
            guard.release()
            guard.check()
        if args.attach is not None:
            from tui.attach import attach_command

            return run_command(attach_command, args)
        if args.watch is not None:
            from tui.watch import watch_command

            return run_command(watch_command, args)
        # Fork now, before torch or any thread: the child runs the cockpit, this process waits (tui.detach). The
        # child's guard holds what this one saw (a signal that came just before the fork) until the app runs.
        return launch(lambda notifier: run_command(lambda a: cockpit(a, notifier, guard), args))
    except KeyboardInterrupt as e:
        return exit_code(e)
    finally:
        guard.release()


if __name__ == "__main__":
    sys.exit(main())
