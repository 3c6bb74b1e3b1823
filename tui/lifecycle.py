"""The lifecycle, a room of CockpitApp (see tui.room): how the cockpit ends. Quitting asks, then the Tutor
saves and stops; a detach closes the UI with the Tutor training on; a hang-up (SIGHUP, a lost terminal)
detaches or stops as [tui] on_hangup says; SIGTERM saves and stops. An attached cockpit (--attach) asks
whether to detach or stop the run, and a signal only ends the cockpit; a viewer just leaves."""

from __future__ import annotations

import signal
from typing import Any

from tui.detach import Detacher
from tui.room import Room
from tui.screens import AttachedQuitScreen, ConfirmScreen
from tui.tutor_thread import end_process_later, tty

STOPPING = "Already stopping: saving and waiting for the Tutor…"


class Lifecycle(Room):
    """Quit, detach, hang-up, signals and the shutdown that waits for the Tutor's save."""

    join_timeout: float  # how long the Tutor may take to stop (and save) before the cockpit gives up
    terminal_lost: bool  # SIGHUP or a dead tty: restoring the terminal may hang, see exit()
    on_hangup: str  # [tui] on_hangup: "detach" or "stop"
    detacher: Detacher | None  # leaves a hung-up terminal (None: the caller does, e.g. tests)
    detached: str  # why the UI closed with the Tutor still training ("" = it did not)

    async def action_quit(self) -> None:
        self._ask_quit()

    def action_help_quit(self) -> None:  # ctrl+c: the same question as q
        self._ask_quit()

    def _ask_quit(self) -> None:
        if self.viewer:  # nothing to save: the training goes on without us
            self.begin_shutdown()
            return
        if self.quitting:
            self.notify(STOPPING)
            return
        if self.attached:
            if not self._tutor_thread.alive:  # the run has ended (or the connection is lost): nothing to ask
                self.detach("q")
                return
            self.push_screen(AttachedQuitScreen(keys=self.keys), self._attached_quit_answer)
            return
        self.push_screen(ConfirmScreen("Quit? The Tutor saves first, then stops.", "Quit", keys=self.keys),
                         self._quit_answer)

    def _attached_quit_answer(self, choice: str | None) -> None:
        if choice == "detach":
            self.detach("q: detach")
        elif choice == "stop":
            self.begin_shutdown()

    def _quit_answer(self, yes: bool | None) -> None:
        if yes:
            self.begin_shutdown()

    def action_quit_now(self) -> None:
        self.begin_shutdown()

    def action_detach(self) -> None:
        """d: the UI closes, the Tutor trains on (the caller takes the process off the terminal)."""
        self.detach("d key")

    def detach(self, why: str) -> None:
        if self.viewer:
            quits = self.keys.first("quit")
            self.notify(f"viewer: {quits} leaves the viewer; the training goes on without it.", severity="warning")
            return
        if self.quitting or self.detached:
            if self.quitting:
                self.notify(STOPPING)
            return
        self.detached = why
        self.chat_pane.stop_streaming()
        self._ui_event(f"detach ({why}): training carries on")
        self.exit(self.exit_code)

    # -- stopping ----------------------------------------------------------------------------

    def begin_shutdown(self) -> None:
        """Ask the Tutor to stop (it saves), then exit when its thread ends (or after join_timeout).
        A viewer has nothing to save: it stops watching and exits at once (the caller joins the thread)."""
        if self.quitting:
            return
        self.quitting = True
        self.chat_pane.stop_streaming()
        if self.viewer:
            self._tutor_thread.stop()
            self.exit(self.exit_code)
            return
        self.status.note = "saving and stopping…"
        self.status.refresh_line()
        self._ui_event("quit: stop requested (the Tutor saves)")
        self._tutor_thread.stop()
        if not self._tutor_thread.alive:
            self.exit(self.exit_code)
            return
        self.set_timer(self.join_timeout, self._give_up)

    def exit(self, *args: Any, **kwargs: Any) -> None:
        """Exit; with the terminal gone, make sure the process ends even if restoring the terminal hangs.

        By the time the app exits the Tutor has stopped and saved (or the join timed out), so ending
        the process hard a few seconds later loses nothing.
        """
        if self.terminal_lost and not self.detached:
            end_process_later(args[0] if args and isinstance(args[0], int) else self.exit_code)
        super().exit(*args, **kwargs)

    def _give_up(self) -> None:
        self.failure = f"the Tutor did not stop within {self.join_timeout:.0f} s"
        self.exit_code = 1
        self.exit(self.exit_code)

    def join_tutor(self, timeout: float | None = None) -> bool:
        """Stop the Tutor and wait for its thread; True when it ended. Safe to call after the app exits."""
        return self._tutor_thread.join(self.join_timeout if timeout is None else timeout)

    def on_unmount(self) -> None:
        """However the app ends (but by a detach), the Tutor is told to stop (it saves); the caller joins it."""
        if not self.detached and not self.attached:  # (an attached cockpit stops the run only when asked to)
            self._tutor_thread.stop()

    # -- signals and a lost terminal ---------------------------------------------------------

    def _on_signal(self, sig: int) -> None:
        if sig == signal.SIGHUP:
            self.hang_up("SIGHUP")
            return
        if self.attached:  # the run is not this process's to stop: a signal only ends the cockpit
            self.detach(signal.Signals(sig).name)
            return
        self.status.note = f"{signal.Signals(sig).name}: saving and stopping…"
        self.begin_shutdown()

    def _check_terminal(self) -> None:
        """A lost terminal (closed SSH session without SIGHUP) counts as a hang-up."""
        if not self.quitting and not self.detached and not tty(0):
            self.hang_up("terminal lost")

    def hang_up(self, why: str) -> None:
        """The terminal is gone: detach (nothing more is written to it) or save and stop, as on_hangup says."""
        if (self.on_hangup == "detach" or self.attached) and not self.viewer and not self.quitting:
            if self.detacher is not None and not self.detached:
                self.detacher.hung_up(self._tutor_thread)  # first, before the UI tears down
            self.detach(why)
            return
        self.status.note = f"{why}: saving and stopping…"
        self.terminal_lost = True
        self.begin_shutdown()
