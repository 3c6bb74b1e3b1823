"""Typed configuration: TOML files (the shipped ones in babyllm/configs/) plus `--set section.key=value` overrides."""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import shlex
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal

from babyllm.errors import ConfigError
from babyllm.paths import CONFIGS


@dataclass
class ModelConfig:
    """Sizes of babyLLM's parts (seed defaults)."""

    vocab: int = 4200
    embed: int = 1024
    neurons: int = 10_000
    context: int = 256
    windows: list[float] = field(default_factory=lambda: [2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0])
    memory_rank: int = 64
    window_groups: int = 1  # groups of neurons, each with its own window weightings (must divide neurons)
    dropout: float = 0.0  # dropout on the neuron activations and on Logits' input, in training steps only
    memory_mlp: bool = False  # the memories' projected path: a GELU bottleneck over their input, not linear on L
    token_shift: bool = False  # the Neurons see each token blended, per channel and by the data, with the one before it
    activation: str = "gelu"  # the Neurons' nonlinearity: "gelu" or "relu2" (ReLU squared)


@dataclass
class DataConfig:
    """Where the corpus is and how it is split."""

    corpus: str = ""  # "" = the corpus shipped in babyllm/corpora/
    val_fraction: float = 0.1
    cache_dir: str = ""  # "" = $BABYLLM_CACHE or ~/.cache/babyllm
    text_field: str = "text"  # the field (.jsonl) or column (.csv, .parquet) holding each row's text


AUTO: Final = "auto"  # a value some keys take (AUTO_KEYS): the run decides at start-up, on its device
Auto = Literal["auto"]


@dataclass
class TrainConfig:
    """The Tutor's optimisation and bookkeeping settings."""

    batch: int | Auto = 16  # per rank and micro-batch; "auto": fill the GPU (within what the corpus feeds)
    accumulate: int = 1  # micro-batches summed into one optimizer step (global batch: batch x accumulate x ranks)
    steps: int = 0  # 0 = train until stopped
    minutes: float = 0.0  # training-clock budget (0 = none): stop after it; the LR schedule then runs on this clock
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup: int = 200
    decay_steps: int = 20_000  # cosine from lr to min_lr over this many steps (or `steps` if set)
    weight_decay: float = 0.1
    optimizer: str = "adamw"  # "adamw", or "muon": Muon for the hidden weight matrices, AdamW for the rest
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # 0 = off
    device: str = "auto"
    dtype: str = "auto"  # fp32, bf16, or auto: bf16 where the device computes it natively
    tf32: bool = True  # fp32 on CUDA: matmuls on TF32 tensor cores (false: exact fp32, for comparisons)
    compile: bool | Auto = AUTO  # torch.compile the training step; auto: on CUDA (slower on CPU, measured)
    seed: int = 1337
    eval_every: int = 250
    eval_batches: int = 4
    sample_every: int = 100
    save_every: int = 1000  # steps between rolling saves; 0 = only when asked and on exit
    keep: int = 3  # rolling saves kept (plus best and the step-numbered checkpoints)


@dataclass
class StatsConfig:
    """How stats are banded and printed."""

    window: int = 100  # history length the Calligraphist bands each stat against
    print_every: float = 5.0  # seconds between headless lines


@dataclass
class ChatConfig:
    """Infer2's default sampling settings."""

    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    repetition_penalty: float = 1.1
    penalty_window: int = 64
    max_tokens: int = 200


HANGUP_CHOICES = ("detach", "stop")
ALERT_ACTIONS = ("none", "pause", "stop")


@dataclass
class TuiConfig:
    """The cockpit's behaviour (babyllm-tui)."""

    on_hangup: str = "detach"  # a lost terminal (SIGHUP): detach (train on headless) or stop (save and stop)


@dataclass
class AlertsConfig:
    """When babyllm.school.alerts raises an alert (a threshold of 0 turns its rule off) and what an alert does."""

    divergence_pct: float = 50.0  # the mean loss of the last divergence_steps steps this % above its lowest
    divergence_steps: int = 100
    plateau_evals: int = 10  # no new best validation loss for this many evaluations
    overfit_gap: float = 0.0  # validation minus training loss above this (nats) and growing ...
    overfit_evals: int = 3  # ... over this many evaluations in a row
    stall_seconds: float = 300.0  # no training step for this long while running
    throughput_drop: float = 0.5  # tokens/s (median of the last throughput_steps) below this fraction of ...
    throughput_steps: int = 20  # ... its running median (after 5 x throughput_steps steps of warm-up)
    action: str = "none"  # what an alert also does: none, pause (until resumed) or stop (save and end the run)
    command: str = ""  # run with the alert text as its last argument and in $BABYLLM_ALERT ("" = none)
    command_timeout: float = 30.0  # seconds before the command is killed


@dataclass
class LogConfig:
    """What the run writes besides metrics.jsonl and events.jsonl."""

    tensorboard: bool = False  # TensorBoard event files in runs/NAME/tensorboard/ (babyllm.run.tboard)
    wandb: bool = False  # Weights & Biases (the [wandb] extra; babyllm.run.wandb_mirror)
    trackio: bool = False  # Trackio, Hugging Face's local tracker (the [trackio] extra; babyllm.run.trackio_mirror)
    project: str = "babyllm"  # the W&B / Trackio project the runs are logged to


@dataclass
class Config:
    """Everything a run needs; `name` is the config's file stem."""

    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    stats: StatsConfig = field(default_factory=StatsConfig)
    chat: ChatConfig = field(default_factory=ChatConfig)
    tui: TuiConfig = field(default_factory=TuiConfig)
    alerts: AlertsConfig = field(default_factory=AlertsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    name: str = "default"

    @property
    def batch_size(self) -> int:
        """train.batch once settled (a run settles "auto" when it starts: babyllm.school.batching)."""
        if not isinstance(self.train.batch, int):
            raise ConfigError("train.batch = 'auto' is settled when training starts (babyllm.school.batching)")
        return self.train.batch

    def to_dict(self) -> dict[str, Any]:
        """Plain data (for checkpoints and `--json`), sections only."""
        return {s: dataclasses.asdict(getattr(self, s)) for s in SECTIONS}


SECTIONS = ("model", "data", "train", "stats", "chat", "tui", "alerts", "log")
ACTIVATIONS = ("gelu", "relu2")  # model.activation (babyllm.model.network.Neurons)
OPTIMIZERS = ("adamw", "muon")  # train.optimizer (babyllm.school.optimizers)
AUTO_KEYS: dict[tuple[str, str], type] = {("train", "batch"): int, ("train", "compile"): bool}  # and their type
DEVICES = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")
PROJECT = re.compile(r"^[A-Za-z0-9._-]{1,128}$")


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A config name ("cpu") means the shipped babyllm/configs/cpu.toml; anything else is a path. A path to a
    shipped config as older docs wrote it ("configs/cpu.toml", "babyllm/configs/cpu.toml") works from any folder."""
    p = Path(name_or_path).expanduser()
    if p.suffix != ".toml" and p.parent == Path(".") and (CONFIGS / f"{p}.toml").exists():
        return CONFIGS / f"{p}.toml"
    if p.exists():
        return p
    if not p.is_absolute() and p.parent.as_posix() in ("configs", "babyllm/configs") and (CONFIGS / p.name).exists():
        return CONFIGS / p.name
    known = ", ".join(sorted(q.stem for q in CONFIGS.glob("*.toml")))
    raise ConfigError(f"{p}: config file not found (shipped configs: {known})")


def load_config(path: str | Path | None = None, overrides: Iterable[str] = ()) -> Config:
    """Load a TOML config (default: the shipped default.toml), apply overrides, validate."""
    src = resolve_config_path(path if path is not None else "default")
    try:
        raw = tomllib.loads(src.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{src}: invalid TOML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{src}: cannot read config: {e}") from None
    cfg = Config(name=src.stem)
    _apply_table(cfg, raw, where=str(src), base=src.parent)
    overrides = list(overrides)
    for item in overrides:
        apply_override(cfg, item)
    validate(cfg, where=f"{src} with --set {' '.join(overrides)}" if overrides else str(src))
    return cfg


def _apply_table(cfg: Config, raw: dict[str, Any], where: str, base: Path) -> None:
    for section, table in raw.items():
        if section not in SECTIONS:
            raise ConfigError(f"{where}: unknown section [{section}]{_suggest(section, SECTIONS)}")
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: '{section}' must be a [{section}] table")
        for key, value in table.items():
            _set(cfg, section, key, value, where)
    corpus = cfg.data.corpus
    if corpus and not Path(corpus).expanduser().is_absolute():
        # Paths inside a config file are relative to that file, not to the shell's directory.
        cfg.data.corpus = str((base / corpus).resolve())


def full_key(name: str, where: str) -> str:
    """A config key from what someone typed: "train.lr" as it is, a bare "lr" or "top_k" as the one section's
    key of that name (--set, `ctl set` and the cockpit's palette all resolve names here); ConfigError names
    a bare name no section (or more than one) has. A dotted key is checked where it is set."""
    name = name.strip()
    if "." in name:
        return name
    every = [f"{s}.{f.name}" for s in SECTIONS for f in dataclasses.fields(getattr(Config(), s))]
    names = [k.partition(".")[2] for k in every]
    found = [k for k, n in zip(every, names, strict=True) if n == name]
    if len(found) == 1:
        return found[0]
    if found:
        raise ConfigError(f"{where}: '{name}' is in several sections ({', '.join(found)}): name one")
    close = difflib.get_close_matches(name, names, n=1)
    guess = f" (did you mean '{every[names.index(close[0])]}'?)" if close else ""
    raise ConfigError(f"{where}: no config key '{name}'{guess}; keys are section.key, e.g. train.lr")


def parse_value(text: str) -> Any:
    """A value as --set reads it: TOML, else the bare word as a string (cuda, bf16)."""
    try:
        return tomllib.loads(f"v = {text.strip()}")["v"]
    except tomllib.TOMLDecodeError:
        return text.strip()


def apply_override(cfg: Config, item: str) -> None:
    """Apply one `section.key=value` (or `key=value`, see full_key) override; the value as parse_value reads it."""
    where = f"--set {item}"
    key_path, sep, text = item.partition("=")
    if not sep or not key_path.strip():
        raise ConfigError(f"{where}: expected section.key=value, e.g. --set model.neurons=512")
    section, _, key = full_key(key_path, where).partition(".")
    if not key:
        raise ConfigError(f"{where}: expected section.key=value, e.g. --set model.neurons=512")
    if section not in SECTIONS:
        raise ConfigError(f"{where}: unknown section '{section}'{_suggest(section, SECTIONS)}")
    _set(cfg, section, key, parse_value(text), where)


def _set(cfg: Config, section: str, key: str, value: Any, where: str) -> None:
    obj = getattr(cfg, section)
    if (section, key) == ("alerts", "pause"):  # the key before alerts.action (saved configs still have it)
        if _coerce(value, bool, f"{where}: alerts.pause"):
            obj.action = "pause"
        return
    fields = {f.name: f for f in dataclasses.fields(obj)}
    if key not in fields:
        raise ConfigError(f"{where}: unknown key '{section}.{key}'{_suggest(key, fields)}")
    label = f"{where}: {section}.{key}"
    auto = AUTO_KEYS.get((section, key))
    if auto is not None:  # "auto" or a value of the key's own type
        try:
            setattr(obj, key, AUTO if value == AUTO else _coerce(value, auto, label))
        except ConfigError:
            raise ConfigError(f"{label} = {value!r}: expected \"auto\" or {auto.__name__}") from None
        return
    setattr(obj, key, _coerce(value, type(getattr(obj, key)), label))


def _coerce(value: Any, want: type, label: str) -> Any:
    """Check a TOML value against the field's type; ints are accepted where floats are wanted."""
    if want is bool:
        if isinstance(value, bool):
            return value
    elif want is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif want is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            try:
                return float(value)
            except OverflowError:  # a whole number beyond any float
                raise ConfigError(f"{label} = a {len(str(abs(value)))}-digit number: too large") from None
    elif want is str:
        if isinstance(value, str):
            return value
    elif want is list:
        if isinstance(value, list) and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        ):
            return [_coerce(v, float, label) for v in value]
        raise ConfigError(f"{label} = {value!r}: expected a list of numbers")
    raise ConfigError(f"{label} = {value!r}: expected {want.__name__}, got {type(value).__name__}")


def _suggest(word: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else f" (known: {', '.join(options)})"


MAX_STEPS = 10**12  # steps, step counts and intervals: far beyond any run, well inside a float's exact integers
MAX_SEED = 2**63 - 1  # torch's generators take 64 bits


@dataclass(frozen=True)
class Range:
    """The sane values of one numeric setting: lo..hi (whole numbers) or an interval (floats); `note` says
    what a special value means ("0 = off")."""

    lo: float
    hi: float
    note: str = ""
    open_lo: bool = False  # lo itself is not allowed (floats)
    open_hi: bool = False

    def holds(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False  # (a whole number is compared exactly, however large)
        above = value > self.lo if self.open_lo else value >= self.lo
        below = value < self.hi if self.open_hi else value <= self.hi
        return above and below

    def text(self, whole: bool) -> str:
        if whole:
            return f"a whole number {int(self.lo)}..{int(self.hi)}"
        return f"in {'(' if self.open_lo else '['}{self.lo:g}, {self.hi:g}{')' if self.open_hi else ']'}"


_ANY_STEP = Range(0, MAX_STEPS)
_SOME_STEPS = Range(1, MAX_STEPS)

# The ONE table of every numeric setting's sane range, checked at start, for --set, for a save's config and for
# live changes (babyllm.live): a value outside it (inf, nan, 1e308, a huge integer) is refused before it can
# allocate, overflow or wreck the weights. Relations between keys (min_lr <= lr, ...) are _relations'.
RANGES: dict[str, Range] = {
    "model.vocab": Range(260, 65_535, "256 bytes + specials"),
    "model.embed": Range(1, 1 << 16),
    "model.neurons": Range(1, 1 << 20),
    "model.context": Range(2, 1 << 16),
    "model.memory_rank": Range(1, 1 << 20),
    "model.window_groups": Range(1, 1 << 20),
    "model.dropout": Range(0.0, 1.0, "0 = off", open_hi=True),
    "data.val_fraction": Range(0.0, 0.5, open_lo=True),
    "train.batch": Range(1, 1 << 20),
    "train.accumulate": Range(1, 1 << 16, "micro-batches a step"),
    "train.steps": Range(0, MAX_STEPS, "0 = until stopped"),
    "train.minutes": Range(0.0, 1e6, "0 = no time budget", open_hi=True),
    "train.lr": Range(0.0, 1.0, open_lo=True),
    "train.min_lr": Range(0.0, 1.0),
    "train.warmup": _ANY_STEP,
    "train.decay_steps": _SOME_STEPS,
    "train.weight_decay": Range(0.0, 100.0, "0 = off"),
    "train.beta1": Range(0.0, 1.0, open_hi=True),
    "train.beta2": Range(0.0, 1.0, open_hi=True),
    "train.grad_clip": Range(0.0, 1e6, "0 = off"),
    "train.seed": Range(0, MAX_SEED),
    "train.eval_every": _SOME_STEPS,
    "train.eval_batches": Range(1, 10_000),
    "train.sample_every": _SOME_STEPS,
    "train.save_every": Range(0, MAX_STEPS, "0 = on demand only"),
    "train.keep": Range(1, 10_000),
    "stats.window": Range(2, 1_000_000),
    "stats.print_every": Range(0.0, 86_400.0, open_lo=True),
    "chat.temperature": Range(0.0, 100.0, "0 = greedy"),
    "chat.top_k": Range(0, 1 << 20, "0 = off"),
    "chat.top_p": Range(0.0, 1.0, open_lo=True),
    "chat.repetition_penalty": Range(1.0, 100.0, "1 = off"),
    "chat.penalty_window": Range(0, 1 << 20, "0 = off"),
    "chat.max_tokens": Range(1, 1 << 20),
    "alerts.divergence_pct": Range(0.0, 1e6, "0 = off"),
    "alerts.divergence_steps": Range(2, 1_000_000),
    "alerts.plateau_evals": Range(0, 1_000_000, "0 = off"),
    "alerts.overfit_gap": Range(0.0, 1e3, "0 = off"),
    "alerts.overfit_evals": Range(1, 1_000_000),
    "alerts.stall_seconds": Range(0.0, 1e7, "0 = off", open_hi=True),
    "alerts.throughput_drop": Range(0.0, 1.0, "a fraction of the median; 0 = off", open_hi=True),
    "alerts.throughput_steps": Range(1, 1_000_000),
    "alerts.command_timeout": Range(0.0, 1e6, "seconds", open_lo=True, open_hi=True),
}
MAX_WINDOWS = 64  # model.windows: how many window sizes
_WHOLE_FALLBACK = Range(-MAX_SEED, MAX_SEED)  # a whole number no table entry covers: at least one torch can hold
_FINITE = Range(-math.inf, math.inf)  # a float no table entry covers: finite


def numeric_settings(cfg: Config) -> dict[str, int | float]:
    """Every numeric setting (not bools, texts or lists) as "section.key" -> value."""
    return {f"{s}.{k}": v for s in SECTIONS for k, v in dataclasses.asdict(getattr(cfg, s)).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


def range_problem(key: str, value: int | float) -> str | None:
    """What is wrong with a numeric setting's value (not finite, or outside RANGES), or None."""
    whole = isinstance(value, int)
    r = RANGES.get(key, _WHOLE_FALLBACK if whole else _FINITE)
    if r.holds(value):
        return None
    note = f" ({r.note})" if r.note else ""
    shown = f"a {len(str(abs(value)))}-digit number" if whole and abs(value) > MAX_SEED else str(value)
    return f"{key} = {shown}: must be {r.text(whole) if math.isfinite(r.hi) else 'a finite number'}{note}"


def validate(cfg: Config, where: str = "config") -> None:
    """Every numeric setting within RANGES, then the relations between settings; each failure is one line
    naming the key, the value and the fix."""
    for key, value in numeric_settings(cfg).items():
        problem = range_problem(key, value)
        if problem:
            raise ConfigError(f"{where}: {problem}")
    for ok, message in _relations(cfg) + _alerts_checks(cfg.alerts):
        if not ok:
            raise ConfigError(f"{where}: {message}")


def _relations(cfg: Config) -> list[tuple[bool, str]]:
    """The checks that are not one key's range: relations between keys, choices among words, lists."""
    m, d, t, u = cfg.model, cfg.data, cfg.train, cfg.tui
    checks: list[tuple[bool, str]] = [
        (1 <= len(m.windows) <= MAX_WINDOWS,
         f"model.windows has {len(m.windows)} sizes: give 1..{MAX_WINDOWS} window sizes"),
        (m.neurons % m.window_groups == 0,
         f"model.window_groups = {m.window_groups}: must divide model.neurons ({m.neurons})"),
        (m.memory_rank <= m.neurons,
         f"model.memory_rank = {m.memory_rank}: must be 1..model.neurons ({m.neurons})"),
        (d.text_field.strip() != "", f"data.text_field = {d.text_field!r}: name the field (.jsonl) or column "
                                     "(.csv, .parquet) that holds the text, e.g. \"text\""),
        (t.min_lr <= t.lr, f"train.min_lr = {t.min_lr}: must be between 0 and train.lr ({t.lr})"),
        (t.lr * t.weight_decay < 1,
         f"train.weight_decay = {t.weight_decay}: train.lr x train.weight_decay must be below 1 (each step "
         f"scales the weights by 1 - {t.lr:g} x {t.weight_decay:g}); lower one of them"),
        (bool(DEVICES.match(t.device)), f"train.device = '{t.device}': use auto, cpu, cuda, cuda:N or mps"),
        (m.activation in ACTIVATIONS, f"model.activation = {m.activation!r}: use one of {', '.join(ACTIVATIONS)}"),
        (t.optimizer in OPTIMIZERS, f"train.optimizer = {t.optimizer!r}: use one of {', '.join(OPTIMIZERS)}"),
        (t.dtype in ("fp32", "bf16", "auto"),
         f"train.dtype = '{t.dtype}': use fp32, bf16 or auto (bf16 where the device computes it natively)"),
        (u.on_hangup in HANGUP_CHOICES,
         f"tui.on_hangup = {u.on_hangup!r}: use \"detach\" (a lost terminal leaves the run training) "
         "or \"stop\" (it saves and stops)"),
        (bool(PROJECT.match(cfg.log.project)),
         f"log.project = {cfg.log.project!r}: use letters, digits, '.', '_' and '-' (the W&B / Trackio project)"),
    ]
    for w in m.windows:
        checks.append((1 <= w <= m.context,
                       f"model.windows has {w:g}: each window must be 1..model.context ({m.context})"))
    return checks


def _alerts_checks(a: AlertsConfig) -> list[tuple[bool, str]]:
    try:
        shlex.split(a.command)
        split = ""
    except ValueError as e:
        split = f"alerts.command = {a.command!r}: {e}; fix its quoting"
    words = shlex.split(a.command) if not split else []
    return [
        (not split, split),
        (bool(words) or not a.command.strip(), f"alerts.command = {a.command!r}: name a program (\"\" = none)"),
        (a.action in ALERT_ACTIONS, f"alerts.action = {a.action!r}: use \"none\", \"pause\" (until resumed) or "
                                    "\"stop\" (save and end the run)"),
    ]


def machine_default() -> tuple[str, str]:
    """The config `babyllm-tui` and `babyllm train` use without --config on this machine, and why."""
    import torch

    if torch.cuda.is_available():
        return "default", "a CUDA GPU is present: the seed's sizes"
    return "cpu", "no CUDA GPU found"


def default_config_name() -> str:
    """The seed-size config on a GPU, the CPU config otherwise."""
    return machine_default()[0]
