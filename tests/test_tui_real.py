"""The cockpit driving the real Tutor on configs/tiny.toml: chat while training, pause, quit saves."""

from __future__ import annotations

from pathlib import Path

from runhelpers import pilot_wait

from babyllm.config import load_config
from babyllm.run.runfiles import latest_step
from babyllm.school.tutor import Tutor
from tui.app import CockpitApp

TEXT = (
    "The morning light came slowly over the hills, and the kettle sang in the kitchen. "
    "We walked down to the harbour where the boats were painted blue and red. "
    "She wrote a letter to her brother about the garden, the bees and the bread. "
    "In the evening the birds came back to the old oak tree by the river.\n"
)


def write_corpus(tmp_path: Path) -> Path:
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(TEXT * 40, encoding="utf-8")  # ~12 KB
    return corpus


async def test_real_tutor_chat_pause_and_quit_saves(tmp_path):
    cfg = load_config("tiny", [f"data.corpus={str(write_corpus(tmp_path))!r}".replace("'", '"'),
                               f'data.cache_dir="{tmp_path / "cache"}"', "train.save_every=0"])
    run_dir = tmp_path / "run"
    app = CockpitApp(
        lambda publish, say: Tutor(cfg, run_dir, publish=publish, say=say),
        chat_factory=lambda t: t.chat_session(),  # as tui.cli's cockpit
        handle_signals=False,
    )
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot_wait(pilot, lambda: app.snapshot is not None and app.snapshot.step > 5)
        # chat during training
        await pilot.press("i", *"the", "enter")
        await pilot_wait(pilot, lambda: not app.chat_pane.answering)
        texts = [str(w.render()) for w in app.query(".chat-line")]
        assert any(t.startswith("baby ") and len(t) > 5 for t in texts), texts
        before = app.tutor.step_count
        assert before > 5
        # pause really stops the steps
        await pilot.press("escape", "space")
        await pilot_wait(pilot, lambda: app.snapshot.state == "paused")
        paused_at = app.tutor.step_count
        await pilot.pause(0.5)
        assert app.tutor.step_count == paused_at
        await pilot.press("space")
        await pilot_wait(pilot, lambda: app.tutor.step_count > paused_at)
        # quit: confirm, the Tutor saves, the thread ends, the app exits
        await pilot.press("q", "y")
        await pilot_wait(pilot, lambda: not app.is_running)
    assert app.join_tutor(timeout=10)
    assert app.tutor.state == "stopped"
    assert latest_step(run_dir) == app.tutor.step_count
