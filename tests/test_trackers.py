"""Weights & Biases and Trackio, end to end and offline: a real tiny `babyllm train` run with the tracker switched
on, then a resume from an older save (discarded steps); what the tracker stored is read back from its own files
(W&B's offline run log, Trackio's SQLite database) and compared with the run's metrics.jsonl and samples.jsonl."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from babyllm.run import runfiles

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow


def tracker_env(tmp_path: Path) -> dict[str, str]:
    """Everything a tracker writes stays under tmp_path, and nothing goes over the network."""
    return {**os.environ, "PYTHONPATH": str(ROOT), "WANDB_MODE": "offline", "WANDB_SILENT": "true",
            "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"), "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"),
            "WANDB_DATA_DIR": str(tmp_path / "wandb-data"), "TRACKIO_DIR": str(tmp_path / "trackio"),
            "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"}


def train_twice(tmp_path: Path, corpus: Path, cache: Path, switch: str) -> Path:
    """30 steps; then save-00000030 is lost and the run resumes from step 20 (21..30 discarded) to step 40."""
    run = tmp_path / "run"

    def train(steps: int, *more: str) -> str:
        cmd = [sys.executable, "-m", "babyllm", "train", "--config", "tiny", "--corpus", str(corpus),
               "--run-dir", str(run), "--steps", str(steps), "--set", f"data.cache_dir={cache}",
               "--set", f"log.{switch}=true", "--set", "train.save_every=10", "--set", "train.sample_every=5",
               "--set", "train.eval_every=10", *more]
        proc = subprocess.run(cmd, cwd=tmp_path, env=tracker_env(tmp_path), capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    out = train(30)
    assert f"[info] step 0: logging to {switch}: " in out
    shutil.rmtree(run / "save-00000030")
    out = train(40, "--resume")
    assert "resumed from save-00000020 (step 20)" in out
    return run


def run_files(run: Path) -> tuple[dict[int, dict], dict[int, dict], dict[int, dict]]:
    """metrics.jsonl's steps of the first start and of the resumed one, and samples.jsonl's samples by step."""
    branches: list[dict[int, dict]] = [{}]
    for rec in map(json.loads, (run / runfiles.METRICS_FILE).read_text().splitlines()):
        if runfiles.ROLLBACK_TO in rec:
            branches.append({})
        else:
            branches[-1][rec["step"]] = rec
    samples = {rec["step"]: rec for rec in map(json.loads, (run / runfiles.SAMPLES_FILE).read_text().splitlines())
               if "step" in rec}
    assert len(branches) == 2 and sorted(branches[0]) == list(range(1, 31)) and sorted(branches[1]) == list(
        range(21, 41))
    return branches[0], branches[1], samples


def check_rows(rows: dict[int, dict[str, Any]], logged: dict[int, dict], steps: range) -> None:
    """Every step's loss and lr as metrics.jsonl has them; validation (bits per byte too) only where it changes."""
    assert sorted(s for s, r in rows.items() if "loss" in r) == list(steps)
    for s in steps:
        assert rows[s]["loss"] == pytest.approx(logged[s]["loss"], rel=1e-12)
        assert rows[s]["lr"] == pytest.approx(logged[s]["lr"], rel=1e-12)
    val_steps = sorted(s for s, r in rows.items() if "val_bpb" in r)
    assert val_steps and all(s == steps[0] or s % 10 == 0 for s in val_steps), val_steps
    for s in val_steps:
        assert rows[s]["val_bpb"] == pytest.approx(logged[s]["val_bpb"], rel=1e-12)


def check_sample(row: dict[str, Any], logged: dict) -> None:
    assert row["text"] == logged["text"]
    assert row["truth"] == "".join(logged["truth"]) and row["guess"] == "".join(logged["guess"])
    assert row["right"] == sum(g == t for g, t in zip(logged["guess"], logged["truth"], strict=True))


# --- Weights & Biases -----------------------------------------------------------------------------


def wandb_records(path: Path) -> list[Any]:
    """The records of a W&B run log (.wandb): LevelDB's log format (32 KiB blocks of checksummed, possibly
    fragmented records) after a 7-byte header, each record a wandb_internal_pb2.Record."""
    from wandb.proto import wandb_internal_pb2 as pb

    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    out, pos, buf = [], 7, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if kind == 0 and length == 0:  # the padding at a block's end
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):  # a whole record, or its last fragment
            rec = pb.Record()
            rec.ParseFromString(buf)
            out.append(rec)
    return out


def wandb_run(folder: Path) -> tuple[Any, dict[int, dict[str, Any]], list[dict[str, Any]]]:
    """(the run record, history rows by babyLLM's step merged, every history row in order)."""
    (log,) = folder.glob("run-*.wandb")
    run_rec, rows = None, []
    for rec in wandb_records(log):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            run_rec = rec.run
        elif kind == "history":
            rows.append({"/".join(i.nested_key) or i.key: json.loads(i.value_json) for i in rec.history.item})
    by_step: dict[int, dict[str, Any]] = {}
    for row in rows:
        by_step.setdefault(int(row["step"]), {}).update(row)
    return run_rec, by_step, rows


def test_wandb_offline_end_to_end(corpus, cache, tmp_path):
    pytest.importorskip("wandb", reason="the [wandb] extra is not installed")
    run = train_twice(tmp_path, corpus, cache, "wandb")
    first, second, samples = run_files(run)
    folders = sorted((run / runfiles.WANDB).glob("offline-run-*"))
    assert len(folders) == 2  # one W&B run per start

    rec, rows, _ = wandb_run(folders[0])
    assert rec.display_name == "run" and rec.run_group == "run"
    config = {i.key: json.loads(i.value_json) for i in rec.config.update}
    assert config["model"]["vocab"] == 300 and config["train"]["steps"] == 30
    assert config["run"]["config_name"] == "tiny" and config["run"]["device"] == "cpu"
    assert config["run"]["start_step"] == 0
    check_rows(rows, first, range(1, 31))
    assert any(r.get("system/rss_gib", 0) > 0 for r in rows.values())  # the machine's readings
    sample_steps = sorted(s for s, r in rows.items() if "samples/_type" in r)
    assert sample_steps == [5, 10, 15, 20, 25, 30]
    table = json.loads((folders[0] / "files" / rows[10]["samples/path"]).read_text())
    assert table["columns"] == ["step", "text", "truth", "guess", "right", "of"]
    check_sample(dict(zip(table["columns"], table["data"][0], strict=True)), samples[10])

    rec, rows, ordered = wandb_run(folders[1])
    assert rec.display_name == "run@20" and rec.run_group == "run"
    assert {i.key: json.loads(i.value_json) for i in rec.config.update}["run"]["start_step"] == 20
    assert ordered[0] == {"step": 20, "rollback_to": 20, **{k: v for k, v in ordered[0].items() if k[0] == "_"}}
    check_rows({s: r for s, r in rows.items() if s > 20}, second, range(21, 41))


# --- Trackio --------------------------------------------------------------------------------------


def test_trackio_offline_end_to_end(corpus, cache, tmp_path):
    pytest.importorskip("trackio", reason="the [trackio] extra is not installed")
    run = train_twice(tmp_path, corpus, cache, "trackio")
    first, second, samples = run_files(run)
    db = sqlite3.connect(tmp_path / "trackio" / "babyllm.db")  # the project [log] project names
    configs = {name: json.loads(c) for name, c in db.execute("select run_name, config from configs")}
    assert set(configs) == {"run", "run@20"}
    assert configs["run"]["model"]["vocab"] == 300 and configs["run"]["_Group"] == "run"
    assert configs["run"]["run"]["start_step"] == 0 and configs["run@20"]["run"]["start_step"] == 20

    def rows(name: str) -> tuple[dict[int, dict[str, Any]], list[tuple[int, dict[str, Any]]]]:
        ordered = [(step, json.loads(m)) for step, m in
                   db.execute("select step, metrics from metrics where run_name = ? order by id", (name,))]
        merged: dict[int, dict[str, Any]] = {}
        for step, m in ordered:
            merged.setdefault(step, {}).update(m)
        return merged, ordered

    got, _ = rows("run")
    check_rows(got, first, range(1, 31))
    assert sorted(s for s, r in got.items() if "samples" in r) == [5, 10, 15, 20, 25, 30]
    table = got[10]["samples"]
    assert table["_type"] == "trackio.table"
    check_sample(table["_value"][0], samples[10])
    system = [json.loads(m) for (m,) in db.execute("select metrics from system_metrics where run_name = 'run'")]
    assert system and system[0]["rss_gib"] > 0

    got, ordered = rows("run@20")
    assert ordered[0] == (20, {"rollback_to": 20})  # the discarded steps 21..30 of the first start, marked
    check_rows({s: r for s, r in got.items() if s > 20}, second, range(21, 41))
