"""CALLIGRAPHIST: turns every stat into colour-banded Rich text.

What a stat is (its direction, section, label, format and place) comes from the stat registry
(babyllm.stats); this module bands values against each stat's own history and renders them.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import Enum
from types import MappingProxyType
from typing import Any

from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.style import Style
from rich.text import Text

from babyllm.stats import HIGHER, INT, LOWER, NEUTRAL, PCT, REGISTRY, SCI, SECTIONS, Registry

__all__ = [
    "BANDS", "BAND_COLOURS", "BAND_HUES", "BAND_PERCENTILES", "HIGHER", "LOWER", "MIDDLE_BANDS", "NEUTRAL", "SECTIONS",
    "Calligraphist", "Depth", "Hue", "colour_depth", "direction", "format_value", "label", "section_of",
]

# Band names, best first. superPerfect = at/beyond the best value ever seen; omgwtf! = at/beyond
# the worst ever (or NaN/inf). The 14 bands between them split the recent window by percentile.
BANDS: tuple[str, ...] = (
    "superPerfect", "perfect", "almostPerfect", "superGreat", "great", "good", "fine",
    "almostFine", "average", "meh", "bad", "worse", "wtf", "omg", "omgwtf", "omgwtf!",
)
MIDDLE_BANDS: tuple[str, ...] = BANDS[1:-1]

# Goodness percentile (0 = best value in the window, 100 = worst) at the bad edge of each middle
# band, evenly spaced: perfect = "as good as the best of the window", omgwtf = "as bad as the
# worst of the window", each band in between covers 100/13 ~ 7.7 percentile points.
BAND_PERCENTILES: Mapping[str, float] = MappingProxyType(
    {band: 100.0 * i / (len(MIDDLE_BANDS) - 1) for i, band in enumerate(MIDDLE_BANDS)}
)


class Depth(Enum):
    """How many colours the terminal shows, decided once from the environment (colour_depth); the value is
    Rich's name for it (None: no colour at all)."""

    NONE = None  # NO_COLOR, TERM=dumb: no colour, only bold and the like
    STANDARD = "standard"  # the 16 ANSI colours, whose shades the terminal's own palette decides
    EIGHT_BIT = "256"
    TRUECOLOR = "truecolor"


_RICH_DEPTHS = {None: Depth.NONE, "standard": Depth.STANDARD, "windows": Depth.STANDARD, "256": Depth.EIGHT_BIT,
                "truecolor": Depth.TRUECOLOR}


def colour_depth(environ: Mapping[str, str]) -> Depth:
    """The terminal's colour depth: none with NO_COLOR (https://no-color.org; as Textual, any value) or a dumb
    TERM; else TEXTUAL_COLOR_SYSTEM where it names one; else what Rich (and so Textual) detects from
    COLORTERM and TERM (truecolor, 256 colours, or the 16 ANSI colours)."""
    if "NO_COLOR" in environ or environ.get("TERM", "").strip().lower() in ("dumb", "unknown"):
        return Depth.NONE
    forced = environ.get("TEXTUAL_COLOR_SYSTEM", "auto").strip().lower()
    if forced in _RICH_DEPTHS and forced != "windows":
        return _RICH_DEPTHS[forced]
    detected = Console(force_terminal=True, _environ=dict(environ)).color_system
    return _RICH_DEPTHS.get(detected, Depth.STANDARD)


@dataclass(frozen=True)
class Hue:
    """One colour at every depth: a hex (truecolour; Rich finds the nearest of 256) and the ANSI colour it
    is among 16, chosen so that a table of hues stays apart there too (nearest-colour downgrading would
    merge neighbours: the sixteen bands became four)."""

    hex: str
    ansi: str

    def at(self, depth: Depth) -> str | None:
        """The Rich colour at this depth (None: no colour)."""
        if depth is Depth.NONE:
            return None
        return self.ansi if depth is Depth.STANDARD else self.hex

    def style(self, depth: Depth, bold: bool = False) -> Style:
        return Style(color=self.at(depth), bold=bold or None)


# Blue -> purple -> red, best first. Mid-luminance hexes so they read on dark and light backgrounds
# (contrast >= 3.2:1 against white and >= 4.6:1 against black); among 16 colours, eight steps in order.
BAND_HUES: tuple[Hue, ...] = tuple(Hue(h, a) for h, a in (
    ("#1e90ff", "bright_cyan"), ("#3087fd", "bright_cyan"), ("#437efb", "cyan"), ("#5575f9", "bright_blue"),
    ("#686cf7", "bright_blue"), ("#7a63f5", "blue"), ("#8c5af3", "blue"), ("#9f51f1", "bright_magenta"),
    ("#ae49e2", "bright_magenta"), ("#b943c6", "magenta"), ("#c53daa", "magenta"), ("#d1378e", "red"),
    ("#dc3072", "red"), ("#e82a56", "bright_red"), ("#f3243a", "bright_red"), ("#ff1e1e", "bright_red"),
))
BAND_COLOURS: tuple[str, ...] = tuple(h.hex for h in BAND_HUES)

_RECORD_BANDS = frozenset({BANDS[0], BANDS[-1]})


def direction(name: str, overrides: Mapping[str, str] | None = None, registry: Registry = REGISTRY) -> str:
    """Return LOWER, HIGHER or NEUTRAL for a stat name (overrides first, then the registry)."""
    if overrides and name in overrides:
        return overrides[name]
    return registry.direction(name)


def section_of(name: str, registry: Registry = REGISTRY) -> str:
    """Return the grid section a stat belongs to."""
    return registry.section(name)


def label(name: str, registry: Registry = REGISTRY) -> str:
    """Return a short display label for a stat key (e.g. mem1_gate_short -> "m1 gate s")."""
    return registry.label(name)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _si(value: float) -> str:
    """Format |value| >= 1e6 with an M/G/T suffix and 4 significant figures."""
    for scale, suffix in ((1e12, "T"), (1e9, "G"), (1e6, "M")):
        if abs(value) >= scale:
            return f"{value / scale:.4g}{suffix}"
    return f"{value:,.0f}"


def format_value(name: str, value: Any, steady: bool = False, registry: Registry = REGISTRY) -> str:
    """Format a stat: 4 significant figures, thousands separators, M/G suffixes, lr as 3.0e-04.

    ``steady`` keeps trailing zeros (2.800, not 2.8), so values of one stat shown side by side
    (a band's thresholds, last and lowest) have one format.
    """
    if not _is_number(value):
        return str(value)
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    fmt = registry.fmt(name)
    if fmt == SCI:
        return f"{value:.1e}"
    if fmt == INT:
        return str(round(value))
    if fmt == PCT:
        return f"{value:.{3 if steady else 1}%}"
    if abs(value) >= 1e6:
        return _si(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    text = f"{value:#.4g}" if steady and value != 0 else f"{value:.4g}"
    return "0" if text == "-0" else text


def _percentile(ordered: list[float], q: float) -> float:
    """Linear-interpolated q-th percentile (0..100) of an already-ordered list."""
    pos = (len(ordered) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


class _StatHistory:
    """Recent finite values of one stat plus its all-time records."""

    __slots__ = ("best", "nonfinite", "sense", "values", "worst")

    def __init__(self, window: int, sense: str) -> None:
        self.values: deque[float] = deque(maxlen=window)
        self.best = math.nan
        self.worst = math.nan
        self.nonfinite = 0
        self.sense = sense

    def add(self, value: float) -> None:
        if not math.isfinite(value):
            self.nonfinite += 1  # kept out of history so one NaN can't poison the percentiles
            return
        self.values.append(value)
        if self.sense == NEUTRAL:
            return
        if math.isnan(self.best):
            self.best = self.worst = value
        elif self.better(value, self.best):
            self.best = value
        elif self.better(self.worst, value):
            self.worst = value

    def better(self, a: float, b: float) -> bool:
        """True when a is strictly better than b in this stat's direction."""
        return a < b if self.sense == LOWER else a > b

    def thresholds(self) -> dict[str, float]:
        """Band -> threshold: the worst value that still earns that band (records at the ends)."""
        if self.sense == NEUTRAL or not self.values:
            return {}
        ordered = sorted(self.values, reverse=self.sense == HIGHER)  # best first
        out = {BANDS[0]: self.best}
        for band, q in BAND_PERCENTILES.items():
            out[band] = _percentile(ordered, q)
        out[BANDS[-1]] = self.worst
        return out


class _BandTable(Mapping[str, Mapping[str, float]]):
    """Read-only, lazily computed view ``bands[stat][band] -> threshold``."""

    def __init__(self, owner: Calligraphist) -> None:
        self._owner = owner

    def __getitem__(self, name: str) -> Mapping[str, float]:
        return self._owner._thresholds(name)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._owner._history))

    def __len__(self) -> int:
        return len(self._owner._history)


class _Grid:
    """Sectioned stat grid that picks its column count from the width it is rendered at."""

    _GUTTER = 2  # spaces before each cell (and after the section name)
    _MAX_COLUMNS = 8

    def __init__(self, rows: list[tuple[str, list[tuple[str, Text]]]]) -> None:
        self.rows = rows
        self.head = max((len(section) for section, _ in rows), default=0)

    def _widths(self, per_row: int) -> list[tuple[int, int]]:
        """(label width, value width) of each cell column when laid out per_row cells a row."""
        widths = [(0, 0)] * per_row
        for _, group in self.rows:
            for i, (name, text) in enumerate(group):
                lab, val = widths[i % per_row]
                widths[i % per_row] = (max(lab, len(name)), max(val, text.cell_len))
        return widths

    def _total(self, per_row: int) -> int:
        return self.head + sum(self._GUTTER + lab + 1 + val for lab, val in self._widths(per_row))

    def _most_per_row(self) -> int:
        return max(1, min(self._MAX_COLUMNS, max((len(g) for _, g in self.rows), default=1)))

    def _shape(self, max_width: int) -> tuple[int, bool]:
        """(cells per row, whether section names sit on their own lines) at max_width."""
        per_row = self._most_per_row()
        while per_row > 1 and self._total(per_row) > max_width:
            per_row -= 1
        # Too narrow even for one cell beside the section names: put each section name on its own line.
        return per_row, per_row == 1 and self._total(1) > max_width

    def line_count(self, max_width: int) -> int:
        """How many lines the grid takes at max_width: all its height depends on."""
        if not self.rows:
            return 1
        per_row, stacked = self._shape(max_width)
        return sum(-(-len(group) // per_row) + stacked for _, group in self.rows)

    def _lines(self, max_width: int) -> list[Text]:
        per_row, stacked = self._shape(max_width)
        widths = self._widths(per_row)
        lines = []
        for section, group in self.rows:
            if stacked:
                lines.append(Text(section, style="bold"))
            for start in range(0, len(group), per_row):
                line = Text(no_wrap=True, overflow="ellipsis")
                if not stacked:
                    line.append((section if start == 0 else "").ljust(self.head), style="bold")
                # (the last row of a section may hold fewer cells than there are columns)
                for (name, value), (lab, val) in zip(group[start:start + per_row], widths, strict=False):
                    line.append(" " * self._GUTTER + name.ljust(lab) + " ", style="dim")
                    line.append(" " * (val - value.cell_len))
                    line.append_text(value)
                lines.append(line)
        return lines

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if not self.rows:
            yield Text("no stats yet", style="dim")
            return
        for line in self._lines(options.max_width):
            line.truncate(options.max_width, overflow="ellipsis")
            yield line

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        if not self.rows:
            return Measurement(12, 12)
        return Measurement(min(self._total(1), options.max_width),
                           min(self._total(self._most_per_row()), options.max_width))


class Calligraphist:
    """Bands each stat by percentiles of its own recent history and renders it in colour.

    Banding rules for ``band(name, value)``:
      * NaN/inf -> "omgwtf!" (for any stat, even neutral ones: something broke);
      * neutral stats -> None (shown plain, no history-based colour, no records);
      * fewer than ``min_history`` finite values seen, or a stat that never varied -> "average";
      * at least as good as the best ever -> "superPerfect"; at least as bad as the worst ever ->
        "omgwtf!" (the value just observed usually *is* the record, so ties count);
      * otherwise the best middle band whose threshold the value reaches (see BAND_PERCENTILES);
        values worse than everything in the window but not a record land in "omgwtf".
    Not thread-safe: one consumer (the UI or headless printer) owns an instance.
    """

    def __init__(self, window: int = 100, min_history: int = 5,
                 directions: Mapping[str, str] | None = None, registry: Registry = REGISTRY,
                 depth: Depth = Depth.TRUECOLOR) -> None:
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.registry = registry
        self.depth = depth  # the terminal's colours (colour_depth): every colour this draws is picked for it
        self.window = window
        self.min_history = min_history
        self._overrides = dict(directions or {})
        self._history: dict[str, _StatHistory] = {}
        self._cache: dict[str, dict[str, float]] = {}
        self.bands: Mapping[str, Mapping[str, float]] = _BandTable(self)

    # -- recording ---------------------------------------------------------------------------

    def direction(self, name: str) -> str:
        """Return LOWER, HIGHER or NEUTRAL for a stat (constructor overrides first)."""
        return direction(name, self._overrides, self.registry)

    def observe(self, stats: Mapping[str, Any]) -> None:
        """Append one step's values to each stat's history (O(1) per stat)."""
        for name, value in stats.items():
            if not _is_number(value):
                continue
            hist = self._history.get(name)
            if hist is None:
                hist = self._history[name] = _StatHistory(self.window, self.direction(name))
            hist.add(float(value))
            self._cache.pop(name, None)

    def records(self, name: str) -> tuple[float, float] | None:
        """(best ever, worst ever) for a directional stat with history, else None."""
        hist = self._history.get(name)
        if hist is None or hist.sense == NEUTRAL or math.isnan(hist.best):
            return None
        return hist.best, hist.worst

    def nonfinite_count(self, name: str) -> int:
        """How many NaN/inf values a stat has reported (they are kept out of its history)."""
        hist = self._history.get(name)
        return hist.nonfinite if hist else 0

    def history(self, name: str) -> tuple[float, ...]:
        """The finite values in a stat's current window, oldest first."""
        hist = self._history.get(name)
        return tuple(hist.values) if hist else ()

    def _thresholds(self, name: str) -> Mapping[str, float]:
        if name not in self._history:
            raise KeyError(name)
        cached = self._cache.get(name)
        if cached is None:
            hist = self._history[name]
            # Too little history (or a stat that never varied) is banded "average" whatever its value:
            # show no thresholds then, rather than ones the label does not follow.
            settled = len(hist.values) >= self.min_history and hist.best != hist.worst
            cached = self._cache[name] = hist.thresholds() if settled else {}
        return MappingProxyType(cached)

    # -- banding -----------------------------------------------------------------------------

    def band(self, name: str, value: Any) -> str | None:
        """Band name for a value of a stat (see the class docstring for the rules)."""
        if not _is_number(value):
            return None
        value = float(value)
        if not math.isfinite(value):
            return BANDS[-1]
        hist = self._history.get(name)
        sense = hist.sense if hist else self.direction(name)
        if sense == NEUTRAL:
            return None
        if hist is None or len(hist.values) < self.min_history or hist.best == hist.worst:
            return "average"
        if not hist.better(hist.best, value):
            return BANDS[0]
        if not hist.better(value, hist.worst):
            return BANDS[-1]
        thresholds = self._thresholds(name)
        for band in MIDDLE_BANDS:
            if not hist.better(thresholds[band], value):
                return band
        return MIDDLE_BANDS[-1]

    def style(self, band: str | None) -> Style:
        """Rich style for a band at this depth; records are bold, None (neutral) is plain."""
        if band is None:
            return Style()
        return BAND_HUES[BANDS.index(band)].style(self.depth, bold=band in _RECORD_BANDS)

    # -- rendering ---------------------------------------------------------------------------

    def text(self, name: str, value: Any) -> Text:
        """The formatted value coloured by its band."""
        return Text(format_value(name, value, registry=self.registry), style=self.style(self.band(name, value)))

    def grid(self, stats: Mapping[str, Any]) -> _Grid:
        """A renderable grid of label/value cells grouped by section; fits any width >= ~30."""
        reg = self.registry
        groups: dict[str, list[str]] = {}
        for name in sorted(stats, key=reg.order):
            groups.setdefault(reg.section(name), []).append(name)
        rows = [(section, [(reg.label(n), self.text(n, stats[n])) for n in groups[section]])
                for section in SECTIONS if section in groups]
        return _Grid(rows)

    def summary(self, stats: Mapping[str, Any]) -> Text:
        """One line for the headless printer: ``step 1200 | loss 3.412 | ... | 4,210 tok/s``."""
        line = Text()
        for name in (n for n in self.registry.summary if n in stats):
            if line.plain:
                line.append(" | ", style="dim")  # Text.join would spread its style over the line
            line.append_text(self.brief(name, stats[name]))
        return line

    def brief(self, name: str, value: Any) -> Text:
        """A stat in a one-line summary: "label value", or "value unit" for a stat with a unit."""
        spec = self.registry.spec(name)
        if spec is not None and spec.unit:
            return Text.assemble(self.text(name, value), f" {spec.unit}")
        return Text.assemble(f"{self.registry.label(name, brief=True)} ", self.text(name, value))

    def legend(self) -> Text:
        """The 16 band names in their colours, best first (wraps to two lines at 80 columns)."""
        return Text(" ").join(Text(band, style=self.style(band)) for band in BANDS)
