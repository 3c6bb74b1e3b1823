"""Issue 13 (trust), the cockpit's side: a pane's fault never ends the app, ctrl+c quits, chat input
is data, destructive keys are deliberate, and the numbers read well."""

from __future__ import annotations

import time

import pytest
from runhelpers import pilot_wait
from test_tui import BIG, SMALL, make_app, started
from textual.widgets import Input

from babyllm.snapshot import Event
from tui.app import CockpitApp
from tui.fake import FakeTutor
from tui.screens import ConfirmScreen
from tui.widgets import plotting, timing
from tui.widgets.chat import MAX_INPUT, clean_text
from tui.widgets.events import EventLog
from tui.widgets.plotting import Plot
from tui.widgets.status import StatusBar, TokenRate


def screen_text(app) -> str:
    """Everything on screen, as the SVG screenshot's text (spaces unescaped)."""
    return app.export_screenshot().replace("&#160;", " ")


def footer_labels(app) -> list[str]:
    from textual.widgets import Footer

    return [str(getattr(k, "description", "")) for k in app.query_one(Footer).children]


def status_text(app) -> str:
    return str(app.query_one(StatusBar).content)


async def test_the_issue_repro_log_scale_then_a_theme_switch_keeps_the_app_alive():
    app, _ = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        await pilot.press("2", "l")
        await pilot.pause(0.5)
        for theme in ("textual-light", "nord", "gruvbox", "textual-dark"):
            app.theme = theme
            await pilot.pause(0.3)
        assert app.is_running and app._exception is None
        assert app.pane("loss").query_one(Plot).size.height > 5


async def test_a_log_scale_before_the_first_training_step_draws_without_a_failure():
    """Found by the monkey test ("l" typed in the first second): a log axis with nothing on it (no step
    yet; then the step-0 validation alone, on the right) made plotext raise while drawing."""
    made: dict = {}
    app = CockpitApp(lambda publish, say: made.setdefault("tutor", FakeTutor(steps=0, publish=publish)),
                     handle_signals=False)
    async with app.run_test(size=BIG) as pilot:
        await pilot_wait(pilot, lambda: app.snapshot is not None)
        pane, plot = app.pane("loss"), app.pane("loss").query_one(Plot)
        await pilot.press("l")
        await pilot_wait(pilot, lambda: "log" in str(pane.border_subtitle))
        made["tutor"].history.add(0, {"val_loss": 5.1, "val_bpb": 2.2})  # the validation at step 0
        version = plot.version
        pane.want_redraw()
        await pilot_wait(pilot, lambda: plot.version > version)
        await pilot.pause(0.2)
        assert {d.side for d in pane.drawn} == {"right"} and "train" not in {d.curve for d in pane.drawn}
        assert not app.debug_lines and not pane.failures


async def test_a_failing_draw_shows_a_note_and_logs_the_traceback_once(monkeypatch):
    """A variant the issue did not name: the timing pane's bars raise while being drawn."""
    def broken(fraction: float, width: int) -> str:
        raise ZeroDivisionError("boom in a bar")

    monkeypatch.setattr(timing, "bar", broken)
    app, _ = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        await pilot.press("5")
        await pilot.pause(0.5)
        await pilot.press("1", "5")
        await pilot.pause(0.5)
        assert app.is_running and app._exception is None
        logged = [line for line in app.debug_lines if "ZeroDivisionError" in line]
        assert len(logged) == 1 and "Traceback" in logged[0] and "pane timing" in logged[0]
        assert "drawing failed: ZeroDivisionError" in screen_text(app)


async def test_a_failing_update_shows_a_note_in_the_title_and_training_goes_on():
    """Another variant: the stats pane's update (the Calligraphist's grid) raises."""
    app, made = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)

        def broken(stats):  # type: ignore[no-untyped-def]
            raise KeyError("no such stat")

        app.calligraphist.grid = broken  # type: ignore[method-assign]
        app.pane("stats").show_snapshot()
        await pilot.pause(0.2)
        assert "update failed: KeyError" in str(app.pane("stats").border_title)
        assert any("KeyError" in line for line in app.debug_lines)
        await pilot.press("s")  # keys still reach the Tutor
        assert made["tutor"].calls[-1] == "request_save"


@pytest.mark.parametrize("size", [(60, 20), (40, 12)])
async def test_small_terminals_show_a_note_instead_of_a_broken_plot(size):
    app, _ = make_app()
    async with app.run_test(size=size) as pilot:
        await started(pilot, app)
        for key in ("2", "4"):
            await pilot.press(key)
            await pilot.pause(0.4)
            plot = app.query_one(f"#{'loss' if key == '2' else 'windows'}-plot", Plot)
            small = plot.size.width < plotting.MIN_WIDTH or plot.size.height < plotting.MIN_HEIGHT
            assert small == (size == (40, 12) or key == "4")
            if small and key == "2":  # (the windows plot is squeezed out entirely at 40x12: its bars fill the pane)
                assert "enlarge the terminal" in screen_text(app)
        assert app._exception is None


async def test_ctrl_c_asks_to_quit_from_the_main_screen_and_from_the_chat():
    app, _ = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        await pilot.press("ctrl+c")
        await pilot.pause(0.1)
        assert isinstance(app.screen, ConfirmScreen) and "Quit" in app.screen.question
        await pilot.press("n")
        await pilot.press("i")
        await pilot.press("ctrl+c")  # no selection in the input: it quits, not copies nothing
        await pilot.pause(0.1)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await pilot_wait(pilot, lambda: not app.is_running)


def test_clean_text_turns_control_characters_into_spaces_and_caps_the_length():
    assert clean_text("\x1b]0;title\x07 tab\there\r\n") == " ]0;title  tab here  "
    assert clean_text("\u009b31m") == " 31m"
    assert len(clean_text("x" * 50_000)) == MAX_INPUT


async def test_pasted_escapes_and_tabs_never_move_focus_out_of_the_chat():
    app, made = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        await pilot.press("i")
        chat = app.query_one("#chat-input", Input)
        assert app.focused is chat
        from textual import events

        chat.post_message(events.Paste("\x1b]0;title\x07 tab\there"))
        await pilot.pause(0.1)
        await pilot.press("tab", "shift+tab")  # typed tabs too
        assert app.focused is chat
        assert "\x1b" not in chat.value and "\t" not in chat.value
        await pilot.press(*"r y s c q p")  # what would be hotkeys outside the input
        assert made["tutor"].calls == [] and not isinstance(app.screen, ConfirmScreen)
        await pilot.press("escape")
        assert app.focused is None


async def test_a_huge_paste_is_cut_and_is_quick():
    app, _ = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        await pilot.press("i")
        chat = app.query_one("#chat-input", Input)
        from textual import events

        t0 = time.monotonic()
        chat.post_message(events.Paste(("word " * 4000 + "\n") * 5))  # 100 KB
        await pilot.pause(0.1)
        assert len(chat.value) == MAX_INPUT and time.monotonic() - t0 < 5


async def test_typed_lines_while_a_reply_streams_add_one_notice_not_hundreds():
    """An unbracketed paste arrives as keys: every newline is an enter."""
    app, made = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        app.chat_pane.answering = True  # a reply is streaming
        for _ in range(30):
            app.chat_pane.submit("hello")
        log = app.pane("chat").query_one("#chat-log")
        assert sum("Still answering" in str(c.content) for c in log.children) == 1


async def test_rollback_names_the_step_and_a_letter_never_confirms_it():
    app, made = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        await pilot.press("r")
        screen = app.screen
        assert isinstance(screen, ConfirmScreen)
        assert "step 250" in screen.question and "50 steps" in screen.question
        await pilot.press("y", "Y", "r")
        assert "rollback" not in made["tutor"].calls
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("enter")  # the focused button is No
        assert "rollback" not in made["tutor"].calls and not isinstance(app.screen, ConfirmScreen)
        await pilot.press("r")
        await pilot.click("#yes")
        assert made["tutor"].calls[-1] == "rollback"


async def test_the_footer_says_resume_while_paused():
    app, made = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        await pilot.pause(0.2)
        assert "pause" in footer_labels(app) and "resume" not in footer_labels(app)
        await pilot.press("p")
        app._show(made["tutor"].snapshot())  # the Tutor publishes its paused state
        await pilot.pause(0.2)
        assert "resume" in footer_labels(app) and "pause" not in footer_labels(app)
        assert "PAUSED" in status_text(app) and "tok/s" not in status_text(app)  # no stale rate
        await pilot.press("p")
        assert made["tutor"].calls == ["pause", "resume"]


def test_token_rate_is_a_wall_clock_mean_and_forgets_a_rollback():
    now = [0.0]
    rate = TokenRate(clock=lambda: now[0])
    assert rate.rate() is None
    for i in range(30):  # 1000 tokens a step, steps of 0.1 s and 0.9 s alternating
        now[0] += 0.1 if i % 2 else 0.9
        rate.observe(1000 * i)
    assert rate.rate() == pytest.approx(2000, rel=0.1)
    rate.observe(0)  # rolled back
    assert rate.rate() is None


async def test_a_new_save_shows_its_folder_in_the_status_line_not_a_toast():
    app, made = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        tutor = made["tutor"]
        await pilot.press("s")
        assert "saving…" in status_text(app)
        tutor.events = (*tutor.events, Event(300, "save", "saved step 300 to runs/demo/save-00000300", 0.0))
        tutor.step = 301
        app._show(tutor.snapshot())
        await pilot.pause(0.1)
        assert "saved → save-00000300" in status_text(app)
        assert not app._notifications


# What the Tutor reports when a save fails: a save_error event and the snapshot's last_save_error (school/saves.py)
FAILED_SAVE = "step 300: {kind} failed: [Errno 28] No space left on device; earlier saves are intact"


@pytest.mark.parametrize(("key", "kind", "asked"), [("c", "checkpoint", "checkpointing…"), ("s", "save", "saving…")])
async def test_a_failed_checkpoint_or_save_is_flashed_in_the_status_line(key, kind, asked):
    """From the event's kind, not from its text (a failed checkpoint went unsaid), each time it fails."""
    app, made = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        tutor = made["tutor"]
        await pilot.press(key)
        assert asked in status_text(app)
        tutor.last_save_error = FAILED_SAVE.format(kind=kind)
        tutor.events = (*tutor.events, Event(300, "save_error", tutor.last_save_error, 0.0))
        tutor.step = 301
        app._show(tutor.snapshot())
        await pilot.pause(0.1)
        assert "save failed: see the event log (7)" in status_text(app)
        tutor.step = 302  # the next snapshot, the error still standing: no new flash over what came since
        app.pane("loss").flash("loss plot: a note")
        await pilot.pause(0.1)
        app._show(tutor.snapshot())
        await pilot.pause(0.1)
        assert "loss plot: a note" in status_text(app)
        tutor.events = (*tutor.events, Event(302, "save_error", tutor.last_save_error, 0.0))  # the same again
        tutor.step = 303
        app._show(tutor.snapshot())
        await pilot.pause(0.1)
        assert "save failed: see the event log (7)" in status_text(app)


async def test_a_save_names_the_folder_of_the_snapshots_last_save_path():
    app, made = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        tutor = made["tutor"]
        await pilot.press("c")
        tutor.last_save_error = FAILED_SAVE.format(kind="checkpoint")  # (an earlier failure: cleared by a save)
        tutor.step = 301
        app._show(tutor.snapshot())
        tutor.last_saved_step, tutor.last_save_path, tutor.last_save_error = 302, "runs/demo/checkpoint-00000302", None
        tutor.events = (*tutor.events, Event(302, "checkpoint", "(the text is not read)", 0.0))
        tutor.step = 302
        app._show(tutor.snapshot())
        await pilot.pause(0.1)
        assert "saved → checkpoint-00000302" in status_text(app)
        await pilot.press("c")  # again at the same step: the same folder, written again, flashed again
        assert "checkpointing…" in status_text(app)
        tutor.events = (*tutor.events, Event(302, "checkpoint", "(the text is not read)", 0.0))
        app._show(tutor.snapshot())
        await pilot.pause(0.1)
        assert "saved → checkpoint-00000302" in status_text(app)


async def test_the_event_log_wraps_again_when_the_terminal_is_resized():
    app, _ = make_app()
    async with app.run_test(size=BIG) as pilot:
        await started(pilot, app)
        log = app.query_one(EventLog)
        app.pane("events").add(Event(301, "info", "word " * 30))
        await pilot.pause(0.2)
        before = len(log.lines)
        await pilot.resize_terminal(200, 50)
        await pilot.pause(0.3)
        wide = len(log.lines)
        await pilot.resize_terminal(*BIG)
        await pilot.pause(0.3)
        assert wide < before and len(log.lines) == before


async def test_a_dialog_answered_twice_at_once_is_dismissed_once():
    """Found by the monkey test: a key and a click together popped the screen stack twice."""
    app, made = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        await pilot.press("r")
        screen = app.screen
        assert isinstance(screen, ConfirmScreen)
        screen.action_answer(False)
        screen.action_answer(False)
        screen.on_button_pressed(type("Pressed", (), {"button": screen.query_one("#yes")})())  # type: ignore[arg-type]
        await pilot.pause(0.1)
        assert app._exception is None and "rollback" not in made["tutor"].calls


class LimitChat:
    """An Infer2 stand-in whose prompt gets trimmed and whose reply stops at the token limit."""

    def __init__(self) -> None:
        self.notices: list[str] = []
        self.hit_limit = False

    def stream(self, prompt: str):
        self.hit_limit = False
        self.notices.append("prompt longer than the context: kept the last 16 tokens")
        for piece in ("the ", "end"):
            time.sleep(0.01)
            yield piece
        self.hit_limit = True

    def command(self, line: str) -> str:
        return "ok"


async def test_chat_says_a_trim_before_the_reply_marks_the_limit_and_writes_chat_log(tmp_path):
    from tui.app import CockpitApp
    from tui.fake import FakeTutor

    def factory(publish, say):
        return FakeTutor(publish=publish, run_dir=str(tmp_path))

    app = CockpitApp(factory, chat_factory=lambda tutor: LimitChat(), handle_signals=False)
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        app.chat_pane.submit("a very long prompt")
        await pilot_wait(pilot, lambda: not app.chat_pane.answering)
        await pilot.pause(0.1)
        lines = [str(c.content) for c in app.pane("chat").query_one("#chat-log").children]
        trim = next(i for i, t in enumerate(lines) if "kept the last" in t)
        reply = next(i for i, t in enumerate(lines) if t.startswith("baby "))
        assert trim < reply
        assert "stopped at the token limit" in lines[reply]
    log = (tmp_path / "chat.log").read_text(encoding="utf-8")
    assert "you: a very long prompt" in log and "baby: the end" in log


def test_values_of_one_stat_side_by_side_share_one_format():
    from babyllm.calligraphist import format_value

    assert [format_value("loss", v, steady=True) for v in (2.8, 2.801, 3.0)] == ["2.800", "2.801", "3.000"]
    assert format_value("loss", 2.8) == "2.8"  # the grid and headless lines are unchanged


async def test_a_failing_event_log_line_never_ends_the_app(monkeypatch):
    """A pane's own update method (the event log's add) is guarded like show_snapshot."""
    from tui.widgets.events import EventLog

    def broken(self, line):  # type: ignore[no-untyped-def]
        raise RuntimeError("log is full")

    app, made = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await started(pilot, app)
        monkeypatch.setattr(EventLog, "add", broken)
        await pilot.press("s")  # the app logs "save requested"
        await pilot.pause(0.1)
        assert app._exception is None and made["tutor"].calls[-1] == "request_save"
        assert "update failed: RuntimeError" in str(app.pane("events").border_title)


async def test_log_scale_before_the_first_bits_per_byte_draws_without_a_fault():
    """Validation has logged only nan bits per byte so far (no eval yet): the right axis would be empty."""
    import dataclasses
    import math

    app, made = make_app()
    async with app.run_test(size=BIG) as pilot:
        await started(pilot, app)
        await pilot.press("space")  # the fake stops adding steps
        await pilot.pause(0.3)
        history = made["tutor"].history
        history.clear()
        for step in range(1, 40):
            history.add(step, {"loss": 5.0 - step / 20, "val_bpb": math.nan, "val_loss": math.nan})
        pane = app.pane("loss")
        for log in (True, False, True):
            pane.log_scale = log
            await pilot.pause(0.5)
            pane.snapshot = dataclasses.replace(app.snapshot, stats={})  # no unigram line either
            pane.redraw()
            pane.query_one(Plot).render()
            assert not pane.failures, pane.failures


async def test_S_saves_an_svg_screenshot_into_the_run_directory(tmp_path):
    from babyllm.run.runfiles import SCREENSHOTS
    from tui.app import CockpitApp
    from tui.fake import FakeChat, FakeTutor

    def make(run_dir):
        return CockpitApp(lambda publish, say: FakeTutor(publish=publish, run_dir=str(run_dir)),
                          chat_factory=lambda tutor: FakeChat(), handle_signals=False)

    run_dir = tmp_path / "run"
    app = make(run_dir)
    async with app.run_test(size=BIG) as pilot:
        await started(pilot, app)
        await pilot.press("S")
        await pilot.pause(0.5)
        shots = list((run_dir / SCREENSHOTS).glob("cockpit-*.svg"))
        assert len(shots) == 1 and "<svg" in shots[0].read_text()[:500]
        assert "screenshot" in status_text(app)
    (tmp_path / "ro").write_text("a file where the run directory would be")
    app = make(tmp_path / "ro")  # its screenshots/ cannot be made: one notice, the app carries on
    async with app.run_test(size=BIG) as pilot:
        await started(pilot, app)
        await pilot.press("S")
        await pilot.pause(0.3)
        assert app.is_running and app._exception is None


async def test_w_cycles_the_windows_plot_through_sizes_on_a_log_axis_gates_and_back():
    app, _ = make_app()
    async with app.run_test(size=BIG) as pilot:
        await started(pilot, app)
        pane = app.pane("windows")
        plot = pane.query_one(Plot)
        await pilot.press("4")  # maximised: room for the plot (the wide grid's pane shows the trends: test_tui_view)
        await pilot_wait(pilot, lambda: not pane.trends_shown)
        for view in ("sizes", "gates", "weightings", "sizes"):
            await pilot.press("w")
            await pilot_wait(pilot, lambda want=view: pane.view == want)
            assert plot.display == (view != "gates")  # (the gate histograms: tests/test_gates.py)
            if view == "gates":
                continue
            pane.redraw()
            text = plot.render().plain
            assert ("sizes over steps, log" in text) == (view == "sizes")
            assert ("weightings over steps" in text) == (view == "weightings")
            assert not pane.failures
