"""Tests for the Calligraphist: directions, bands, records, colours and rendering."""

from __future__ import annotations

import io
import math

import pytest
from rich.console import Console
from rich.style import Style
from rich.text import Text

from babyllm.calligraphist import (
    BAND_COLOURS,
    BANDS,
    HIGHER,
    LOWER,
    NEUTRAL,
    Calligraphist,
    direction,
    format_value,
    section_of,
)


def _fed(name: str, values: list[float], window: int = 100) -> Calligraphist:
    cal = Calligraphist(window=window)
    for v in values:
        cal.observe({name: v})
    return cal


def _render(renderable: object, width: int = 80) -> str:
    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None).print(renderable)
    return buffer.getvalue()


def _rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]


FULL_STATS: dict[str, float] = {
    "step": 1200.0, "tokens": 9_830_400.0, "loss": 3.412, "loss_100": 3.5, "loss_1000": 3.7,
    "val_loss": 3.55, "perplexity": 30.3, "accuracy": 0.31, "lr": 3e-4, "grad_norm": 0.82,
    "tokens_per_s": 4210.0, "step_ms": 120.5,
    **{f"window_weight_{i}": 1 / 7 for i in range(7)},
    **{f"window_size_{i}": float(2 ** (i + 1)) for i in range(7)},
    **{f"mem{m}_{k}": 0.5 for m in (1, 2) for k in (
        "decay_short", "decay_long", "gate_short", "gate_long", "gate_input", "gate_proj")},
    "mem2_mix": 0.4, "entropy": 5.1, "act_mean": 0.1, "act_std": 0.9, "act_inactive": 0.3,
    "norm_embed": 1.0, "norm_neurons": 2.0, "norm_windows": 3.0, "norm_memory1": 4.0,
    "norm_memory2": 5.0, "norm_logits": 6.0,
    "t_data": 1.0, "t_forward": 40.0, "t_backward": 70.0, "t_optimizer": 8.0, "t_stats": 0.5,
    "mystery": 42.0,
}


# -- directions and sections -------------------------------------------------------------------

@pytest.mark.parametrize("name", ["loss", "loss_100", "loss_1000", "val_loss", "perplexity",
                                  "step_ms", "t_forward", "t_anything", "act_inactive"])
def test_lower_is_better(name: str) -> None:
    assert direction(name) == LOWER


@pytest.mark.parametrize("name", ["accuracy", "tokens_per_s"])
def test_higher_is_better(name: str) -> None:
    assert direction(name) == HIGHER


@pytest.mark.parametrize("name", ["lr", "step", "tokens", "window_weight_0", "mem1_gate_long",
                                  "entropy", "act_mean", "norm_embed", "mystery"])
def test_neutral(name: str) -> None:
    assert direction(name) == NEUTRAL


def test_direction_overrides() -> None:
    cal = Calligraphist(directions={"entropy": HIGHER})
    assert cal.direction("entropy") == HIGHER
    assert cal.direction("loss") == LOWER


@pytest.mark.parametrize(("name", "section"), [
    ("loss", "loss"), ("accuracy", "loss"), ("perplexity", "loss"), ("lr", "learning"),
    ("tokens", "learning"), ("epoch", "learning"), ("window_size_3", "windows"),
    ("mem2_mix", "memory"), ("entropy", "logits"), ("logit_max", "logits"),
    ("act_std", "neurons"), ("norm_logits", "neurons"), ("tokens_per_s", "timing"),
    ("step_ms", "timing"), ("t_data", "timing"), ("mystery", "other"),
])
def test_sections(name: str, section: str) -> None:
    assert section_of(name) == section


# -- banding -----------------------------------------------------------------------------------

def test_bands_tuple() -> None:
    assert len(BANDS) == 16 and len(set(BANDS)) == 16
    assert BANDS[0] == "superPerfect" and BANDS[-1] == "omgwtf!" and BANDS[8] == "average"


def test_lower_better_banding() -> None:
    cal = _fed("loss", [float(v) for v in range(1, 101)])  # 1..100
    assert cal.band("loss", 0.5) == "superPerfect"
    assert cal.band("loss", 1.0) == "superPerfect"  # equals the record just observed
    assert cal.band("loss", 150.0) == "omgwtf!"
    assert cal.band("loss", 5.0) in BANDS[1:4]
    assert cal.band("loss", 50.0) in ("almostFine", "average", "meh")
    assert cal.band("loss", 97.0) in BANDS[-4:-1]
    assert BANDS.index(cal.band("loss", 10.0)) < BANDS.index(cal.band("loss", 60.0))


def test_higher_better_banding_flips() -> None:
    values = [float(v) for v in range(1, 101)]
    cal = _fed("accuracy", values)
    assert cal.band("accuracy", 150.0) == "superPerfect"
    assert cal.band("accuracy", 0.5) == "omgwtf!"
    assert BANDS.index(cal.band("accuracy", 90.0)) < BANDS.index(cal.band("accuracy", 10.0))
    lower = _fed("loss", values)
    assert lower.band("loss", 90.0) == cal.band("accuracy", 11.0)


def test_neutral_stats_have_no_band_or_records() -> None:
    cal = _fed("lr", [1e-4 * i for i in range(1, 50)])
    assert cal.band("lr", 1.0) is None
    assert cal.records("lr") is None
    assert dict(cal.bands["lr"]) == {}
    assert cal.bands["lr"].get("perfect") is None
    assert cal.style(cal.band("lr", 1.0)) == Style()
    assert cal.band("lr", math.nan) == "omgwtf!"  # broken is broken, even for neutral stats


def test_records_are_all_time_not_window() -> None:
    cal = _fed("loss", [1.0, 9.0] + [5.0 + 0.01 * i for i in range(20)], window=10)
    assert cal.records("loss") == (1.0, 9.0)
    assert len(cal.history("loss")) == 10
    assert cal.bands["loss"]["superPerfect"] == 1.0
    assert cal.bands["loss"]["omgwtf!"] == 9.0
    assert cal.bands["loss"]["perfect"] == pytest.approx(5.1)  # window best
    assert cal.band("loss", 1.5) == "perfect"  # beats the window, not the record
    assert cal.band("loss", 8.0) == "omgwtf"  # worse than the window, not the record


def test_new_best_and_new_worst() -> None:
    cal = _fed("loss", [3.0 + 0.1 * (i % 7) for i in range(30)])
    cal.observe({"loss": 2.0})
    assert cal.band("loss", 2.0) == "superPerfect"
    cal.observe({"loss": 10.0})
    assert cal.band("loss", 10.0) == "omgwtf!"
    assert cal.band("loss", 3.3) not in ("superPerfect", "omgwtf!")


@pytest.mark.parametrize("n", [0, 1, 2, 4])
def test_small_histories_give_average(n: int) -> None:
    cal = _fed("loss", [float(i) for i in range(n)])
    assert cal.band("loss", 0.5) == "average"
    assert cal.band("loss", -100.0) == "average"
    cal.text("loss", 0.5)
    _render(cal.grid({"loss": 0.5}))
    if n == 0:
        assert "loss" not in cal.bands
        assert cal.bands.get("loss") is None
    else:  # too little history to follow thresholds: none are offered (a missing band is None via .get)
        assert cal.bands["loss"].get("perfect") is None
        assert cal.bands["loss"].get("superPerfect") is None


def test_unknown_stat_bands_like_a_fresh_one() -> None:
    cal = Calligraphist()
    assert cal.band("loss", 3.0) == "average"
    assert cal.band("never_seen", 3.0) is None
    with pytest.raises(KeyError):
        cal.bands["never_seen"]


def test_constant_stat_is_average_not_a_record() -> None:
    cal = _fed("t_stats", [0.0] * 20)
    assert cal.band("t_stats", 0.0) == "average"


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_nan_and_inf(bad: float) -> None:
    cal = _fed("loss", [2.0 + 0.01 * i for i in range(20)])
    before = cal.bands["loss"]["perfect"]
    cal.observe({"loss": bad})
    assert cal.band("loss", bad) == "omgwtf!"
    assert cal.nonfinite_count("loss") == 1
    assert len(cal.history("loss")) == 20  # kept out of the history
    assert cal.bands["loss"]["perfect"] == before
    assert cal.records("loss") == pytest.approx((2.0, 2.19))
    assert all(math.isfinite(v) for v in cal.bands["loss"].values())
    assert cal.band("loss", 2.1) not in ("superPerfect", "omgwtf!")


def test_nan_first_values_do_not_crash() -> None:
    cal = _fed("loss", [math.nan, math.inf])
    assert cal.band("loss", 1.0) == "average"
    assert cal.records("loss") is None
    assert dict(cal.bands["loss"]) == {}
    assert cal.text("loss", math.nan).plain == "nan"


def test_bands_lookup_and_get() -> None:
    cal = _fed("loss", [float(v) for v in range(1, 101)])
    perfect = cal.bands["loss"]["perfect"]
    assert isinstance(perfect, float) and perfect == 1.0
    assert cal.bands["loss"].get("perfect") == perfect
    assert cal.bands["loss"].get("nonexistent") is None
    assert set(cal.bands["loss"]) == set(BANDS)
    assert cal.bands["loss"]["omgwtf"] == 100.0
    assert cal.bands["loss"]["average"] == pytest.approx(1 + 99 * 7 / 13)
    assert "loss" in cal.bands and list(cal.bands) == ["loss"]


def test_thresholds_monotonic_in_direction() -> None:
    import random

    rng = random.Random(1)
    cal = Calligraphist()
    for _ in range(300):
        cal.observe({"loss": rng.gauss(3, 1), "accuracy": rng.random()})
    loss = [cal.bands["loss"][b] for b in BANDS]
    acc = [cal.bands["accuracy"][b] for b in BANDS]
    assert loss == sorted(loss) and loss[0] < loss[-1]
    assert acc == sorted(acc, reverse=True) and acc[0] > acc[-1]
    # And every threshold earns its own band or better.
    for b in BANDS[1:-1]:
        assert BANDS.index(cal.band("loss", cal.bands["loss"][b])) <= BANDS.index(b)


def test_observe_invalidates_cached_thresholds() -> None:
    cal = _fed("loss", [float(v) for v in range(10, 20)])
    assert cal.bands["loss"]["perfect"] == 10.0
    cal.observe({"loss": 5.0})
    assert cal.bands["loss"]["perfect"] == 5.0


def test_non_numeric_values_are_ignored() -> None:
    cal = Calligraphist()
    cal.observe({"note": "hello", "flag": True, "loss": 1.0})
    assert list(cal.bands) == ["loss"]
    assert cal.band("note", "hello") is None
    assert "hello" in _render(cal.grid({"note": "hello"}))


# -- colours and styles ------------------------------------------------------------------------

def test_colour_ramp_blue_to_red() -> None:
    assert len(BAND_COLOURS) == 16
    rgb = [_rgb(c) for c in BAND_COLOURS]
    r0, _, b0 = rgb[0]
    r1, _, b1 = rgb[-1]
    assert b0 > r0 + 100 and r1 > b1 + 100  # bright blue ... bright red
    rm, gm, bm = rgb[7]
    assert rm > 120 and bm > 120 and gm < min(rm, bm)  # purple in the middle
    assert [r for r, _, _ in rgb] == sorted(r for r, _, _ in rgb)
    assert [b for _, _, b in rgb] == sorted((b for _, _, b in rgb), reverse=True)
    for r, g, b in rgb:  # readable on dark and light: no near-black or near-white
        assert max(r, g, b) > 60 and min(r, g, b) < 200


def test_styles() -> None:
    cal = Calligraphist()
    for band, colour in zip(BANDS, BAND_COLOURS, strict=True):
        style = cal.style(band)
        assert style.color is not None and style.color.triplet is not None
        assert style.color.triplet.hex == colour
    assert cal.style("superPerfect").bold and cal.style("omgwtf!").bold
    assert not cal.style("average").bold
    assert cal.style(None) == Style()


def test_text_is_coloured_by_band() -> None:
    cal = _fed("loss", [float(v) for v in range(1, 101)])
    text = cal.text("loss", 0.25)
    assert isinstance(text, Text) and text.plain == "0.25"
    assert text.style == cal.style("superPerfect")
    assert cal.text("lr", 3e-4).style == Style()


# -- formatting --------------------------------------------------------------------------------

@pytest.mark.parametrize(("name", "value", "expected"), [
    ("loss", 3.41234, "3.412"), ("accuracy", 0.31, "0.31"), ("lr", 3e-4, "3.0e-04"),
    ("tokens_per_s", 4210.4, "4,210"), ("tokens", 9_830_400.0, "9.83M"),
    ("tokens", 2.5e9, "2.5G"), ("step", 1200.0, "1200"), ("loss", math.nan, "nan"),
    ("loss", math.inf, "inf"), ("loss", -math.inf, "-inf"), ("grad_norm", 123456.0, "123,456"),
    ("act_mean", -0.0, "0"), ("window_size_6", 256.0, "256"), ("train_s", 187.4, "3m07s"), ("mfu", 0.4231, "42.3%"),
])
def test_format_value(name: str, value: float, expected: str) -> None:
    assert format_value(name, value) == expected


# -- rendering ---------------------------------------------------------------------------------

def _trained() -> Calligraphist:
    cal = Calligraphist()
    for i in range(50):
        stats = dict(FULL_STATS)
        stats["loss"] = 6.0 - 0.05 * i
        stats["accuracy"] = 0.01 * i
        stats["t_forward"] = 40.0 + (i % 5)
        cal.observe(stats)
    return cal


def test_grid_renders_at_80_columns() -> None:
    cal = _trained()
    out = _render(cal.grid(FULL_STATS), width=80)
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines)
    for section in ("loss", "learning", "windows", "memory", "logits", "neurons", "timing",
                    "other"):
        assert any(line.startswith(section) for line in lines), section
    for value in ("3.412", "0.31", "3.0e-04", "4,210", "9.83M", "1200", "42", "120.5"):
        assert value in out, value
    assert len(lines) <= 26  # compact: several stats per row
    assert "weight 0" in out and "m1 gate s" in out and "forward" in out


@pytest.mark.parametrize("width", [30, 60, 120, 200])
def test_grid_renders_at_other_widths(width: int) -> None:
    grid = _trained().grid(FULL_STATS)
    out = _render(grid, width=width)
    assert all(len(line) <= width for line in out.splitlines())
    assert "memory" in out
    assert grid.line_count(width) == len(out.splitlines())  # what the cockpit's layout passes go by


def test_grid_line_count_when_too_narrow_and_empty() -> None:
    grid = _trained().grid(FULL_STATS)
    assert grid.line_count(10) == len(_render(grid, width=10).splitlines())
    assert Calligraphist().grid({}).line_count(80) == 1


def test_grid_empty_and_partial() -> None:
    cal = Calligraphist()
    assert "no stats" in _render(cal.grid({}))
    out = _render(cal.grid({"loss": math.nan, "t_data": 1.0}))
    assert "nan" in out and "timing" in out and "windows" not in out


def test_grid_sections_in_order() -> None:
    out = _render(_trained().grid(FULL_STATS), width=80)
    heads = [line.split()[0] for line in out.splitlines() if line[:1].strip()]
    assert heads == ["loss", "learning", "windows", "memory", "logits", "neurons", "timing",
                     "other"]


def test_summary_line() -> None:
    cal = _trained()
    text = cal.summary(FULL_STATS)
    assert isinstance(text, Text)
    assert text.plain == ("step 1200 | loss 3.412 | val 3.55 | acc 0.31 | lr 3.0e-04 | "
                          "grad 0.82 | 4,210 tok/s")
    assert cal.summary({"loss": 2.0}).plain == "loss 2"
    assert cal.summary({}).plain == ""
    out = _render(text, width=80)
    assert "loss 3.412" in out


def test_summary_values_carry_band_colours() -> None:
    cal = _trained()
    text = cal.summary({"loss": 0.1})
    spans = [s for s in text.spans if text.plain[s.start:s.end] == "0.1"]
    assert spans and spans[0].style == cal.style("superPerfect")


def test_legend() -> None:
    legend = Calligraphist().legend()
    assert legend.plain.split() == list(BANDS)
    out = _render(legend, width=80)
    assert len(out.splitlines()) <= 2
    assert "superPerfect" in out and "omgwtf!" in out


def test_thresholds_are_shown_only_once_the_label_follows_them():
    """The first values are banded "average" whatever they are: no thresholds are offered until then."""
    c = Calligraphist(window=50, min_history=5)
    for i, v in enumerate([5.0, 4.0, 6.0, 3.0]):
        c.observe({"loss": v})
        assert c.band("loss", v) == "average" and dict(c.bands["loss"]) == {}, i
    c.observe({"loss": 4.5})
    thresholds = c.bands["loss"]
    assert thresholds and c.band("loss", 3.0) == "superPerfect"
    for value in (3.2, 4.4, 5.9):  # every label agrees with the thresholds shown
        band = c.band("loss", value)
        assert value <= thresholds[band]
    c2 = Calligraphist(min_history=2)
    for _ in range(5):
        c2.observe({"loss": 1.0})  # never varied
    assert dict(c2.bands["loss"]) == {} and c2.band("loss", 1.0) == "average"
