"""`babyllm plot`: runs' curves to PNG/SVG, rollbacks honoured, one-line errors."""

from __future__ import annotations

import json
import math
import sys

import pytest
from runhelpers import append

from babyllm.commands.cli import main
from babyllm.run.curves import read_curves
from tui.fake import fake_stats

pytest.importorskip("matplotlib")


def line(step, **extra):
    """A metrics line as the Tutor logs it (a whole step number)."""
    return json.dumps({**fake_stats(step), "step": step, **extra}) + "\n"


def make_run(root, name, steps, rollback_to=None, redo=()):
    d = root / name
    d.mkdir(parents=True)
    for s in range(1, steps + 1):
        extra = {} if s % 5 == 0 else {"val_loss": math.nan, "val_bpb": math.nan}
        append(d / "metrics.jsonl", line(s, **extra))
    if rollback_to is not None:
        append(d / "metrics.jsonl", json.dumps({"rollback_to": rollback_to}) + "\n")
        for s in redo:
            append(d / "metrics.jsonl", line(s, loss=0.5))
    return d


def test_curves_keep_only_the_live_branch(tmp_path):
    d = make_run(tmp_path, "a", 20, rollback_to=10, redo=range(11, 14))
    c = read_curves(d)
    assert c.steps == list(range(1, 14))
    assert c.train[-3:] == [0.5, 0.5, 0.5]  # the steps logged again after the rollback, not the discarded ones
    assert all(s <= 13 for s in c.val_steps) and c.val_steps  # validations of the dropped branch are gone
    assert c.x("tokens", [1])[0] > 0


def test_plot_writes_png_and_svg_for_several_runs(tmp_path, capsys):
    a, b = make_run(tmp_path, "first", 30), make_run(tmp_path, "second", 12)
    assert main(["plot", str(a), str(b), "-o", str(tmp_path / "c.png")]) == 0
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["plot", str(a), str(b), "-o", str(tmp_path / "c.svg"), "--x", "tokens", "--log"]) == 0
    svg = (tmp_path / "c.svg").read_text()
    assert "first" in svg and "second" in svg and "tokens" in svg
    assert "wrote" in capsys.readouterr().out


@pytest.mark.parametrize("case", ["suffix", "folder", "empty", "missing"])
def test_plot_mistakes_are_one_line(tmp_path, capsys, case):
    run = make_run(tmp_path, "r", 3)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "header.json").write_text("{}")
    args = {"suffix": [str(run), "-o", str(tmp_path / "c.jpg")],
            "folder": [str(run), "-o", str(tmp_path / "nope" / "c.png")],
            "empty": [str(tmp_path / "empty"), "-o", str(tmp_path / "c.png")],
            "missing": [str(tmp_path / "gone"), "-o", str(tmp_path / "c.png")]}[case]
    assert main(["plot", *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err


def test_plot_without_matplotlib_says_how_to_install(tmp_path, capsys, monkeypatch):
    run = make_run(tmp_path, "r", 3)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises ImportError
    assert main(["plot", str(run), "-o", str(tmp_path / "c.png")]) == 2
    assert '.[plot]' in capsys.readouterr().err
