"""Configs: shipped files load, overrides apply, and every bad input is one clear line."""

import subprocess
import sys

import pytest

from babyllm.config import load_config
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
        ("[train]\nlr = -1\n", ["c.toml", "train.lr = -1", "> 0"]),
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
