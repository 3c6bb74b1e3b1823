"""The training controls, a room of CockpitApp (see tui.room): pause and resume, save, checkpoint, roll back,
the live settings (the learning-rate keys, the setting form, the palette's "set"), and screenshots. Their
keys are in the action table (tui.actions); a viewer answers them with why it cannot."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from babyllm import live
from babyllm.config import parse_value
from babyllm.errors import ConfigError
from babyllm.live import LR
from babyllm.run.runfiles import SCREENSHOTS
from babyllm.snapshot import LiveSettings
from tui.keys import Scope
from tui.room import Room
from tui.screens import ConfirmScreen, SettingScreen

VIEWER_REFUSAL = "viewer: training is controlled by the training process"
SAVE_FLASH_S = 60.0  # "saving…" until the save's own flash replaces it (a save can take a while)
class Controls(Room):
    """The keys that steer training, each asking the Tutor through its control interface."""

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Pause and resume share keys: the one that applies now is shown, and runs."""
        if action in ("pause", "resume"):
            return (action == "resume") == self.paused
        return super().check_action(action, parameters)

    def _control(self, what: str, request: str) -> Any:
        """The Tutor to send a training control to; None, with a notice, while it is still being built,
        and always in a viewer (the Watcher's ``request`` method only records the refusal)."""
        if self.viewer:
            if self.tutor is not None:
                getattr(self.tutor, request)()
            self.notify(f"{VIEWER_REFUSAL}: cannot {what} from here.", severity="warning")
            return None
        if self.tutor is None:
            self.notify(f"Still starting: cannot {what} yet.", severity="warning")
        return self.tutor

    def action_pause(self) -> None:
        self.action_toggle_pause()

    def action_resume(self) -> None:
        self.action_toggle_pause()

    def action_toggle_pause(self) -> None:
        tutor = self._control("pause or resume", "pause")
        if tutor is None or self.quitting:
            return
        if self.paused:
            tutor.resume()
            self.paused = False
            self._ui_event("resume requested")
            self.status.flash("resuming…")
        else:
            tutor.pause()
            self.paused = True
            self._ui_event("pause requested")
            self.status.flash("pausing…")
        self.token_rate.reset()
        self.refresh_bindings()

    def action_save(self) -> None:
        tutor = self._control("save", "request_save")
        if tutor is not None:
            tutor.request_save()
            self._ui_event("save requested")
            self.status.flash("saving…", SAVE_FLASH_S)

    def action_checkpoint(self) -> None:
        tutor = self._control("checkpoint", "request_checkpoint")
        if tutor is not None:
            tutor.request_checkpoint()
            self._ui_event("checkpoint requested")
            self.status.flash("checkpointing…", SAVE_FLASH_S)

    # -- roll back ---------------------------------------------------------------------------

    def action_rollback(self) -> None:
        if self._control("roll back", "rollback") is None:
            return
        if self.snapshot is not None and self.snapshot.state == "alarm":
            self._do_rollback(True)
        else:
            self.push_screen(ConfirmScreen(self._rollback_question(), "Roll back", keys=self.keys, risky=True),
                             self._do_rollback)

    def _rollback_question(self) -> str:
        """Name the step a rollback goes back to and how many steps it throws away."""
        saved = self.snapshot.last_save_step if self.snapshot is not None else None
        if not isinstance(saved, int):
            return "Roll back to the last save? Training since then is lost."
        lost = max(0, self._step() - saved)
        keys, scope = self.keys, Scope.RISKY_QUESTION
        yes, no = keys.first("answer(True)", scope), keys.either("answer(False)", scope)
        return (f"Roll back to step {saved:,} (the last save)? The {lost:,} steps since then are lost. "
                f"{yes} rolls back, {no} keeps training.")

    def _do_rollback(self, yes: bool | None) -> None:
        if yes and self.tutor is not None:
            self.tutor.rollback()
            self._ui_event("roll back requested")
            self.notify("Rolling back to the last save…")

    # -- live settings (babyllm.live) --------------------------------------------------------

    def live_values(self) -> dict[str, object]:
        """The live settings as the run will have them once what this cockpit asked is applied (Asked)."""
        return self.asked.values(self.snapshot.settings if self.snapshot is not None else {})

    def action_scale_lr(self, factor: float) -> None:
        """Ask the run for train.lr times `factor` (a live setting: babyllm.live): the rate asked last, if the
        run has not taken it yet, else the run's."""
        old = self.live_values().get(LR)
        if self._live_settings("change the learning rate") is None:
            return
        if not isinstance(old, int | float):
            self.notify(f"This run does not say its {LR}: use babyllm ctl RUN set {LR}=...", severity="warning")
            return
        self.set_live([(LR, repr(float(old) * factor))])

    def action_setting_form(self, key: str = "") -> None:
        """The small form: a live setting's key and new value (also reached by typing "set lr 5e-4" in the palette)."""
        if self._live_settings("change settings") is not None:
            self.push_screen(SettingScreen(self.live_values(), key, keys=self.keys),
                             lambda answer: self.set_live([answer]) if answer is not None else None)

    def set_live(self, items: Sequence[tuple[str, str]]) -> None:
        """Ask the run for live settings ((key, text after --set KEY=) pairs, applied together): an event,
        or the one-line reason none is applied."""
        tutor = self._live_settings("change settings")
        if tutor is None:
            return
        try:
            resolved = [(live.resolve(key), text) for key, text in items]
            tutor.set_settings(resolved)
        except ConfigError as e:
            self.notify(str(e), severity="error")
            return
        for key, text in resolved:
            self.asked.ask(key, parse_value(text), self.snapshot)
        asked = " ".join(f"{key}={text}" for key, text in resolved)
        self._ui_event(f"set {asked} requested")
        self.status.flash(f"set {asked}…")

    def _live_settings(self, what: str) -> LiveSettings | None:
        """The run's live-settings control, or None after saying why this cockpit cannot `what`."""
        tutor = self.tutor
        if self.viewer:
            self.notify(f"{VIEWER_REFUSAL}: cannot {what} from here.", severity="warning")
        elif tutor is None or self.snapshot is None:
            self.notify(f"Still starting: cannot {what} yet.", severity="warning")
        elif not isinstance(tutor, LiveSettings):
            self.notify(f"This run cannot {what} from here (babyllm ctl RUN set KEY=VALUE).", severity="warning")
        else:
            return tutor
        return None

    # -- screenshots -------------------------------------------------------------------------

    def action_screenshot_svg(self) -> None:
        """An SVG of the screen as it is now, with its colours (to look at after an SSH session)."""
        snap = self.snapshot
        step = snap.step if snap is not None else 0
        # a viewer writes nothing into the run directory (another process owns it)
        folder = Path.cwd() if self.viewer or snap is None or not snap.run_dir else Path(snap.run_dir) / SCREENSHOTS
        name = f"cockpit-{step:08d}-{time.strftime('%Y%m%d-%H%M%S')}.svg"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            saved = self.save_screenshot(name, str(folder))
        except OSError as e:
            self.notify(f"screenshot not saved: {folder}: {e.strerror or e}", severity="error")
            return
        self._ui_event(f"screenshot saved: {saved}")
        self.status.flash(f"screenshot → {saved}", 10)
