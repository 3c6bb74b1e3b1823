"""Soul: saves, exact resume, damaged and mismatched checkpoints, full disks, run directories."""

import errno
import io
import json
import os
import shutil
import threading
import time
from pathlib import Path

import pytest
import torch

import babyllm.school.soul as soul
from babyllm.config import load_config
from babyllm.errors import BabyError, CheckpointError
from babyllm.run.rundir import resolve_run_dir
from babyllm.run.runfiles import list_saves
from babyllm.school.savecheck import sha256
from babyllm.school.soul import load_for_inference
from babyllm.school.tutor import Tutor


def quiet(_message):
    pass


def metrics(run: Path) -> list[dict]:
    return [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]


def stop_at(step: int):
    """A publish callback that asks the Tutor to stop once it has done `step` steps."""
    holder = {}

    def publish(snap):
        if snap.step >= step:
            holder["tutor"].stop()
    return holder, publish


@pytest.fixture
def two_saves(make_cfg, tmp_path):
    """A run with saves at steps 10 and 20."""
    run = tmp_path / "run"
    assert Tutor(make_cfg("train.steps=20", "train.save_every=10", "train.keep=3"), run, say=quiet).run() == "finished"
    assert [s.step for s in list_saves(run)] == [20, 10]
    return run


# --- exact resume -----------------------------------------------------------------------------------


def test_resume_is_bit_identical(make_cfg, tmp_path):
    S, K = 30, 13
    straight = tmp_path / "straight"
    assert Tutor(make_cfg(f"train.steps={S}"), straight, say=quiet).run() == "finished"

    split = tmp_path / "split"
    holder, publish = stop_at(K)
    t = holder["tutor"] = Tutor(make_cfg(f"train.steps={S}"), split, publish=publish, publish_every=0.0, say=quiet)
    assert t.run() == "stopped" and t.step_count == K
    assert [s.step for s in list_saves(split)] == [K]
    t2 = Tutor(make_cfg(f"train.steps={S}"), split, resume=True, say=quiet)
    assert t2.step_count == K
    assert t2.run() == "finished"

    a, b = metrics(straight), metrics(split)
    assert [m["step"] for m in b] == list(range(1, S + 1))
    for key in ("loss", "loss_100", "grad_norm", "lr", "accuracy", "tokens", "val_loss"):
        assert [m[key] for m in a] == [m[key] for m in b], key
    _, ma, _, _ = load_for_inference(straight)
    _, mb, _, _ = load_for_inference(split)
    for (na, pa), (nb, pb) in zip(ma.state_dict().items(), mb.state_dict().items(), strict=True):
        assert na == nb and torch.equal(pa, pb), na


def test_step_and_save_api_resume_exactly(make_cfg, tmp_path):
    with Tutor(make_cfg(), tmp_path / "a", say=quiet) as a:
        losses_a = [a.step()["loss"] for _ in range(12)]
    with Tutor(make_cfg(), tmp_path / "b", say=quiet) as b:
        losses_b = [b.step()["loss"] for _ in range(5)]
        assert b.save("checkpoint") == tmp_path / "b" / "checkpoint-00000005"
    with Tutor(make_cfg(), tmp_path / "b", resume=True, say=quiet) as c:
        losses_b += [c.step()["loss"] for _ in range(7)]
    assert losses_a == losses_b


# --- damaged, missing and mismatched saves -----------------------------------------------------------


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


DAMAGE = {
    "truncated weights": ("model.safetensors", _truncate, "truncated"),
    "flipped weights": ("model.safetensors", _flip, "checksum mismatch"),
    "truncated state": ("state.pt", _truncate, "truncated"),
    "missing state": ("state.pt", lambda p: p.unlink(), "missing"),
    "missing meta": ("meta.json", lambda p: p.unlink(), "missing"),
    "garbage meta": ("meta.json", lambda p: p.write_text("{not json"), "damaged"),
}


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_damaged_newest_save_falls_back_to_previous(two_saves, make_cfg, damage):
    name, spoil, words = DAMAGE[damage]
    spoil(two_saves / "save-00000020" / name)
    said = []
    t = Tutor(make_cfg("train.steps=20", "train.save_every=10"), two_saves, resume=True, say=said.append)
    t.close()
    assert t.step_count == 10
    assert any(f"save-00000020/{name}" in m and words in m for m in said), said
    assert any("older save" in m for m in said)
    if name != "state.pt":  # inference reads only the weights and meta
        assert load_for_inference(two_saves)[3] == 10
    else:
        assert load_for_inference(two_saves)[3] == 20


def test_all_saves_damaged_is_a_clear_error(two_saves, make_cfg):
    for s in list_saves(two_saves):
        _truncate(s.path / "model.safetensors")
    with pytest.raises(CheckpointError, match=r"save-00000020/model.safetensors: truncated .*no older save"):
        Tutor(make_cfg(), two_saves, resume=True, say=quiet)
    shutil.rmtree(two_saves / "best", ignore_errors=True)  # chat and sample would use best/ (issue 13)
    with pytest.raises(CheckpointError, match="model.safetensors: truncated"):
        load_for_inference(two_saves)


def test_missing_tokenizer_is_a_clear_error(two_saves, make_cfg):
    (two_saves / "tokenizer.json").unlink()
    with pytest.raises(CheckpointError, match=r"tokenizer.json: missing"):
        Tutor(make_cfg(), two_saves, resume=True, say=quiet)


def test_config_mismatch_names_what_differs(two_saves, make_cfg):
    with pytest.raises(CheckpointError) as e:
        Tutor(make_cfg("model.neurons=32"), two_saves, resume=True, say=quiet)
    msg = str(e.value)
    assert "save-00000020/meta.json" in msg and "model.neurons is 64 in the checkpoint but 32 now" in msg
    assert "\n" not in msg


def test_tokenizer_mismatch_is_a_clear_error(two_saves, make_cfg):
    tok = json.loads((two_saves / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    vocab["a"], vocab["b"] = vocab["b"], vocab["a"]  # same tokens, different ids
    (two_saves / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(CheckpointError, match="tokenizer.json: does not match the checkpoint"):
        Tutor(make_cfg(), two_saves, resume=True, say=quiet)


class Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_loading_never_runs_code_from_the_file(two_saves):
    folder = two_saves / "save-00000020"
    buf = io.BytesIO()
    torch.save({"optimizer": Evil()}, buf)
    data = buf.getvalue()
    (folder / "state.pt").write_bytes(data)
    meta = json.loads((folder / "meta.json").read_text())
    meta["files"]["state.pt"] = {"bytes": len(data), "sha256": sha256(data)}  # a "valid" hostile save
    (folder / "meta.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="state.pt: damaged or unsafe"):
        soul.read_save(folder)


# --- writing ------------------------------------------------------------------------------------------


def test_full_disk_during_save_keeps_previous_save(make_cfg, tmp_path, monkeypatch):
    run = tmp_path / "run"
    with Tutor(make_cfg(), run, say=quiet) as t:
        for _ in range(3):
            t.step()
        assert t.save() is not None
        for _ in range(3):
            t.step()
        real = soul._write_bytes

        def full(path, data):
            if path.name == "state.pt":
                with open(path, "wb") as fh:
                    fh.write(data[:100])
                raise OSError(errno.ENOSPC, "No space left on device")
            real(path, data)

        monkeypatch.setattr(soul, "_write_bytes", full)
        assert t.save() is None
        assert "No space left on device" in t.last_save_error
        assert t.snapshot().events[-1].kind == "save_error"  # (its own kind: a viewer flashes it from the kind)
    assert [s.step for s in list_saves(run)] == [3]
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no half-written folders left
    assert load_for_inference(run)[3] == 3
    monkeypatch.setattr(soul, "_write_bytes", real)
    with Tutor(make_cfg(), run, resume=True, say=quiet) as t2:
        assert t2.step_count == 3


def test_full_disk_while_running_keeps_training(make_cfg, tmp_path, monkeypatch):
    run = tmp_path / "run"
    t = Tutor(make_cfg(), run, say=quiet)
    result = []
    th = threading.Thread(target=lambda: result.append(t.run()), daemon=True)
    th.start()
    end = time.monotonic() + 10
    while t.step_count < 3 and time.monotonic() < end:
        time.sleep(0.01)
    t.request_save()
    while t.last_saved_step is None and time.monotonic() < end:
        time.sleep(0.01)
    good = t.last_saved_step

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(soul, "_write_bytes", full)
    t.request_save()
    while t.last_save_error is None and time.monotonic() < end:
        time.sleep(0.01)
    at = t.step_count
    while t.step_count < at + 3 and time.monotonic() < end:
        time.sleep(0.01)
    assert t.snapshot().state == "running" and t.step_count >= at + 3
    t.stop()
    th.join(10)
    assert result == ["stopped"] and "No space left" in t.last_save_error
    assert load_for_inference(run)[3] == good


def test_rolling_saves_are_pruned_but_checkpoints_kept(make_cfg, tmp_path):
    run = tmp_path / "run"
    with Tutor(make_cfg("train.keep=2"), run, say=quiet) as t:
        for i in range(5):
            t.step()
            t.save("checkpoint" if i == 1 else "save")
    assert [(s.kind, s.step) for s in list_saves(run)] == [("save", 5), ("save", 4), ("checkpoint", 2)]


def test_resaving_same_name_replaces_atomically(tmp_path):
    dest = tmp_path / "best"
    soul.write_folder(dest, {"a.bin": b"one"}, {"x": 1})
    soul.write_folder(dest, {"a.bin": b"two"}, {"x": 2})
    assert (dest / "a.bin").read_bytes() == b"two" and json.loads((dest / "meta.json").read_text())["x"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]


def test_load_for_inference(two_saves):
    cfg, model, tok, step = load_for_inference(two_saves)
    assert step == 20 and cfg.name == "tiny" and not model.training
    assert cfg.model.neurons == 64 and tok.decode(tok.encode("the harbour").ids) == "the harbour"
    cfg_b, model_b, _, step_b = load_for_inference(two_saves / "best")
    assert step_b in (0, 20) and cfg_b.model == cfg.model
    with pytest.raises(CheckpointError, match="no save found"):
        load_for_inference(two_saves.parent / "nothing-here")


# --- run directories ---------------------------------------------------------------------------------


def test_resolve_run_dir(two_saves, tmp_path):
    root = two_saves.parent
    assert resolve_run_dir(None, tmp_path / "d", False, "tiny", root) == tmp_path / "d"
    assert resolve_run_dir("fresh", None, False, "tiny", root) == root / "fresh"
    new = resolve_run_dir(None, None, False, "tiny", root)
    assert new.parent == root and new.name.startswith("tiny-") and len(new.name) == len("tiny-20250101-120000")
    assert resolve_run_dir(None, None, True, "tiny", root) == two_saves  # the newest saved run
    assert resolve_run_dir("run", None, True, "tiny", root) == two_saves
    with pytest.raises(BabyError, match=r"run already has a save at step 20; pass --resume to continue it"):
        resolve_run_dir("run", None, False, "tiny", root)
    with pytest.raises(CheckpointError, match="no save to resume from"):
        resolve_run_dir("fresh", None, True, "tiny", root)
    with pytest.raises(CheckpointError, match="no saved run to resume"):
        resolve_run_dir(None, None, True, "tiny", tmp_path / "empty")


def test_new_tutor_refuses_a_run_dir_with_saves(two_saves, make_cfg):
    with pytest.raises(BabyError, match="already has a save at step 20"):
        Tutor(make_cfg(), two_saves, say=quiet)


def test_saved_config_round_trips(two_saves):
    cfg = soul.saved_config(two_saves)
    assert cfg.name == "tiny" and cfg.to_dict() == load_config("tiny").to_dict() | {
        "data": cfg.to_dict()["data"], "train": cfg.to_dict()["train"]}
    assert cfg.train.steps == 20 and cfg.train.save_every == 10
