"""The stat registry: one table, read by the model, the Tutor, the Calligraphist and the fake Tutor."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from babyllm.calligraphist import BANDS, Calligraphist
from babyllm.config import ModelConfig
from babyllm.stats import (
    CUMULATIVE,
    GATE_BINS,
    HIGHER,
    LOWER,
    MEMORIES,
    MEMORY_DECAYS,
    MEMORY_GATE,
    MEMORY_SOURCES,
    NEUTRAL,
    PARTS,
    PER_STEP,
    REGISTRY,
    SCI,
    SECTIONS,
    STATS,
    STEPWISE,
    WINDOW_WEIGHT,
    Registry,
    StatSpec,
)
from tui.fake import FAKE_MODEL, fake_stats


def _render(renderable: object, width: int = 160) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None).print(renderable)
    return buffer.getvalue()


def test_a_new_stat_is_one_row():
    """Registered through the registry alone, a stat is sectioned, labelled, formatted, banded and listed."""
    reg = REGISTRY.extended(StatSpec("grad_ratio_{i}", "learning", HIGHER, "ratio {i}", fmt=SCI, per="windows"))
    cal = Calligraphist(window=50, min_history=3, registry=reg)
    for v in (1e-3, 2e-3, 3e-3, 4e-3):
        cal.observe({"grad_ratio_2": v, "loss": 1.0})
    assert cal.direction("grad_ratio_2") == HIGHER
    assert cal.band("grad_ratio_2", 5e-3) == BANDS[0]  # a new best: higher is better
    assert cal.band("grad_ratio_2", 1e-4) == BANDS[-1]
    assert cal.bands["grad_ratio_2"]["perfect"] == pytest.approx(4e-3)
    assert cal.text("grad_ratio_2", 2.5e-3).plain == "2.5e-03"
    out = _render(cal.grid({"grad_ratio_2": 2e-3, "lr": 1e-3, "loss": 1.0}))
    learning = next(line for line in out.splitlines() if line.startswith("learning"))
    assert "lr" in learning and "ratio 2" in learning and learning.index("lr") < learning.index("ratio 2")
    names = reg.names(ModelConfig(windows=[2.0, 4.0, 8.0]))
    assert [n for n in names if n.startswith("grad_ratio")] == ["grad_ratio_0", "grad_ratio_1", "grad_ratio_2"]
    assert "grad_ratio_0" not in REGISTRY.names(ModelConfig())  # the default registry is unchanged


def test_patterns_exact_rows_and_fallbacks():
    assert REGISTRY.label("window_weight_11") == "weight 11"
    assert REGISTRY.label("mem2_gate_input") == "m2 gate in" and REGISTRY.label("mem1_other_thing") == "m1 other thing"
    assert REGISTRY.label("norm_memory1") == "|memory1|" and REGISTRY.label("norm_extra") == "|extra|"
    assert REGISTRY.direction("t_anything") == LOWER and REGISTRY.label("t_anything") == "anything"
    assert REGISTRY.section("logit_max") == "logits" and REGISTRY.section("mystery") == "other"
    assert REGISTRY.direction("mystery") == NEUTRAL and REGISTRY.label("my_stat") == "my stat"
    assert REGISTRY.label("val_bpb") == "val bpb" and REGISTRY.label("val_bpb", brief=True) == "bpb"


def test_order_is_the_table_order_with_indices_numeric():
    names = ["window_size_10", "window_weight_2", "window_size_9", "loss_100", "t_zzz", "t_data", "loss", "zeta"]
    assert sorted(names, key=REGISTRY.order) == [
        "loss", "loss_100", "window_weight_2", "window_size_9", "window_size_10", "t_data", "t_zzz", "zeta"]


def test_indices_of_a_family():
    stats = {"window_weight_0": 1.0, "window_weight_10": 1.0, "window_weight_2": 1.0, "window_size_3": 1.0}
    assert REGISTRY.indices(WINDOW_WEIGHT, stats) == [0, 2, 10]


def test_every_row_is_well_formed():
    assert all(s.section in SECTIONS for s in STATS)
    assert all(s.direction in (LOWER, HIGHER, NEUTRAL) for s in STATS)
    assert all(("{i}" in s.name) == (s.per is not None) for s in STATS)
    exact = [s.name for s in STATS if not s.is_pattern]
    assert len(exact) == len(set(exact))
    with pytest.raises(ValueError, match="section"):
        Registry([StatSpec("x", "nowhere")])


def test_names_follow_the_config_window_count():
    names = REGISTRY.names(ModelConfig(windows=[2.0, 3.0]))
    assert REGISTRY.indices(WINDOW_WEIGHT, names) == [0, 1]
    assert "epoch" not in names and not any("{" in n for n in names)
    assert REGISTRY.timings() == ("t_data", "t_forward", "t_backward", "t_optimizer", "t_stats")


def test_model_readings_are_registered(make_cfg):
    from babyllm.model.network import BabyLLM

    cfg = make_cfg("model.windows=[2, 3, 5]")
    model = BabyLLM(cfg.model)
    readings = model.readings()
    assert set(readings) <= set(REGISTRY.names(cfg.model))
    assert REGISTRY.indices(WINDOW_WEIGHT, readings) == [0, 1, 2]
    assert all(REGISTRY.spec(n) is not None and not REGISTRY.spec(n).is_fallback for n in readings)
    assert tuple(name for name, _ in model.named_children()) == PARTS


def test_the_memories_readings_are_named_once_in_the_registry(make_cfg):
    """The model computes exactly the memory rows the registry has, its gates' columns in MEMORY_SOURCES order."""
    from babyllm.model.memory import Memory
    from babyllm.model.network import BabyLLM

    cfg = make_cfg()
    model = BabyLLM(cfg.model)
    memory_rows = [n for n in REGISTRY.names(cfg.model) if REGISTRY.section(n) == "memory"]
    assert sorted(n for n in model.readings() if REGISTRY.section(n) == "memory") == sorted(memory_rows)
    gates = [MEMORY_GATE.format(memory=m, source=src) for m in MEMORIES for src in MEMORY_SOURCES]
    assert list(model.gate_histograms(GATE_BINS)) == gates and set(gates) <= set(memory_rows)
    assert Memory.SOURCES == MEMORY_SOURCES and MEMORY_DECAYS == ("short", "long")
    assert REGISTRY.label("mem1_decay_long") == "m1 decay l" and REGISTRY.label("mem2_gate_proj") == "m2 gate proj"


def test_fake_tutor_publishes_every_registered_stat():
    assert list(fake_stats(10)) == REGISTRY.names(FAKE_MODEL)


def test_the_stat_lists_are_the_registrys_flags():
    """History's stepwise and cumulative stats, TensorBoard's and the curves' are read off the registry's rows."""
    from babyllm.run import curves, tboard
    from babyllm.snapshot import History

    assert all(s.changes in (PER_STEP, STEPWISE, CUMULATIVE) for s in STATS)
    assert History.STEPWISE == tuple(s.name for s in STATS if s.changes == STEPWISE) == (
        "val_loss", "val_bpb", "unigram_bpb", "perplexity")  # val_bpb changes only at a validation, as val_loss
    assert History.CUMULATIVE == tuple(s.name for s in STATS if s.changes == CUMULATIVE) == ("tokens", "train_s")
    logged = {s.name for s in STATS if s.tensorboard}
    assert set(tboard.EVERY_STEP) | set(tboard.ON_CHANGE) == logged == {"loss", "lr", "val_loss", "val_bpb",
                                                                        "unigram_bpb"}
    assert tboard.EVERY_STEP == ("loss", "lr") and tboard.ON_CHANGE == ("val_loss", "val_bpb", "unigram_bpb")
    assert set(curves.CURVE_STATS) == {s.name for s in STATS if s.curve} == {"loss", "tokens", "val_loss", "val_bpb"}
    extended = REGISTRY.extended(StatSpec("val_other", "loss", changes=STEPWISE))
    assert extended.where(lambda s: s.changes == STEPWISE)[-1] == "val_other"


def test_val_bpb_is_kept_per_validation_so_thinned_curves_pair_it_with_val_loss():
    """val_bpb is repeated between validations like val_loss: both keep one point per validation, so the
    curves find a bpb at every validation step however much they are thinned."""
    from babyllm.run.curves import curves_from_history
    from babyllm.snapshot import History

    h = History()
    val = float("nan")
    for step in range(1, 1001):
        val = 5.0 - step / 1000 if step % 7 == 0 else val
        h.add(step, {"loss": 5.0, "tokens": 64.0 * step, "val_loss": val, "val_bpb": val / 2})
    assert len(h.series("val_bpb", 10_000)[0]) == len(h.series("val_loss", 10_000)[0]) == 1 + 1000 // 7
    c = curves_from_history("run", h, 50)
    assert len(c.val_steps) > 10 and all(s % 7 == 0 for s in c.val_steps)
    assert c.val_bpb == pytest.approx([v / 2 for v in c.val])
