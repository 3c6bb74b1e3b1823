"""Configs: shipped files load, overrides apply, and every bad input is one clear line."""

import re
import subprocess
import sys
import tomllib

import pytest

from babyllm.config import RANGES, Config, load_config, numeric_settings
from babyllm.errors import ConfigError


@pytest.mark.parametrize("name", ["tiny", "cpu", "default"])
def test_shipped_configs_load(name):
    cfg = load_config(name)
    assert cfg.name == name
    assert all(1 <= w <= cfg.model.context for w in cfg.model.windows)


def test_default_config_has_seed_sizes():
    m = load_config("default").model
    assert (m.vocab, m.embed, m.neurons, m.context, len(m.windows)) == (4200, 1024, 10_000, 256, 7)


def test_overrides_parse_toml_values_and_bare_words():
    cfg = load_config("tiny", ["model.neurons=128", "train.lr=0.01", "train.device=cpu", "model.windows=[1, 2.5]",
                               "train.compile=true"])
    assert cfg.model.neurons == 128 and cfg.train.lr == 0.01 and cfg.train.device == "cpu"
    assert cfg.model.windows == [1.0, 2.5] and cfg.train.compile is True


def write(tmp_path, text):
    p = tmp_path / "c.toml"
    p.write_text(text)
    return p


@pytest.mark.parametrize(
    "text, fragments",
    [
        ("[model]\nvocab = = 3\n", ["c.toml", "invalid TOML", "line 2"]),
        ("[modle]\nvocab = 300\n", ["c.toml", "[modle]", "did you mean 'model'"]),
        ("[model]\nnerons = 3\n", ["c.toml", "model.nerons", "did you mean 'neurons'"]),
        ("[model]\nneurons = \"many\"\n", ["c.toml", "model.neurons", "expected int"]),
        ("[model]\nneurons = 1.5\n", ["c.toml", "model.neurons", "expected int"]),
        ("[train]\ncompile = 1\n", ["c.toml", "train.compile", "expected \"auto\" or bool"]),
        ("[model]\nwindows = [1, \"x\"]\n", ["c.toml", "model.windows", "list of numbers"]),
        ("[model]\nvocab = 10\n", ["c.toml", "model.vocab = 10", "260..65535"]),
        ("[model]\ncontext = 8\nwindows = [2, 16]\n", ["c.toml", "model.windows has 16", "model.context (8)"]),
        ("[train]\nlr = -1\n", ["c.toml", "train.lr = -1", "in (0, 1]"]),
        ("[train]\ndtype = \"fp8\"\n", ["c.toml", "train.dtype", "fp32, bf16 or auto"]),
        ("[train]\ndevice = \"gpu\"\n", ["c.toml", "train.device", "auto, cpu, cuda"]),
        ("model = 3\n", ["c.toml", "[model] table"]),
    ],
)
def test_bad_config_files_name_file_key_and_fix(tmp_path, text, fragments):
    with pytest.raises(ConfigError) as e:
        load_config(write(tmp_path, text))
    message = str(e.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("model.neurons", "expected section.key=value"),
        ("nerons=3", "no config key 'nerons' (did you mean 'model.neurons'?)"),
        ("nosuch.key=3", "unknown section 'nosuch'"),
        ("model.neurons=abc", "model.neurons = 'abc': expected int"),
        ("model.windows=[1,300]", "model.windows has 300"),
    ],
)
def test_bad_overrides_are_named(override, fragment):
    with pytest.raises(ConfigError, match="--set") as e:
        load_config("tiny", [override])
    assert fragment in str(e.value)


def test_missing_config_lists_shipped_ones():
    with pytest.raises(ConfigError, match="nope: config file not found.*cpu, default, tiny"):
        load_config("nope")


def test_corpus_path_in_config_is_relative_to_the_file(tmp_path):
    (tmp_path / "sub").mkdir()
    p = tmp_path / "sub" / "c.toml"
    p.write_text('[data]\ncorpus = "../texts"\n')
    assert load_config(p).data.corpus == str((tmp_path / "texts").resolve())


def test_cli_prints_one_line_not_a_traceback(tmp_path):
    bad = write(tmp_path, "[model]\nneurons = -4\n")
    r = subprocess.run([sys.executable, "-m", "babyllm", "info", "--config", str(bad)], capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
    assert r.stderr.startswith("error: ") and "model.neurons = -4" in r.stderr


def test_info_prints_parameter_table_and_json():
    r = subprocess.run([sys.executable, "-m", "babyllm", "info", "--config", "tiny"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for part in ("embed", "neurons", "windows", "memory1", "memory2", "logits", "total", "FLOPs per token"):
        assert part in r.stdout
    r = subprocess.run([sys.executable, "-m", "babyllm", "info", "--config", "tiny", "--json"],
                       capture_output=True, text=True)
    import json

    info = json.loads(r.stdout)
    assert info["total_params"] == sum(info["params"].values()) and info["train_flops_per_token"] > 0


def test_auto_dtype_is_bf16_only_where_the_device_computes_it_natively(monkeypatch):
    import torch

    from babyllm.model import runtime

    cpu = torch.device("cpu")
    assert runtime.resolve_dtype("fp32", cpu) == "fp32" and runtime.resolve_dtype("bf16", cpu) == "bf16"
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: False)
    assert runtime.resolve_dtype("auto", cpu) == "fp32"  # e.g. a laptop without AVX512-BF16: bf16 would be slower
    monkeypatch.setattr(runtime, "cpu_has_bf16", lambda: True)
    assert runtime.resolve_dtype("auto", cpu) == "bf16"


def test_info_without_config_describes_what_the_cockpit_would_train_here(monkeypatch, capsys):
    import torch

    from babyllm.commands.cli import main
    from babyllm.commands.runsetup import config_from_args
    from tui.cli import build_parser

    for gpu, name in ((False, "cpu"), (True, "default")):
        monkeypatch.setattr(torch.cuda, "is_available", lambda gpu=gpu: gpu)
        assert main(["info"]) == 0
        out = capsys.readouterr().out
        assert out.startswith(f"no --config: {name}, what babyllm-tui and babyllm train use on this machine (")
        assert f"config {name}: vocab" in out
        assert config_from_args(build_parser().parse_args([])).name == name  # the cockpit's own choice


def test_shipped_configs_resolve_by_name_and_by_the_older_paths_from_any_folder(tmp_path, monkeypatch):
    from babyllm.config import resolve_config_path
    from babyllm.paths import CONFIGS

    monkeypatch.chdir(tmp_path)
    for given in ("cpu", "configs/cpu.toml", "babyllm/configs/cpu.toml"):
        assert resolve_config_path(given) == CONFIGS / "cpu.toml"
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "cpu.toml").write_text("[train]\nbatch = 3\n")  # a file of yours wins over the shipped
    assert load_config("configs/cpu.toml").train.batch == 3


def test_version_names_babyllm_python_and_torch(capsys):
    from babyllm import __version__
    from babyllm.commands.cli import main

    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith(f"babyllm-tui {__version__} (Python 3.")


# --- every numeric setting is finite and in a sane range, wherever it comes from (issue 25, item 11) -----------


def _wild(value):
    """Values no numeric setting may take: not finite, absurdly large or absurdly negative."""
    return ["inf", "-inf", "nan", "1e308", "-1e308"] if isinstance(value, float) else [str(10**30), str(-(10**30))]


def _setting(cfg, key):
    section, name = key.split(".")
    return getattr(getattr(cfg, section), name)


NUMERIC = sorted(numeric_settings(Config()))


def test_every_numeric_setting_has_a_range_in_the_one_table():
    assert NUMERIC and set(RANGES) == set(NUMERIC)


@pytest.mark.parametrize("key", NUMERIC)
def test_a_wild_value_is_refused_from_every_source(key, tmp_path):
    from babyllm import live
    from babyllm.errors import CheckpointError
    from babyllm.school.soul import config_from_dict

    section, name = key.split(".")
    for text in _wild(_setting(Config(), key)):
        with pytest.raises(ConfigError, match=re.escape(key)) as e:
            load_config("tiny", [f"{key}={text}"])  # --set at start
        assert "\n" not in str(e.value) and len(str(e.value)) < 300
        with pytest.raises(ConfigError, match=re.escape(key)):
            load_config(write(tmp_path, f"[{section}]\n{name} = {text}\n"))  # a TOML file
        saved = load_config("tiny").to_dict()
        saved[section][name] = tomllib.loads(f"v = {text}")["v"]
        with pytest.raises(CheckpointError, match=re.escape(key)):
            config_from_dict(saved, where="runs/x/save-00000010/meta.json")  # a save's config
        if key in live.LIVE_KEYS:
            with pytest.raises(ConfigError, match=re.escape(key)):
                live.check(load_config("tiny"), [(key, text)])  # ctl set / the cockpit, mid-run


@pytest.mark.parametrize("item, says", [
    ("model.dropout=1.5", "model.dropout = 1.5: must be in [0, 1)"),
    ("chat.penalty_window=-3", "chat.penalty_window = -3: must be a whole number 0..1048576"),
    ("train.lr=1e308", "train.lr = 1e+308: must be in (0, 1]"),
    ("train.weight_decay=400", "train.weight_decay = 400.0: must be in [0, 100]"),
    ("train.eval_batches=100000000", "train.eval_batches = 100000000: must be a whole number 1..10000"),
])
def test_values_that_used_to_pass_and_fail_later_are_refused_at_once(item, says):
    with pytest.raises(ConfigError) as e:
        load_config("tiny", [item])
    assert says in str(e.value)


def test_lr_times_weight_decay_must_leave_the_weights_a_positive_scale():
    load_config("tiny", ["train.lr=0.01", "train.weight_decay=50"])  # 0.5: fine
    with pytest.raises(ConfigError, match="train.lr x train.weight_decay must be below 1"):
        load_config("tiny", ["train.lr=0.1", "train.weight_decay=50"])


def test_a_whole_number_beyond_any_float_is_one_line():
    with pytest.raises(ConfigError, match=r"train.lr = a 400-digit number: too large"):
        load_config("tiny", ["train.lr=" + "9" * 400])
