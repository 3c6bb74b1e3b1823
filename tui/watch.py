"""`babyllm-tui --watch RUN_DIR`: the cockpit as a read-only viewer of a run trained elsewhere.

A live run (its control socket answers) is followed through its snapshot stream (babyllm.socket.remote,
read-only: no request is ever sent); any other run through its files (babyllm.run.follower.Watcher, which
implements TutorControl). This is the app around either. Pause, resume, save, checkpoint and roll back
are not possible from a viewer: the app says so. The chat loads the run's newest save into this process,
on the CPU, at the first message (never touching the trainer); ``/reload`` or ``r`` makes the next
message load the newest save again.

RUN_DIR must exist. An empty directory is waited on (a training run is about to write into it); a
non-empty one without any run file is refused with a one-line error (babyllm.run.runfiles.check_run_dir).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from babyllm.errors import BabyError
from babyllm.run.follower import Watcher
from babyllm.run.runfiles import check_run_dir
from babyllm.snapshot import Publish, Say
from babyllm.socket.remote import RemoteTutor
from tui.app import CockpitApp
from tui.attach import stats_window
from tui.tutor_thread import TutorFactory

TRAINING_OPTIONS = (("config", "--config"), ("overrides", "--set"), ("corpus", "--corpus"), ("run", "--run"),
                    ("run_dir", "--run-dir"), ("steps", "--steps"), ("resume", "--resume"))


def watch_command(args: argparse.Namespace, *, handle_signals: bool = True) -> int:
    """`babyllm-tui --watch RUN_DIR`: BabyError (exit 2 via run_command) for a bad combination or directory."""
    given = [flag for attr, flag in TRAINING_OPTIONS if getattr(args, attr, None) not in (None, False, [])]
    if given:
        raise BabyError(f"--watch cannot be combined with {', '.join(given)}: the viewer only reads a run; "
                        "training options belong to the training command")
    run_dir = check_run_dir(args.watch, "watch", "--watch")
    app, remote = viewer(run_dir, handle_signals=handle_signals)
    code = app.run()
    if remote is not None:
        remote.close()  # (its run() returns; the run trains on)
    app.join_tutor(timeout=5.0)
    if app.failure:
        print(f"babyllm-tui: {app.failure}", file=sys.stderr)
    return code if isinstance(code, int) else app.exit_code


def viewer(run_dir: Path, *, handle_signals: bool = True) -> tuple[CockpitApp, RemoteTutor | None]:
    """The viewer app: on the live run's snapshots when its socket answers (and that RemoteTutor), else on its files."""
    remote = _live(run_dir, lambda snap: app.tutor_thread.publish(snap), lambda text: app.tutor_thread.say(text))
    factory: TutorFactory = ((lambda publish, say: remote) if remote is not None
                             else (lambda publish, say: Watcher(run_dir, publish=publish, say=say)))
    # the same cockpit, as a viewer: no training controls in its keys, help or palette
    app = CockpitApp(factory, chat_factory=lambda followed: followed.chat_session(), window=stats_window(run_dir),
                     viewer=True, subtitle=f"viewer · {'live' if remote is not None else 'files'} · {run_dir}",
                     join_timeout=10.0, handle_signals=handle_signals)
    return app, remote


def _live(run_dir: Path, publish: Publish, say: Say) -> RemoteTutor | None:
    """A read-only RemoteTutor when a live run answers on the run's socket, else None (follow the files)."""
    try:
        return RemoteTutor(run_dir, name="babyllm-tui --watch", read_only=True, publish=publish, say=say)
    except BabyError:
        return None
