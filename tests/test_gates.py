"""The memories' per-neuron gate histograms: counted as a plain loop would, carried in the Snapshot and
over the wire, and shown by the windows pane's third view (the w key) on a real tiny run."""

from __future__ import annotations

import json
import re

import pytest
import torch
from runhelpers import pilot_wait
from test_tui import make_app, started

from babyllm.config import load_config
from babyllm.model.memory import Memory
from babyllm.model.network import BabyLLM
from babyllm.school.stepper import SLOW_STATS_EVERY
from babyllm.school.tutor import Tutor
from babyllm.snapshot import Snapshot
from babyllm.socket import wire
from babyllm.stats import GATE_BINS, MEMORIES, MEMORY_GATE
from tui.app import CockpitApp
from tui.widgets.plotting import Plot
from tui.widgets.windows import GATE_SOURCES, SPARKS, GateHistograms, WindowBars, gate_layout, spark_levels

NAMES = [MEMORY_GATE.format(memory=m, source=s) for m in MEMORIES for s in Memory.SOURCES]


def reference(gates: torch.Tensor, bins: int) -> list[list[int]]:
    """A plain count: for each source, for each neuron, which of `bins` equal bins of [0, 1] its gate is in."""
    rows = []
    for source in range(gates.shape[1]):
        counts = [0] * bins
        for g in gates[:, source].tolist():
            counts[min(int(g * bins), bins - 1)] += 1
        rows.append(counts)
    return rows


def test_histogram_equals_a_plain_count():
    torch.manual_seed(0)
    mem = Memory(neurons=500, rank=8)
    with torch.no_grad():
        mem.gate_logits.normal_(0, 2.0)
    hist = mem.gate_histogram(GATE_BINS)
    assert hist.shape == (4, GATE_BINS) and hist.sum(1).tolist() == [500] * 4
    assert hist.tolist() == reference(mem.gates(), GATE_BINS)
    assert mem.gate_histogram(7).tolist() == reference(mem.gates(), 7)


def test_histogram_edges_and_the_models_names():
    mem = Memory(neurons=6, rank=2)
    assert mem.gate_histogram(GATE_BINS)[:, 2].tolist() == [6] * 4  # every gate starts at 0.25
    with torch.no_grad():
        mem.gate_logits.zero_()
        mem.gate_logits[:, 2] = 100.0  # the input gate ~1, the others ~0: the last and the first bin
    hist = mem.gate_histogram(GATE_BINS).tolist()
    assert hist[2] == [0] * 9 + [6] and hist[0] == hist[1] == hist[3] == [6] + [0] * 9
    cfg = load_config("tiny").model
    model = BabyLLM(cfg)
    hists = model.gate_histograms(GATE_BINS)
    assert list(hists) == NAMES and set(model.readings()) >= set(NAMES)  # keyed as the means' stats
    assert all(sum(h) == cfg.neurons and len(h) == GATE_BINS for h in hists.values())


def test_the_tutor_publishes_them_with_the_slow_stats(make_cfg, tmp_path):
    with Tutor(make_cfg(), tmp_path / "run", say=lambda m: None, publish_every=0.0) as t:
        assert t.snapshot().gate_hist == {}  # no step yet
        t.recorder.record(t.step())
        t.recorder.publish(force=True)
        first = t.snapshot().gate_hist
        assert first == t.model.gate_histograms(GATE_BINS) and list(first) == NAMES
        with torch.no_grad():
            t.model.memory1.gate_logits[:, 0] = 50.0  # every m1 short gate ~1
        while t.step_count % SLOW_STATS_EVERY:
            t.recorder.record(t.step())
        t.recorder.publish(force=True)
        now = t.snapshot().gate_hist
    assert now["mem1_gate_short"] == (0,) * 9 + (t.cfg.model.neurons,)
    assert now["mem1_gate_long"][0] == t.cfg.model.neurons


def test_they_travel_over_the_wire():
    hist = {name: tuple(range(k, k + GATE_BINS)) for k, name in enumerate(NAMES)}
    snap = Snapshot(step=3, tokens=30, state="running", stats={"loss": 2.0}, gate_hist=hist)
    back = wire.snapshot_from_json(wire.decode(wire.encode({"snapshot": wire.snapshot_to_json(snap)}))["snapshot"])
    assert back.gate_hist == hist
    damaged = wire.snapshot_to_json(snap)
    damaged["gate_hist"] = {"mem1_gate_short": [1, 2, "x"], "mem1_gate_long": [3, 4], "mem2_gate_input": 5}
    assert wire.snapshot_from_json(json.loads(json.dumps(damaged))).gate_hist == {"mem1_gate_long": (3, 4)}
    del damaged["gate_hist"]  # a run from before the field
    assert wire.snapshot_from_json(damaged).gate_hist == {}


def test_spark_levels():
    assert spark_levels((0, 1, 4, 8)) == [0, 1, 4, 8]
    assert spark_levels((0, 1, 1000)) == [0, 1, 8]  # a neuron alone in a bin still shows
    assert spark_levels((0, 0)) == [0, 0]


@pytest.mark.slow
@pytest.mark.parametrize("size", [(80, 24), (160, 50)])
async def test_the_windows_pane_shows_a_real_runs_histograms(make_cfg, tmp_path, size):
    cfg = make_cfg("train.save_every=0")
    app = CockpitApp(lambda publish, say: Tutor(cfg, tmp_path / "run", publish=publish, say=say),
                     chat_factory=lambda t: t.chat_session(), handle_signals=False)
    async with app.run_test(size=size) as pilot:
        await pilot_wait(pilot, lambda: app.snapshot is not None and app.snapshot.step > 3)
        await pilot.press("escape", "space")  # pause (the keys are quicker), and the text and its snapshot stay
        await pilot_wait(pilot, lambda: app.snapshot.state == "paused")
        await pilot.press("4")
        pane = app.pane("windows")
        plot, hist = pane.query_one(Plot), pane.query_one(GateHistograms)
        await pilot.press("w", "w")
        await pilot_wait(pilot, lambda: pane.view == "gates" and hist.snapshot is not None and hist.size.height > 0)
        await pilot.pause(0.1)
        assert not plot.display and hist.display and not pane.failures
        assert hist.region.bottom <= pane.region.bottom and hist.size.width > 20  # on screen, in the pane
        text = hist.render().plain
        assert text.startswith("gates per neuron, 10 bins")
        assert len(text.splitlines()) == 1 + 8 // gate_layout(hist.size.width)[0]  # the memories side by side or not
        neurons = cfg.model.neurons
        for m in MEMORIES:
            for source, _ in GATE_SOURCES:
                counts = hist.snapshot.gate_hist[MEMORY_GATE.format(memory=m, source=source)]
                assert sum(counts) == neurons
                (bars,) = re.findall(rf"m{m[3:]} {source:<5} (\S+)", text)  # "m1 long  ··█······· 0.250"
                assert len(bars) % GATE_BINS == 0, bars
                cells = bars[:: len(bars) // GATE_BINS]  # one character per bin
                assert [c == "·" for c in cells] == [n == 0 for n in counts], bars
                assert cells[counts.index(max(counts))] == SPARKS[-1], bars  # the fullest bin is a full block
        await pilot.press("w")  # back to the weightings: the bars and the plot (or, at 80x24, the trends) as before
        await pilot_wait(pilot, lambda: pane.view == "weightings" and (plot.display or pane.trends_shown)
                         and not hist.display)
        await pilot.press("q", "y")
        await pilot_wait(pilot, lambda: not app.is_running)
    assert app.join_tutor(timeout=10)


def test_gate_layout_fits_the_width():
    assert gate_layout(76) == (2, True)  # 80x24: both memories, with their means
    assert gate_layout(47) == (2, False)  # the wide grid at its least width: side by side, no means
    assert gate_layout(30) == (1, True)


async def test_a_short_pane_shows_the_histograms_alone_and_w_brings_the_bars_back():
    app, _ = make_app()  # (the fake Tutor: means, no histograms)
    async with app.run_test(size=(120, 34)) as pilot:  # the wide grid's least size: 7 lines in the pane
        await started(pilot, app)
        pane = app.pane("windows")
        bars, hist = pane.query_one(WindowBars), pane.query_one(GateHistograms)
        await pilot.press("w", "w")
        await pilot_wait(pilot, lambda: pane.view == "gates" and not bars.display)
        await pilot.pause(0.1)
        text = hist.render().plain
        assert text.startswith("gate means") and "m2 proj" in text
        assert hist.region.bottom <= pane.region.bottom - 1  # every row inside the border
        await pilot.press("w")
        await pilot_wait(pilot, lambda: pane.view == "weightings" and bars.display and not hist.display)
