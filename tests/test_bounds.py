"""Input of any size (issue 25, items 8 and 9): a config too big for the machine is one line before anything is
allocated; every file read from a run directory or a save is bounded before it is read and never read through
a link out of the run (sparse 2 GB files and links to /dev/zero stand in for the real thing)."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from babyllm import safefile
from babyllm.config import RANGES, load_config
from babyllm.errors import BabyError, CheckpointError, ConfigError
from babyllm.model import footprint
from babyllm.model.network import BabyLLM
from babyllm.run import runfiles, writer
from babyllm.school import soul
from babyllm.school.tutor import Tutor
from babyllm.snapshot import History

GB2 = 2 * 1024**3
CPU = torch.device("cpu")


def one_line(e: BaseException) -> str:
    text = str(e)
    assert "\n" not in text and "Traceback" not in text
    return text


# --- item 8: a config too big for the machine ------------------------------------------------------------------


@pytest.mark.parametrize("config, extra", [("tiny", []), ("cpu", []), ("default", []),
                                           ("tiny", ["model.window_groups=4", "model.memory_mlp=true"])])
def test_the_estimate_counts_the_networks_own_parameters(config, extra):
    cfg = load_config(config, extra)
    if config == "default":  # (not built for real: 67 M parameters; the shapes are the network's all the same)
        assert footprint.param_count(cfg) == 67_203_619
        return
    assert footprint.param_count(cfg) == sum(p.numel() for p in BabyLLM(cfg.model).parameters())


@pytest.mark.parametrize("key", ["train.batch", "model.context", "model.neurons", "model.embed", "model.vocab"])
def test_every_size_at_its_largest_is_refused_naming_it_before_anything_is_allocated(key, monkeypatch):
    monkeypatch.setattr(footprint, "host_available", lambda: (300 << 20, "MemAvailable"))  # (tiny needs 258 MiB)
    top = int(RANGES[key].hi)
    cfg = load_config("tiny", [f"{key}={top}"])  # (the validator lets it through: the machine decides)
    with pytest.raises(ConfigError) as e:
        footprint.check(cfg, CPU)
    text = one_line(e.value)
    assert text.startswith(f"{key} = {top} makes this run need about ") and "but 300.0 MiB is available" in text
    assert text.endswith(f"lower {key}")


def test_a_small_config_fits_and_the_estimate_grows_with_every_size():
    cfg = load_config("tiny")
    footprint.check(cfg, CPU)  # (this machine has a few hundred MB to spare)
    base = footprint.needed(cfg)
    for key in ("train.batch", "train.eval_batches", "model.context", "model.neurons", "model.embed",
                "model.vocab", "model.memory_rank"):
        section, name = key.split(".")
        bigger = load_config("tiny", [f"{key}={getattr(getattr(cfg, section), name) * 4}"])
        assert footprint.needed(bigger) > base, key


def test_the_estimate_stays_above_a_real_training_step():
    """A real step's peak (weights, gradients, AdamW, activations; measured as RSS growth) in a fresh process."""
    code = textwrap.dedent("""
        import json, resource, sys, torch
        torch.set_num_threads(1)
        from babyllm.config import load_config
        from babyllm.model import footprint
        from babyllm.school.engine import Engine
        from babyllm.school.progress import Progress
        cfg = load_config("tiny", sys.argv[1:])
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        engine = Engine(cfg, torch.device("cpu"), "fp32", 1, Progress())
        x = torch.randint(0, cfg.model.vocab, (cfg.train.batch, cfg.model.context + 1))
        for _ in range(2):
            loss = engine.forward(x[:, :-1], x[:, 1:])[0]
            loss.backward()
            engine.optimizer.step()
            engine.optimizer.zero_grad(set_to_none=True)
        grew = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
        print(json.dumps({"grew": grew, "estimate": footprint.needed(cfg)}))
    """)
    for extra in (["train.batch=32", "model.context=64", "model.neurons=1024", "model.vocab=1024",
                   "model.embed=256", "model.memory_rank=64"],
                  ["train.batch=4", "model.context=1024", "model.neurons=256", "model.windows=[2,8,64,512]"]):
        r = subprocess.run([sys.executable, "-c", code, *extra], capture_output=True, text=True, check=True)
        got = json.loads(r.stdout)
        assert got["grew"] < got["estimate"], (extra, got)


def test_train_and_the_cockpit_refuse_a_config_too_big_in_one_line_making_nothing(corpus, cache, tmp_path):
    for command in (["babyllm", "train"], ["babyllm-tui"]):
        run = tmp_path / f"run-{command[-1]}"
        entry = "babyllm.commands.cli" if command[0] == "babyllm" else "tui.cli"
        r = subprocess.run([sys.executable, "-c", f"import sys; from {entry} import main; sys.exit(main(sys.argv[1:]))",
                            *command[1:], "--config", "tiny",
                            "--corpus", str(corpus), "--set", f"data.cache_dir={cache}", "--run-dir", str(run),
                            "--set", "train.batch=1048576"], capture_output=True, text=True, timeout=120,
                           stdin=subprocess.DEVNULL)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and "train.batch = 1048576 makes this run need about" in lines[0], r.stderr
        assert "available" in lines[0] and not run.exists()


def test_info_counts_a_huge_model_without_allocating_it():
    r = subprocess.run([sys.executable, "-m", "babyllm", "info", "--json", "--config", "default",
                        "--set", "model.neurons=1048576",
                        "--set", "model.embed=65536"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["total_params"] == 74_504_147_683  # 298 GB of fp32 weights: counted, not made


@pytest.fixture
def two_saves(make_cfg, tmp_path):
    run = tmp_path / "run"
    assert Tutor(make_cfg("train.steps=8", "train.save_every=4", "train.keep=3"), run, say=lambda m: None).run() \
        == "finished"
    return run


def test_chat_and_eval_refuse_a_save_too_big_for_this_machine_before_reading_its_weights(two_saves, monkeypatch):
    monkeypatch.setattr(footprint, "host_available", lambda: (1 << 20, "MemAvailable"))
    with pytest.raises(ConfigError, match=r"this config needs about .* but 1.0 MiB is available"):
        soul.load_for_inference(two_saves)


def test_a_save_whose_sizes_were_edited_to_huge_ones_is_damage_and_the_older_one_is_used(two_saves):
    newest = runfiles.list_saves(two_saves)[0].path
    meta = json.loads((newest / "meta.json").read_text())
    meta["config"]["model"].update(neurons=1 << 20, embed=1 << 16)  # the weights file stays the small one
    (newest / "meta.json").write_text(json.dumps(meta))
    said = []
    assert soul.load_for_inference(two_saves, say=said.append)[3] == 4
    assert "model.safetensors does not fit the saved config" in said[0] and str(newest) in said[0]


# --- item 9: every file of a run is bounded before it is read ------------------------------------------------


def sparse_2gb(path: Path) -> None:
    path.unlink(missing_ok=True)
    with open(path, "wb") as fh:
        fh.truncate(GB2)


def link_to_dev_zero(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.symlink_to("/dev/zero")


def link_out_of_the_run(path: Path) -> None:
    outside = path.parent.parent.parent / f"outside-{path.name}"  # beside the run directory, not in it
    outside.write_bytes(path.read_bytes())
    path.unlink()
    path.symlink_to(outside)


SPOIL = {"sparse 2 GB": sparse_2gb, "link to /dev/zero": link_to_dev_zero, "link out of the run": link_out_of_the_run}


@pytest.fixture
def reads(monkeypatch):
    """The bytes read by os.read and os.pread from here on."""
    counted = []
    real_read, real_pread = os.read, os.pread
    monkeypatch.setattr(os, "read", lambda fd, n: counted.append(n) or real_read(fd, n))
    monkeypatch.setattr(os, "pread", lambda fd, n, at: counted.append(n) or real_pread(fd, n, at))
    return counted


@pytest.mark.parametrize("how", list(SPOIL))
@pytest.mark.parametrize("name", ["meta.json", "model.safetensors", "state.pt"])
def test_a_spoiled_save_file_is_refused_unread_and_the_older_save_is_used(two_saves, make_cfg, reads, name, how):
    newest = runfiles.list_saves(two_saves)[0].path
    target = newest / name
    SPOIL[how](target)
    if name != "meta.json" and how == "sparse 2 GB":  # the meta records the size too: it "matches" the 2 GB file
        meta = json.loads((newest / "meta.json").read_text())
        meta["files"][name]["bytes"] = GB2
        (newest / "meta.json").write_text(json.dumps(meta))
    said = []
    tutor = Tutor(make_cfg("train.steps=8"), two_saves, resume=True, say=said.append)
    tutor.close()
    assert tutor.step_count == 4 and any(str(newest) in m for m in said), said
    assert sum(reads) < 64 << 20  # a few MB of the good save; never the 2 GB, never /dev/zero


@pytest.mark.parametrize("how", list(SPOIL))
def test_a_spoiled_tokenizer_is_one_line_unread(two_saves, reads, how):
    SPOIL[how](two_saves / "tokenizer.json")
    with pytest.raises(CheckpointError) as e:
        soul.load_for_inference(two_saves)
    assert "tokenizer.json" in one_line(e.value) and sum(reads) < 64 << 20


@pytest.mark.parametrize("how", list(SPOIL))
def test_a_spoiled_header_is_an_unknown_header_unread(two_saves, reads, how):
    SPOIL[how](two_saves / "header.json")
    assert runfiles.read_header(two_saves) is None and sum(reads) < 64 << 20


@pytest.mark.parametrize("how", list(SPOIL))
@pytest.mark.parametrize("name", ["metrics.jsonl", "events.jsonl"])
def test_a_spoiled_log_is_read_by_its_tail_at_most(two_saves, reads, name, how):
    SPOIL[how](two_saves / name)
    runfiles.replay_history(two_saves, History(), 8)
    assert sum(reads) <= runfiles.HISTORY_TAIL_BYTES + (1 << 20)
    if how != "sparse 2 GB":  # a link: refused for writing too (it could truncate or fill another file)
        with pytest.raises(BabyError, match="not a regular file"):
            writer.open_log(two_saves / name, "a")


def test_chat_on_a_run_with_a_link_to_dev_zero_for_a_tokenizer_exits_in_one_line(two_saves):
    link_to_dev_zero(two_saves / "tokenizer.json")
    r = subprocess.run([sys.executable, "-m", "babyllm", "sample", "--run-dir", str(two_saves), "--prompt", "a"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert "tokenizer.json: a link out of the run directory (to /dev/zero); refused, not read" in r.stderr


def test_the_one_reader_refuses_more_than_its_limit_and_a_fifo(tmp_path):
    f = tmp_path / "meta.json"
    f.write_bytes(b"x" * 100)
    assert safefile.read_bounded(f, 100) == b"x" * 100
    with pytest.raises(safefile.Refused, match="100 bytes, more than a meta.json can hold"):
        safefile.read_bounded(f, 99)
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(safefile.Refused, match="not a regular file"):
        safefile.read_bounded(tmp_path / "fifo", 100)  # (never blocks waiting for a writer)


def test_every_reader_of_a_run_directory_goes_through_the_bounded_reader():
    """No module reads a run's file whole by itself: read_text/read_bytes/json.load/from_file on run files are
    the bounded reader's business (babyllm.safefile)."""
    root = Path(__file__).resolve().parent.parent
    for path in [*root.glob("babyllm/**/*.py"), *root.glob("tui/*.py")]:
        text = path.read_text()
        for needle in ("Tokenizer.from_file(", "META_FILE).read_text(", "HEADER_FILE).read_text(",
                       "TOKENIZER_FILE).read_text(", ".read_bytes()"):
            assert needle not in text, f"{path.relative_to(root)} reads a file unbounded: {needle}"


def test_memory_stays_bounded_reading_a_run_of_spoiled_files(two_saves):
    """End to end, in a fresh process: every spoiled file at once, and `sample` still answers from the older save
    without its memory growing by anything like 2 GB."""
    newest = runfiles.list_saves(two_saves)[0].path
    sparse_2gb(newest / "model.safetensors")
    meta = json.loads((newest / "meta.json").read_text())
    meta["files"]["model.safetensors"]["bytes"] = GB2
    (newest / "meta.json").write_text(json.dumps(meta))
    for name in ("metrics.jsonl", "events.jsonl", "header.json"):
        link_to_dev_zero(two_saves / name)
    code = ("import resource, sys; from babyllm.commands.cli import main; code = main(sys.argv[1:]); "
            "print('maxrss', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, file=sys.stderr); "
            "sys.exit(code)")
    r = subprocess.run([sys.executable, "-c", code, "sample", "--run-dir", str(two_saves), "--prompt", "a",
                        "--max-tokens", "3"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "warning:" in r.stderr and "trying an older save" in r.stderr
    maxrss = int(r.stderr.split("maxrss ")[1].split()[0])
    assert maxrss < 1536 << 20  # (torch itself is a few hundred MB)
