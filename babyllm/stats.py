"""The stat registry: every stat the Tutor publishes, described once (section, direction, label, format, order).

`STATS` is the one table. Each row is a StatSpec whose name is either exact ("loss") or a pattern:
`{i}` stands for a window's index ("window_weight_{i}", one stat per entry of the ModelConfig list
named by `per`), `{name}` for any text (a fallback row for a family, e.g. "t_{name}" for any timed
section). The table's order is the display order; exact rows win over patterns, and the first matching
pattern wins. A new stat is one row here; the Calligraphist, the panes, the fake Tutor and the headless
printer read everything else from the registry. Light: no torch, so the cockpit can import it cheaply.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

# Directions: which way is better.
LOWER = "lower"
HIGHER = "higher"
NEUTRAL = "neutral"

# How a stat changes over a run: every step; only at a validation (or never), repeated on every step in
# between (a History keeps only its changes, so its points are the validations themselves); or only
# growing, a counter (thinned to each bucket's last value, not a mean half a bucket behind).
PER_STEP = "per step"
STEPWISE = "stepwise"
CUMULATIVE = "cumulative"

# Formats: 4 significant figures (thousands separators, M/G/T suffixes), a whole number, or 3.0e-04.
SIG = "sig"
INT = "int"
SCI = "sci"
PCT = "pct"  # a fraction shown as a percentage (42.3%)

# Sections of the stats grid, in order; a stat no row describes goes to "other".
SECTIONS: tuple[str, ...] = ("loss", "learning", "windows", "memory", "logits", "neurons", "timing", "other")
OTHER = SECTIONS[-1]

# Names of the families that code builds from an index or a part (the model's readings, the Tutor's
# weight norms, the windows pane).
WINDOW_WEIGHT = "window_weight_{i}"
WINDOW_SIZE = "window_size_{i}"
NORM = "norm_{part}"  # the L2 norm of a part's weights

# BabyLLM's parts in model order (tests/test_stats.py checks its children): each has a weight-norm stat.
PARTS: tuple[str, ...] = ("embed", "neurons", "windows", "memory1", "memory2", "logits")
# The two memory layers' reading prefixes (mem1_..., mem2_...).
MEMORIES: tuple[str, ...] = ("mem1", "mem2")
# The sources a memory's per-neuron gates mix, in the order of its gates' columns (model.network.Memory),
# each with its short label; the first two are also its two leaky averages, each with a learned decay.
SOURCE_LABELS: Mapping[str, str] = MappingProxyType({"short": "s", "long": "l", "input": "in", "proj": "proj"})
MEMORY_SOURCES: tuple[str, ...] = tuple(SOURCE_LABELS)
MEMORY_DECAYS: tuple[str, ...] = MEMORY_SOURCES[:2]
# A memory's readings: each decay, each source's mean gate (also the key of that gate's histogram in a
# Snapshot's gate_hist: GATE_BINS neuron counts over [0, 1]) and, for Memory 2, its mix.
MEMORY_DECAY = "{memory}_decay_{decay}"
MEMORY_GATE = "{memory}_gate_{source}"
MEMORY_MIX = "{memory}_mix"
GATE_BINS = 10
TIMING_PREFIX = "t_"  # the Counsellor's sections are published as t_<section>

_PLACEHOLDER = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class StatSpec:
    """One row of the registry."""

    name: str  # exact, or a pattern with {i} (a window index) or {name} (any text)
    section: str
    direction: str = NEUTRAL
    label: str | None = None  # display label (may use the pattern's placeholders); None: the name, _ as spaces
    fmt: str = SIG
    per: str | None = None  # with {i}: the ModelConfig list with one entry per index (e.g. "windows")
    brief: str | None = None  # the label in one-line summaries, where it differs from `label`
    unit: str = ""  # one-line summaries show "value unit" instead of "label value"
    optional: bool = False  # known, but not published by every Tutor step (so not in Registry.names)
    changes: str = PER_STEP  # PER_STEP, STEPWISE or CUMULATIVE
    tensorboard: bool = False  # logged to TensorBoard (babyllm.run.tboard): every step, or where it changes
    curve: bool = False  # a loss curve is drawn from it (babyllm.run.curves: `babyllm plot`, the overlay)

    @property
    def is_pattern(self) -> bool:
        return "{" in self.name

    @property
    def is_fallback(self) -> bool:
        return "{name}" in self.name


def _memory_rows() -> tuple[StatSpec, ...]:
    """Each memory's decays, then its gates' means, labelled "m1 decay s", "m1 gate in", ..."""
    return tuple(row for m in MEMORIES for row in (
        *(StatSpec(MEMORY_DECAY.format(memory=m, decay=d), "memory", label=f"m{m[3:]} decay {SOURCE_LABELS[d]}")
          for d in MEMORY_DECAYS),
        *(StatSpec(MEMORY_GATE.format(memory=m, source=src), "memory", label=f"m{m[3:]} gate {SOURCE_LABELS[src]}")
          for src in MEMORY_SOURCES)))


STATS: tuple[StatSpec, ...] = (
    StatSpec("loss", "loss", LOWER, tensorboard=True, curve=True),
    StatSpec("loss_100", "loss", LOWER, "loss100"),
    StatSpec("loss_1000", "loss", LOWER, "loss1k"),
    StatSpec("val_loss", "loss", LOWER, "val", changes=STEPWISE, tensorboard=True, curve=True),
    StatSpec("val_bpb", "loss", LOWER, "val bpb", brief="bpb", changes=STEPWISE, tensorboard=True, curve=True),
    StatSpec("unigram_bpb", "loss", NEUTRAL, "unigram", changes=STEPWISE, tensorboard=True),  # (a constant)
    StatSpec("perplexity", "loss", LOWER, "ppl", changes=STEPWISE),  # (of the train loss until a validation)
    StatSpec("accuracy", "loss", HIGHER, "acc"),
    StatSpec("step", "learning", fmt=INT),
    StatSpec("tokens", "learning", changes=CUMULATIVE, curve=True),
    StatSpec("epoch", "learning", optional=True),
    StatSpec("lr", "learning", fmt=SCI, tensorboard=True),
    StatSpec("grad_norm", "learning", label="grad"),
    StatSpec(WINDOW_WEIGHT, "windows", label="weight {i}", per="windows"),
    StatSpec(WINDOW_SIZE, "windows", label="size {i}", per="windows"),
    StatSpec("window_{name}", "windows"),
    *_memory_rows(),
    StatSpec(MEMORY_MIX.format(memory=MEMORIES[1]), "memory", label="m2 mix"),
    *(StatSpec(f"{m}_{{name}}", "memory", label=f"m{m[3:]} {{name}}") for m in MEMORIES),
    StatSpec("entropy", "logits"),
    StatSpec("logit_{name}", "logits", label="logit {name}"),
    StatSpec("act_mean", "neurons"),
    StatSpec("act_std", "neurons"),
    StatSpec("act_inactive", "neurons", LOWER, "inactive"),
    StatSpec("act_{name}", "neurons"),
    *(StatSpec(NORM.format(part=part), "neurons", label=f"|{part}|") for part in PARTS),
    StatSpec("norm_{name}", "neurons", label="|{name}|"),
    StatSpec("tokens_per_s", "timing", HIGHER, "tok/s", unit="tok/s"),
    StatSpec("step_ms", "timing", LOWER, "step ms"),
    StatSpec("mfu", "timing", HIGHER, "MFU", fmt=PCT),  # model FLOPs utilisation (babyllm.model.peaks)
    *(StatSpec(f"{TIMING_PREFIX}{section}", "timing", LOWER, section)
      for section in ("data", "forward", "backward", "optimizer", "stats")),
    StatSpec(TIMING_PREFIX + "{name}", "timing", LOWER, "{name}"),
)

# The headless printer's lines: the periodic one-liner and the closing line, in order.
SUMMARY: tuple[str, ...] = ("step", "loss", "val_loss", "val_bpb", "accuracy", "lr", "grad_norm", "tokens_per_s")
CLOSING: tuple[str, ...] = ("loss_100", "val_loss", "tokens_per_s")


def _compile(pattern: str) -> re.Pattern[str]:
    parts = _PLACEHOLDER.split(pattern)  # text, placeholder, text, ...
    regex = "".join(re.escape(p) if k % 2 == 0 else (r"(?P<i>\d+)" if p == "i" else f"(?P<{p}>.+)")
                    for k, p in enumerate(parts))
    return re.compile(regex + r"\Z")


def _natural(text: str) -> tuple[Any, ...]:
    """Digit runs compared as numbers (window_size_10 after window_size_9)."""
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", text))


class Registry:
    """Looks stats up in a table of StatSpecs. Immutable: `extended` returns a new registry."""

    def __init__(self, specs: Iterable[StatSpec] = STATS, summary: tuple[str, ...] = SUMMARY,
                 closing: tuple[str, ...] = CLOSING) -> None:
        self.specs: tuple[StatSpec, ...] = tuple(specs)
        self.summary = summary
        self.closing = closing
        for spec in self.specs:
            if spec.section not in SECTIONS:
                raise ValueError(f"stat {spec.name!r}: unknown section {spec.section!r}")
        self._exact = {s.name: (k, s) for k, s in enumerate(self.specs) if not s.is_pattern}
        self._patterns = [(k, s, _compile(s.name)) for k, s in enumerate(self.specs) if s.is_pattern]

    def extended(self, *specs: StatSpec) -> Registry:
        """This registry with more rows (each placed at the end of its section)."""
        rows = list(self.specs)
        for spec in specs:  # after the section's last row that is not a fallback (fallbacks match last)
            last = max((k for k, s in enumerate(rows) if s.section == spec.section and not s.is_fallback),
                       default=len(rows) - 1)
            rows.insert(last + 1, spec)
        return Registry(rows, self.summary, self.closing)

    # -- one stat -------------------------------------------------------------------------------

    def lookup(self, name: str) -> tuple[int, StatSpec, dict[str, str]] | None:
        """(row number, row, the placeholders' values) of the row describing a stat, or None."""
        hit = self._exact.get(name)
        if hit is not None:
            return hit[0], hit[1], {}
        for k, spec, regex in self._patterns:
            m = regex.match(name)
            if m:
                return k, spec, m.groupdict()
        return None

    def spec(self, name: str) -> StatSpec | None:
        hit = self.lookup(name)
        return hit[1] if hit else None

    def section(self, name: str) -> str:
        spec = self.spec(name)
        return spec.section if spec else OTHER

    def direction(self, name: str) -> str:
        spec = self.spec(name)
        return spec.direction if spec else NEUTRAL

    def fmt(self, name: str) -> str:
        spec = self.spec(name)
        return spec.fmt if spec else SIG

    def label(self, name: str, brief: bool = False) -> str:
        """The display label (e.g. mem1_gate_short -> "m1 gate s"); `brief`: the one-line summaries' label."""
        hit = self.lookup(name)
        if hit is None:
            return name.replace("_", " ")
        _, spec, values = hit
        text = (spec.brief if brief and spec.brief is not None else spec.label) or spec.name
        return text.format(**values).replace("_", " ")

    def order(self, name: str) -> tuple[Any, ...]:
        """Sort key: section, then row, then index (unknown stats last, naturally sorted)."""
        hit = self.lookup(name)
        row = hit[0] if hit else len(self.specs)
        return (SECTIONS.index(self.section(name)), row, _natural(name))

    # -- families --------------------------------------------------------------------------------

    def key(self, pattern: str, i: int) -> str:
        """The name of entry i of an indexed family ("window_weight_{i}", 3 -> "window_weight_3")."""
        return pattern.format(i=i)

    def indices(self, pattern: str, stats: Iterable[str]) -> list[int]:
        """The indices of an indexed family present among these stat names, ascending."""
        regex = _compile(pattern)
        return sorted(int(m.group("i")) for m in map(regex.match, stats) if m)

    def names(self, model: Any) -> list[str]:
        """Every stat a Tutor step publishes for a model config (the {i} rows expanded from its lists)."""
        out: list[str] = []
        for spec in self.specs:
            if spec.optional or spec.is_fallback:
                continue
            if spec.per is None:
                out.append(spec.name)
            else:
                out += [self.key(spec.name, i) for i in range(len(getattr(model, spec.per)))]
        return out

    def where(self, keep: Callable[[StatSpec], bool]) -> tuple[str, ...]:
        """The exact rows that `keep` picks, by name in table order: a flag's list (e.g. the stepwise stats)."""
        return tuple(s.name for s in self.specs if not s.is_pattern and keep(s))

    def timings(self) -> tuple[str, ...]:
        """The Counsellor's sections the Tutor always publishes (t_<section>), in training order."""
        return tuple(s.name for s in self.specs
                     if s.section == "timing" and s.name.startswith(TIMING_PREFIX) and not s.is_pattern)


REGISTRY = Registry()
