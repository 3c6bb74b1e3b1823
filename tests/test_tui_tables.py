"""The cockpit's keys and panes come from two tables (tui.actions.ACTIONS, tui.panes.PANES): a pane and
an action added there alone show up everywhere, and the viewer's subset leaves the training controls out."""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Button, Static

from babyllm.stats import HIGHER, REGISTRY, SCI, StatSpec
from tui.actions import ACTIONS, Action, Scope, Where, bindings, help_rows, markdown_keys, palette_entries, targets
from tui.app import CockpitApp
from tui.commands import CockpitCommands
from tui.fake import FakeTutor
from tui.panes import PANES, PaneSlot, grid_css, grid_rows_needed
from tui.screens import ConfirmScreen, HelpScreen, RunPicker
from tui.widgets.base import GuardedStatic, Pane

sys.path.insert(0, str(Path(__file__).parent))
from runhelpers import pilot_wait, plain  # noqa: E402

SMALL = (80, 24)
BIG = (160, 50)
CONTROLS = {"pause", "resume", "toggle_pause", "save", "checkpoint", "rollback"}


class GaugePane(Pane):
    """A pane that exists only in this test: it shows the step it was told."""

    NAME = "gauge"
    TITLE = "test gauge"
    SHORT = "gauge"

    def compose(self) -> ComposeResult:
        yield GuardedStatic(Text("no step yet"), id="gauge-text")

    def show_snapshot(self) -> None:
        if self.snapshot is not None:
            self.query_one("#gauge-text", Static).update(f"step {self.snapshot.step}")


GAUGE_ACTION = Action("g", "notify('gauge pressed')", "gauge", footer=True, help="test: say gauge pressed",
                      palette="Test: press the gauge")


def make_app(**kwargs) -> CockpitApp:
    return CockpitApp(lambda publish, say: FakeTutor(publish=publish), handle_signals=False,
                      panes=(*PANES, PaneSlot(GaugePane, "9")), actions=(*ACTIONS, GAUGE_ACTION), **kwargs)


def shown_keys(app: CockpitApp) -> set[str]:
    return {b.key for _, b, _, _ in app.screen.active_bindings.values() if b.show}


async def test_a_pane_and_an_action_added_to_the_tables_show_everywhere():
    app = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await pilot_wait(pilot, lambda: app.snapshot is not None)
        gauge = app.pane("gauge")
        assert str(gauge.border_title).startswith("9 test gauge")
        await pilot.press("9")  # its number key shows it (small terminal: one pane at a time)
        assert app.active_pane == "gauge" and gauge.region.height > 5
        await pilot_wait(pilot, lambda: "step 300" in str(app.query_one("#gauge-text", Static).render()))
        assert "g" in shown_keys(app)  # the footer
        await pilot.press("g")
        await pilot_wait(pilot, lambda: any(n.message == "gauge pressed" for n in app._notifications))

        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        assert ("g", "test: say gauge pressed") in app.screen.rows
        keys, what = next(r for r in app.screen.rows if "…" in r[0])
        assert keys == "1 … 9" and what.split(":")[0].endswith("system gauge")
        await pilot.press("escape")

        names = [name for name, _, _ in CockpitCommands(app.screen).commands()]
        assert "Show pane: test gauge" in names and "Test: press the gauge" in names
        await pilot.press("1", "ctrl+p", *"pane: test gau")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot_wait(pilot, lambda: app.active_pane == "gauge")


class GaugeTutor(FakeTutor):
    """The fake Tutor publishing one more stat, which only the test's registry describes."""

    def snapshot(self):
        snap = super().snapshot()
        return dataclasses.replace(snap, stats={**snap.stats, "gauge_ratio": 0.25 + (snap.step % 7) / 100})


async def test_a_stat_added_to_the_registry_shows_in_the_stats_pane_and_the_palette():
    registry = REGISTRY.extended(StatSpec("gauge_ratio", "learning", HIGHER, "g-ratio", fmt=SCI))
    app = CockpitApp(lambda publish, say: GaugeTutor(publish=publish), handle_signals=False, registry=registry)
    async with app.run_test(size=BIG) as pilot:
        await pilot_wait(pilot, lambda: app.snapshot is not None)
        grid = app.query_one("#stats-grid", Static)
        await pilot_wait(pilot, lambda: "g-ratio" in plain(grid, 150))
        assert "e-01" in plain(grid, 150).split("g-ratio")[1].split()[0]  # its format: SCI
        assert app.calligraphist.registry.section("gauge_ratio") == "learning"
        names = [name for name, _, _ in CockpitCommands(app.screen).commands()]
        assert "Thresholds of gauge_ratio" in names
        app.pane("stats").set_stat("gauge_ratio")
        bands = app.query_one("#stats-bands", Static)
        deadline = time.monotonic() + 30  # (a loaded machine coalesces snapshots: count time, not publishes)
        while time.monotonic() < deadline:  # more steps (and varying values), until the Calligraphist bands it
            app.tutor.step += 1
            app.tutor.publish(app.tutor.snapshot())
            await pilot.pause(0.05)
            if "≥" in plain(bands, 150):
                break
        assert "g-ratio" in plain(bands, 150) and "≥" in plain(bands, 150)  # higher is better: ≥ thresholds
    default_app = CockpitApp(lambda publish, say: GaugeTutor(publish=publish), handle_signals=False)
    assert default_app.calligraphist.registry.section("gauge_ratio") == "other"  # the default registry is unchanged


async def test_a_new_pane_gets_a_row_of_the_wide_grid():
    app = make_app()
    assert grid_rows_needed(PANES) == 4 and grid_rows_needed(app.pane_slots) == 5
    async with app.run_test(size=BIG) as pilot:
        await pilot_wait(pilot, lambda: app.snapshot is not None)
        await pilot.pause(0.1)
        assert not app.compact and all(p.region.height > 5 for p in app.panes)


def test_the_grid_css_keeps_the_eight_pane_layout():
    css = grid_css(PANES)
    assert "grid-size: 3 4;" in css and "grid-rows: 10fr 9fr 6 6;" in css
    assert "#stats { row-span: 2;" in css and "#chat { row-span: 2;" in css and "#loss" not in css
    assert "#timing { row-span: 2;" in css and "#sample { row-span: 2;" in css and "#system" not in css


def test_each_key_does_one_thing_in_each_cockpit():
    for viewer in (False, True):
        shown: dict[str, set[str]] = {}
        for b in bindings(ACTIONS, PANES, viewer):
            shown.setdefault(b.key, set()).add(b.action)
        for key, acts in shown.items():  # pause and resume share space and p: check_action picks one
            assert len(acts) == 1 or acts == {"pause", "resume"}, (viewer, key, acts)


def test_a_letter_in_a_dialog_means_what_it_means_in_the_cockpit_or_nothing_there():
    """s saves in the cockpit: in the attached cockpit's quit dialog it stopped the run. A dialog's letter (or
    digit, or sign) the cockpit also binds must do what its cockpit row does (its footer word: d detaches in
    both) or only close the dialog (q and ? close the help); named keys (enter, escape, ...) are the dialog's."""
    closes = {"dismiss", "cancel", "answer('')", "answer(False)"}
    cockpit = {k: a for a in ACTIONS if Scope.COCKPIT in a.scopes for k in a.key_list()}
    cockpit.update({p.key: a for p in PANES for a in [Action(p.key, f"show_pane('{p.pane.NAME}')", "pane")]})
    checked = 0
    for row in (a for a in ACTIONS if Scope.COCKPIT not in a.scopes and a.action):
        for key in row.key_list():
            same = cockpit.get(key)
            if len(key) == 1 and same is not None and row.action not in closes:
                checked += 1
                assert row.label.split()[0] == same.label.split()[0], (key, row.scopes, row.label, same.label)
    assert checked >= 2  # (d: detach; q: quit from the error screen)


def test_the_viewer_offers_no_training_controls_but_answers_their_keys():
    rows = [a for a in ACTIONS if a.action in CONTROLS]
    assert rows and all(a.where is Where.LIVE for a in rows)
    help_text = " ".join(what for _, what in help_rows(ACTIONS, PANES, viewer=True))
    assert "save now" not in help_text and "roll back to the last save" not in help_text
    assert not CONTROLS & {action for _, action, _ in palette_entries(ACTIONS, PANES, viewer=True)}
    viewer_bindings = bindings(ACTIONS, PANES, viewer=True)
    hidden = {b.action for b in viewer_bindings if b.action in CONTROLS}
    assert hidden == {"pause", "resume", "save", "checkpoint"}  # r is the viewer's reload
    assert not any(b.show for b in viewer_bindings if b.action in CONTROLS)
    assert {"reload"} <= {b.action for b in viewer_bindings} and "reload" not in {
        b.action for b in bindings(ACTIONS, PANES, viewer=False)}


def test_the_readme_keys_table_comes_from_the_same_rows():
    table = markdown_keys(ACTIONS, PANES)
    lines = table.splitlines()
    assert lines[:2] == ["| key | action |", "| --- | --- |"]
    assert "| `space` / `p` | pause / resume training (also resumes after a NaN alarm) |" in lines
    assert any(line.startswith("| `1 … 8` | stats loss chat") for line in lines)
    assert len(lines) == 2 + len(help_rows(ACTIONS, PANES, viewer=False))
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert table in readme, "README's keys table is stale: paste markdown_keys() over it"


async def test_the_palette_resumes_a_paused_run():
    """The palette runs the toggle: "pause" itself is hidden (check_action) while paused."""
    entry = next(e for e in palette_entries(ACTIONS, PANES, viewer=False) if e[0] == "Pause / resume training")
    assert entry == ("Pause / resume training", "toggle_pause", "space / p")
    app = CockpitApp(lambda publish, say: FakeTutor(publish=publish), handle_signals=False)
    async with app.run_test(size=SMALL) as pilot:
        await pilot_wait(pilot, lambda: app.snapshot is not None)
        await pilot.press("space")
        assert app.paused
        await pilot.press("ctrl+p", *"Pause / resume")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await pilot_wait(pilot, lambda: app.tutor.calls == ["pause", "resume"])



# --- every key in the table: the dialogs', the chat input's, the panes' ------------------------------


def test_every_dialog_and_the_chat_input_have_their_keys_in_the_table_and_the_help():
    rows = help_rows(ACTIONS, PANES, viewer=False)
    for scope in Scope:
        assert any(scope in a.scopes and a.help for a in ACTIONS), scope
    assert ("ctrl+y", "the roll back question: roll back (no letter or enter does, so typing meant for the chat "
            "can't)") in rows
    assert ("n  escape", "the quit or roll back question: no, carry on") in rows
    assert ("space", "compare runs: tick or untick a run") in rows and ("escape", "compare runs: cancel") in rows
    assert ("enter", "the chat input: send the message") in rows
    assert ("escape  q  ?  f1", "this help: close it") in rows
    assert ("r", "roll back to the last save (asks: ctrl+y confirms; at once after a NaN alarm)") in rows
    assert ("tab  shift+tab", "move focus between panes (not out of the chat input: esc)") in rows


def test_a_panes_actions_are_the_panes_own_not_the_apps():
    rows = targets(ACTIONS)
    assert {"toggle_log", "toggle_smoothing", "smoothing", "pick_runs", "toggle_x_axis", "toggle_window_plot",
            "cycle_stat", "focus_stat"} <= set(rows)
    panes = {slot.pane.NAME: slot.pane for slot in PANES}
    for name, row in rows.items():
        assert callable(getattr(panes[row.target], f"action_{name}", None)), (name, row.target)
        assert not hasattr(CockpitApp, f"action_{name}"), name


async def test_a_panes_key_runs_on_the_pane_which_flashes_the_status_line_by_message():
    app = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await pilot_wait(pilot, lambda: app.snapshot is not None)
        await pilot.press("l")
        assert app.pane("loss").log_scale and app.active_pane == "stats"  # (l does not show the loss pane)
        await pilot_wait(pilot, lambda: "loss plot: log scale on" in str(app.status.content))
        await pilot.press("w")
        await pilot_wait(pilot, lambda: "windows: sizes over steps" in str(app.status.content))
        await pilot.press("o")  # compare runs: shows the loss pane first (its row's show_target)
        await pilot_wait(pilot, lambda: isinstance(app.screen, RunPicker))
        assert app.active_pane == "loss"
        await pilot.press("escape")
        await pilot_wait(pilot, lambda: not isinstance(app.screen, RunPicker))


async def test_a_key_changed_in_the_table_changes_its_binding_and_every_text_naming_it():
    def moved(a: Action) -> Action:
        return dataclasses.replace(a, keys="ctrl+k") if a.scopes == (Scope.RISKY_QUESTION,) else a

    actions = tuple(moved(a) for a in ACTIONS)
    made: dict = {}
    app = CockpitApp(lambda publish, say: made.setdefault("tutor", FakeTutor(publish=publish)),
                     handle_signals=False, actions=actions)
    async with app.run_test(size=SMALL) as pilot:
        await pilot_wait(pilot, lambda: app.snapshot is not None)
        await pilot.press("r")
        screen = app.screen
        assert isinstance(screen, ConfirmScreen)
        assert screen.question.endswith("ctrl+k rolls back, n or esc keeps training.")
        assert str(screen.query_one("#yes", Button).label) == "Roll back (ctrl+k)"
        await pilot.press("ctrl+y")
        assert "rollback" not in made["tutor"].calls and isinstance(app.screen, ConfirmScreen)
        await pilot.press("ctrl+k")
        await pilot_wait(pilot, lambda: made["tutor"].calls[-1:] == ["rollback"])
    assert ("r", "roll back to the last save (asks: ctrl+k confirms; at once after a NaN alarm)") in help_rows(
        actions, PANES, viewer=False)
