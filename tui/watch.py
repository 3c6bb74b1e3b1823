"""`babyllm-tui --watch RUN_DIR`: the cockpit as a read-only viewer of a run trained elsewhere.

The follower (babyllm.follower.Watcher) reads the run's files and implements TutorControl; this is the
app around it. Pause, resume, save, checkpoint and roll back are not possible from a viewer: the app
says so. The chat loads the run's newest save into this process, on the CPU, at the first message
(never touching the trainer); ``/reload`` or ``r`` makes the next message load the newest save again.

RUN_DIR must exist. An empty directory is waited on (a training run is about to write into it); a
non-empty one without any run file is refused with a one-line error (babyllm.runfiles.check_run_dir).
"""

from __future__ import annotations

import argparse
import sys

from babyllm.errors import BabyError
from babyllm.follower import Watcher
from babyllm.runfiles import check_run_dir
from tui.app import CockpitApp

TRAINING_OPTIONS = (("config", "--config"), ("overrides", "--set"), ("corpus", "--corpus"), ("run", "--run"),
                    ("run_dir", "--run-dir"), ("steps", "--steps"), ("resume", "--resume"))


def watch_command(args: argparse.Namespace, *, handle_signals: bool = True) -> int:
    """`babyllm-tui --watch RUN_DIR`: BabyError (exit 2 via run_command) for a bad combination or directory."""
    given = [flag for attr, flag in TRAINING_OPTIONS if getattr(args, attr, None) not in (None, False, [])]
    if given:
        raise BabyError(f"--watch cannot be combined with {', '.join(given)}: the viewer only reads a run; "
                        "training options belong to the training command")
    run_dir = check_run_dir(args.watch, "watch", "--watch")
    window = 100
    try:
        from babyllm.soul import saved_config

        window = saved_config(run_dir).stats.window
    except (BabyError, OSError):
        pass
    # the same cockpit, as a viewer: no training controls in its keys, help or palette
    app = CockpitApp(lambda publish, say: Watcher(run_dir, publish=publish, say=say),
                     chat_factory=lambda watcher: watcher.chat_session(), window=window, viewer=True,
                     subtitle=f"viewer · {run_dir}", join_timeout=10.0, handle_signals=handle_signals)
    code = app.run()
    app.join_tutor(timeout=5.0)
    if app.failure:
        print(f"babyllm-tui: {app.failure}", file=sys.stderr)
    return code if isinstance(code, int) else app.exit_code
