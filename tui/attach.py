"""`babyllm-tui --attach RUN_DIR`: the full cockpit on a run another process trains, over its control socket.

Every key works as in the training cockpit (pause, save, checkpoint, roll back, chat with the live
model): babyllm.socket.remote.RemoteTutor carries them to the run, whose events name this cockpit. q asks
whether to detach (the run trains on) or stop the run (it saves); d detaches at once; a lost terminal
or a signal only ends this cockpit. Several cockpits may attach to one run at once.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

from babyllm.errors import BabyError
from babyllm.run.runfiles import check_run_dir, latest_step
from babyllm.snapshot import Publish, Say
from babyllm.socket.client import NoLiveRun
from babyllm.socket.remote import RemoteTutor
from tui.app import CockpitApp
from tui.detach import HANGUP_GRACE_S, Detacher, silence_terminal
from tui.tutor_thread import TutorThread, end_process_later

TRAINING_OPTIONS = (("config", "--config"), ("overrides", "--set"), ("corpus", "--corpus"), ("run", "--run"),
                    ("run_dir", "--run-dir"), ("steps", "--steps"), ("minutes", "--minutes"), ("resume", "--resume"),
                    ("watch", "--watch"))
CLIENT_NAME = "babyllm-tui --attach"  # the run's events say "pause requested by babyllm-tui --attach (pid N)"
WAIT_S = 5.0  # for the stream's thread once the cockpit has closed


def no_live_run(run_dir: Path) -> str:
    """Why nothing answers and what to do instead, naming only what works on this directory: no directory or
    no run in it is the one-line error --watch gives; --watch follows any run's files (an empty folder: a run
    about to start), and --resume needs a save."""
    run_dir = check_run_dir(run_dir, "watch", "--attach")
    ways = [f"follow its files with --watch {run_dir}"]
    if latest_step(run_dir) is not None:
        ways.append(f"resume it with --run-dir {run_dir} --resume")
    return f"no live run answers at {run_dir}; {', or '.join(ways)}"


def connect(run_dir: Path, publish: Publish, say: Say) -> RemoteTutor:
    """A RemoteTutor on the run; BabyError (exit 2) with what to do instead when nothing answers."""
    try:
        return RemoteTutor(run_dir, name=CLIENT_NAME, publish=publish, say=say)
    except NoLiveRun:
        raise BabyError(no_live_run(run_dir)) from None


def stats_window(run_dir: Path) -> int:
    """The run's [stats] window (its saved config), else the default."""
    from babyllm.config import StatsConfig

    with contextlib.suppress(BabyError, OSError):
        from babyllm.school.soul import saved_config

        return saved_config(run_dir).stats.window
    return StatsConfig.window


class LeaveOnHangup(Detacher):
    """An attached cockpit's hang-up: nothing more to the dead terminal, and the process ends even if
    restoring it hangs (the run is another process's: ending this one loses nothing)."""

    def hung_up(self, thread: TutorThread) -> None:
        silence_terminal()
        end_process_later(0, HANGUP_GRACE_S)


def attach_command(args: argparse.Namespace, *, handle_signals: bool = True) -> int:
    """`babyllm-tui --attach RUN_DIR`; BabyError (exit 2 via run_command) when nothing live answers."""
    given = [flag for attr, flag in TRAINING_OPTIONS if getattr(args, attr, None) not in (None, False, [])]
    if given:
        raise BabyError(f"--attach cannot be combined with {', '.join(given)}: it drives a run another "
                        "process trains")
    run_dir = Path(args.attach)
    # (the callbacks reach the app once it exists: the remote calls them only from run(), in its thread)
    remote = connect(run_dir, lambda snap: app.tutor_thread.publish(snap), lambda text: app.tutor_thread.say(text))
    app = CockpitApp(tutor=remote, chat_factory=lambda r: r.chat_session(), window=stats_window(run_dir),
                     subtitle=f"attached · {run_dir}", attached=True, handle_signals=handle_signals,
                     detacher=LeaveOnHangup(run_dir))
    code = app.run()
    remote.close()  # (a detach: the run trains on)
    app.tutor_thread.wait(WAIT_S)
    print(f"babyllm-tui: {ending(remote, run_dir, app.failure)}", file=sys.stderr)
    return code if isinstance(code, int) else app.exit_code


def ending(remote: RemoteTutor, run_dir: Path, failure: str | None) -> str:
    """The line an attached cockpit leaves on the terminal."""
    snap = remote.snapshot()
    if not remote.note:
        return f"detached from {run_dir}: it trains on (attach again with --attach {run_dir})"
    if snap.state == "error":
        return snap.error or failure or remote.note
    saved = f"; last save {snap.last_save_path}" if snap.last_save_path else ""
    return f"{remote.note} ({snap.state} at step {snap.step}){saved}"
