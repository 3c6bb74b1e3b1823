"""`babyllm export`: a run's save as a folder of its own that BabyLLM.from_pretrained loads back with identical
logits; chat, sample and eval take the folder; the model card; mistakes are one line and write nothing."""

from __future__ import annotations

import json

import pytest
import torch
from tokenizers import Tokenizer

from babyllm import BabyLLM
from babyllm.commands.cli import main as cli_main
from babyllm.errors import CheckpointError
from babyllm.model import pretrained
from babyllm.school.soul import load_for_inference
from babyllm.school.tutor import Tutor


@pytest.fixture(scope="module")
def trained(tmp_path_factory, corpus, cache):
    """A tiny run of 12 steps with its saves (module-wide: trained once)."""
    from babyllm import load_config

    cfg = load_config("tiny", ["train.steps=12", "train.save_every=6"])
    cfg.data.corpus, cfg.data.cache_dir = str(corpus), str(cache)
    run = tmp_path_factory.mktemp("export") / "run"
    with Tutor(cfg, run, say=lambda m: None) as t:
        assert t.run() == "finished"
    return run


def test_export_round_trip_gives_identical_logits(trained, tmp_path, capsys):
    out = tmp_path / "model"
    assert cli_main(["export", str(trained), "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"exported run step 12 (save-00000012) to {out}: model.safetensors" in printed
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "config.json", "model.safetensors",
                                                     "tokenizer.json"]
    model = BabyLLM.from_pretrained(out)
    cfg, saved, tokenizer, step = load_for_inference(trained)
    ids = torch.tensor([tokenizer.encode("The kettle sang and we sat by the window").ids[:16]])
    with torch.no_grad():
        assert torch.equal(model(ids), saved(ids))  # the same weights, the same config: bit for bit
    assert not model.training and model.cfg == cfg.model
    exported = Tokenizer.from_file(str(out / "tokenizer.json"))
    assert exported.to_str() == tokenizer.to_str()
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "babyllm" and config["vocab"] == cfg.model.vocab and config["windows"] == \
        cfg.model.windows
    info = config["babyllm"]
    assert info["step"] == step == 12 and info["config_name"] == "tiny" and info["tokens"] == 12 * 4 * 16
    assert 0 < info["held_out_bpb"] < 10 and info["held_out_tokens"] > 0 and "model" not in info["config"]
    card = (out / "README.md").read_text()
    assert "| trained | 12 steps, 768 tokens" in card and f"{info['held_out_bpb']:.4f} bits per byte" in card
    assert f"held-out: {info['held_out_bpb']:.4f} bits per byte" in printed


def test_chat_sample_and_eval_take_an_export_folder(trained, tmp_path, capsys, monkeypatch):
    out = tmp_path / "model"
    assert cli_main(["export", str(trained / "best"), "-o", str(out), "--no-score"]) == 0
    assert "held-out: not measured" in capsys.readouterr().out
    assert "held-out | not measured" in (out / "README.md").read_text()
    code = cli_main(["sample", "--run-dir", str(out), "--prompt", "The kettle", "--max-tokens", "8", "--seed", "3"])
    from_export = capsys.readouterr()
    assert code == 0 and "loaded run model at step" in from_export.err
    assert cli_main(["sample", "--run-dir", str(trained / "best"), "--prompt", "The kettle", "--max-tokens", "8",
                     "--seed", "3"]) == 0
    assert capsys.readouterr().out == from_export.out  # the same weights sample the same text
    assert cli_main(["eval", "--run-dir", str(out)]) == 0
    assert "bits/byte" in capsys.readouterr().out
    monkeypatch.setattr("builtins.input", lambda _prompt: (_ for _ in ()).throw(EOFError))
    assert cli_main(["chat", "--run-dir", str(out)]) == 0
    assert not (out / "chat.log").exists()  # an export is for sharing: nothing is added to it


def test_export_mistakes_are_one_line_and_write_nothing(trained, tmp_path, capsys):
    full = tmp_path / "full"
    full.mkdir()
    (full / "keep.txt").write_text("mine")
    assert cli_main(["export", str(trained), "-o", str(full)]) == 2
    assert capsys.readouterr().err == (f"error: -o {full}: exists and is not an empty folder; export into a new "
                                       "one (nothing was written)\n")
    assert [p.name for p in full.iterdir()] == ["keep.txt"]
    assert cli_main(["export", str(tmp_path / "nope"), "-o", str(tmp_path / "x")]) == 2
    assert "no such run directory" in capsys.readouterr().err and not (tmp_path / "x").exists()


def test_a_run_can_be_named_as_under_runs(trained, tmp_path, monkeypatch, capsys):
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "mine").symlink_to(trained)
    monkeypatch.chdir(tmp_path)
    assert cli_main(["export", "mine", "-o", "model", "--no-score"]) == 0
    assert "exported mine step 12" in capsys.readouterr().out and BabyLLM.from_pretrained(tmp_path / "model")


def test_from_pretrained_refuses_what_is_not_an_export_in_one_line(trained, tmp_path):
    with pytest.raises(CheckpointError, match="not an exported babyllm model"):
        BabyLLM.from_pretrained(trained)
    out = tmp_path / "model"
    assert cli_main(["export", str(trained), "-o", str(out), "--no-score"]) == 0
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "neurons": 0}))
    with pytest.raises(CheckpointError, match=r"config.json: model.neurons = 0: must be a whole number 1..1048576"):
        BabyLLM.from_pretrained(out)
    (out / "config.json").write_text(json.dumps({**config, "embed": 48}))
    with pytest.raises(CheckpointError, match=r"model.safetensors: the weights do not fit config.json"):
        BabyLLM.from_pretrained(out)
    (out / "config.json").write_text(json.dumps(config))
    (out / "model.safetensors").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match=r"model.safetensors: damaged"):
        BabyLLM.from_pretrained(out)
    assert pretrained.is_export(out) and not pretrained.is_export(trained)

