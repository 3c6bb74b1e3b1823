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
from typing import Any

from textual.app import App
from textual.binding import Binding

from babyllm.errors import BabyError
from babyllm.follower import Watcher
from babyllm.runfiles import check_run_dir
from babyllm.snapshot import Snapshot
from tui.app import CockpitApp
from tui.commands import CockpitCommands
from tui.screens import HELP, HelpScreen

VIEWER = "viewer: training is controlled by the training process"

# --- the viewer app -----------------------------------------------------------------------------

# The live cockpit's help, less what a viewer cannot do (pause, save, checkpoint, roll back).
_SHARED = HELP[[k for k, _ in HELP].index("escape") : [k for k, _ in HELP].index("q  ctrl+c")]
WATCH_HELP: tuple[tuple[str, str], ...] = (
    ("", "viewer: another process trains the run; this only reads its"),
    ("", "files (no pause, save, checkpoint or roll back here)"),
    ("i  ctrl+t", "chat with the run's newest save (loaded on the CPU here)"),
    ("r", "chat: load the newest save at the next message (/reload)"),
    *_SHARED,
    ("q  ctrl+c", "quit the viewer (the training goes on)"),
)


class WatchHelpScreen(HelpScreen):
    TITLE = "babyllm-tui viewer keys"
    ROWS = WATCH_HELP
    CHAT = "chat: /temp 0.8  /topk 40  /topp 0.9  /max 200  /reset  /reload  /help"


CONTROL_ACTIONS = ("toggle_pause", "save", "checkpoint", "rollback")


class WatchCommands(CockpitCommands):
    """The palette without the training controls."""

    def commands(self) -> list[tuple[str, str, str]]:
        out = [c for c in super().commands() if c[1] not in CONTROL_ACTIONS and c[1] != "quit"]
        return [("Chat: load the newest save at the next message", "reload", "r"),
                *out, ("Quit the viewer", "quit", "q")]


class WatchApp(CockpitApp):
    """The cockpit as a read-only viewer (tutor_factory builds a Watcher, chat_factory its SavedChat)."""

    TITLE = "babyllm-tui viewer"
    COMMANDS = App.COMMANDS | {WatchCommands}
    BINDINGS = [
        Binding("space,p", "toggle_pause", "pause", key_display="p", show=False),
        Binding("s", "save", "save", show=False),
        Binding("c", "checkpoint", "ckpt", show=False),
        Binding("r", "reload", "reload", show=True),
    ]

    def on_mount(self) -> None:
        super().on_mount()
        self.pane("chat").add_line(  # type: ignore[attr-defined]
            "", "viewer: the first message loads the run's newest save on the CPU here; "
                "/reload (or r) takes a newer one.", "dim")
        self.pane("sample").border_subtitle = "viewer: samples are not in the run's files"

    def _show(self, snap: Snapshot) -> None:
        if not self.quitting:
            self.note = str(getattr(self.tutor, "note", "") or "")
        super()._show(snap)

    def _viewer_only(self, what: str, request: str) -> None:
        if self.tutor is not None:
            getattr(self.tutor, request)()  # a Watcher does nothing with it
        self.notify(f"{VIEWER}: cannot {what} from here.", severity="warning")

    def action_toggle_pause(self) -> None:
        self._viewer_only("pause or resume", "pause")

    def action_save(self) -> None:
        self._viewer_only("save", "request_save")

    def action_checkpoint(self) -> None:
        self._viewer_only("checkpoint", "request_checkpoint")

    def action_rollback(self) -> None:
        self._viewer_only("roll back", "rollback")

    def action_reload(self) -> None:
        if self.chat is None:
            self.notify("Still starting.", severity="warning")
            return
        try:
            reply = self.chat.reload()
        except Exception as e:  # noqa: BLE001
            reply = f"cannot look for saves: {e}"
        self.pane("chat").add_line("", reply, "dim")  # type: ignore[attr-defined]
        self.notify(reply, timeout=3)

    def chat_submit(self, text: str) -> None:
        if self.chat is not None and not text.startswith("/") and not self._chatting and self.chat.needs_load:
            pane: Any = self.pane("chat")
            pane.add_line("", "loading the run's newest save on the CPU…", "dim italic")
        super().chat_submit(text)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(WatchHelpScreen())

    async def action_quit(self) -> None:
        self.begin_shutdown()

    def begin_shutdown(self) -> None:
        """Nothing to save: stop watching and exit at once (the caller joins the watcher thread)."""
        if self.quitting:
            return
        self.quitting = True
        self._send_stop()
        self.exit(self.exit_code)


# --- the command ----------------------------------------------------------------------------------

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
    app = WatchApp(lambda publish, say: Watcher(run_dir, publish=publish, say=say),
                   chat_factory=lambda watcher: watcher.chat_session(), window=window,
                   subtitle=f"viewer · {run_dir}", join_timeout=10.0, handle_signals=handle_signals)
    code = app.run()
    app.join_tutor(timeout=5.0)
    if app.failure:
        print(f"babyllm-tui: {app.failure}", file=sys.stderr)
    return code if isinstance(code, int) else app.exit_code
