"""TensorBoard event files ([log] tensorboard): CRC-32C, the TFRecord framing and the Event protobuf, read
back by an independent pure-Python reader from a tiny real run, a resume, and a disk that fails."""

import json
import math
import shutil
import struct
import time
from pathlib import Path

import pytest

from babyllm import load_config
from babyllm.errors import ConfigError
from babyllm.run import tboard
from babyllm.run.mirrors import SYSTEM_PREFIX
from babyllm.run.runfiles import METRICS_FILE, SYSTEM, TENSORBOARD
from babyllm.school.tutor import Tutor

# --- an independent reader: CRC-32C bit by bit, TFRecord framing, the protobuf wire format ---------


def crc32c_bitwise(data: bytes) -> int:
    crc = 0xFFFFFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 * (crc & 1))
    return crc ^ 0xFFFFFFFF


def unmask(masked: int) -> int:
    rot = (masked - 0xA282EAD8) & 0xFFFFFFFF
    return ((rot >> 17) | (rot << 15)) & 0xFFFFFFFF


def read_records(path: Path) -> list[bytes]:
    """Every record's data, each CRC checked."""
    raw, out, at = path.read_bytes(), [], 0
    while at < len(raw):
        head = raw[at:at + 8]
        (length,) = struct.unpack("<Q", head)
        (head_crc,) = struct.unpack("<I", raw[at + 8:at + 12])
        assert unmask(head_crc) == crc32c_bitwise(head), f"length CRC at byte {at}"
        data = raw[at + 12:at + 12 + length]
        (data_crc,) = struct.unpack("<I", raw[at + 12 + length:at + 16 + length])
        assert unmask(data_crc) == crc32c_bitwise(data), f"data CRC at byte {at}"
        out.append(data)
        at += 16 + length
    assert at == len(raw)
    return out


def fields(data: bytes) -> list[tuple[int, object]]:
    """(field number, value) pairs of one protobuf message: ints, 8-byte and 4-byte blobs, nested bytes."""
    out, at = [], 0

    def varint() -> int:
        nonlocal at
        shift = value = 0
        while True:
            b = data[at]
            at += 1
            value |= (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value

    while at < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            out.append((number, varint()))
        elif wire == 1:
            out.append((number, data[at:at + 8]))
            at += 8
        elif wire == 5:
            out.append((number, data[at:at + 4]))
            at += 4
        elif wire == 2:
            n = varint()
            out.append((number, data[at:at + n]))
            at += n
        else:
            raise AssertionError(f"wire type {wire}")
    return out


def parse_event(data: bytes) -> dict:
    """Event {wall_time 1, step 2, file_version 3, summary 5 {value 1 {tag 1, simple_value 2}}, session_log 7}."""
    ev: dict = {"step": 0, "values": {}}
    for number, value in fields(data):
        if number == 1:
            ev["wall_time"] = struct.unpack("<d", value)[0]
        elif number == 2:
            ev["step"] = value
        elif number == 3:
            ev["file_version"] = value.decode()
        elif number == 5:
            for n, v in fields(value):
                assert n == 1
                tag_value = dict(fields(v))
                ev["values"][tag_value[1].decode()] = struct.unpack("<f", tag_value[2])[0]
        elif number == 7:
            ev["session_start"] = dict(fields(value)).get(1) == 1
    return ev


def event_files(run: Path) -> list[Path]:
    return sorted((run / TENSORBOARD).glob("events.out.tfevents.*"))


def scalars(events: list[dict]) -> dict[str, list[tuple[int, float]]]:
    """What TensorBoard shows: (step, value) per tag, a SessionLog START at S dropping steps >= S first."""
    out: dict[str, list[tuple[int, float]]] = {}
    for ev in events:
        if ev.get("session_start"):
            out = {tag: [p for p in pts if p[0] < ev["step"]] for tag, pts in out.items()}
        for tag, v in ev["values"].items():
            out.setdefault(tag, []).append((ev["step"], v))
    return out


def metrics(run: Path) -> dict[int, dict]:
    """metrics.jsonl's live branch by step (a later line for a step wins)."""
    out: dict[int, dict] = {}
    for line in (run / METRICS_FILE).read_text().splitlines():
        rec = json.loads(line)
        if "rollback_to" in rec:
            out = {s: r for s, r in out.items() if s <= rec["rollback_to"]}
        else:
            out[rec["step"]] = rec
    return out


def f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


# --- the tests ------------------------------------------------------------------------------------


def test_crc32c_known_vectors():
    assert tboard.crc32c(b"123456789") == 0xE3069283
    assert tboard.crc32c(b"") == 0
    assert tboard.crc32c(bytes(32)) == 0x8A9136AA  # RFC 3720's iSCSI vectors
    assert tboard.crc32c(b"\xff" * 32) == 0x62A8AB43
    assert tboard.crc32c(bytes(range(32))) == 0x46DD794E
    blob = bytes(range(256)) * 3
    assert tboard.crc32c(blob) == crc32c_bitwise(blob)
    assert unmask(tboard.masked_crc(blob)) == crc32c_bitwise(blob)


def test_event_encoding_round_trips_through_the_reader(tmp_path):
    data = tboard.event(1234.5, 2**40, values={"loss": 3.25, "lr": 1e-3})
    (tmp_path / "one").write_bytes(tboard.record(data) * 2)
    records = read_records(tmp_path / "one")
    assert records == [data, data]
    ev = parse_event(records[0])
    assert ev["wall_time"] == 1234.5 and ev["step"] == 2**40
    assert ev["values"] == {"loss": 3.25, "lr": f32(1e-3)}
    start = parse_event(tboard.event(1.0, 7, session_start=True))
    assert start["session_start"] and start["step"] == 7 and start["values"] == {}


def test_a_tiny_run_writes_what_metrics_jsonl_has(make_cfg, tmp_path):
    run = tmp_path / "run"
    with Tutor(make_cfg("log.tensorboard=true", "train.steps=25"), run, say=lambda m: None) as t:
        assert t.run() == "finished"
    (path,) = event_files(run)
    events = [parse_event(r) for r in read_records(path)]
    assert events[0]["file_version"] == "brain.Event:2" and events[0]["values"] == {}
    shown, logged = scalars(events[1:]), metrics(run)
    system = {tag for tag in shown if tag.startswith(SYSTEM_PREFIX)}
    assert set(shown) - system == {"loss", "lr", "val_loss", "val_bpb", "unigram_bpb"}
    records = [json.loads(x) for x in (run / METRICS_FILE).read_text().splitlines()]
    readings = [(r["step"], r[SYSTEM]) for r in records if SYSTEM in r]  # the machine's, every few seconds
    assert readings and system == {SYSTEM_PREFIX + k for _, got in readings for k in got}
    assert shown[SYSTEM_PREFIX + "rss_gib"] == [(step, f32(got["rss_gib"])) for step, got in readings]
    for tag in ("loss", "lr"):  # every step
        assert shown[tag] == [(s, f32(logged[s][tag])) for s in range(1, 26)]
    # validations only: the one before step 1 (carried by step 1's record), step 20's and the last step's
    assert [s for s, _ in shown["val_loss"]] == [1, 20, 25]
    assert shown["val_bpb"] == [(s, f32(logged[s]["val_bpb"])) for s in (1, 20, 25)]
    assert len(shown["unigram_bpb"]) == 1
    assert all(math.isfinite(v) for pts in shown.values() for _, v in pts)
    walls = [e["wall_time"] for e in events]
    assert walls == sorted(walls)


def test_a_step_costs_microseconds(tmp_path):
    """Well under 1% of a tiny step (~5 ms on 2 cores): the fastest of three batches of 500 steps."""
    w = tboard.EventWriter(tmp_path, 0, lambda m: None)
    stats = {"step": 0, "loss": 4.0, "lr": 1e-3, "val_loss": 4.1, "val_bpb": 1.2, "unigram_bpb": 4.0}
    best = math.inf
    for _ in range(3):
        t0 = time.perf_counter()
        for i in range(500):
            stats["step"], stats["loss"] = stats["step"] + 1, 4.0 - i * 1e-4
            w.add(stats)
        w.flush()
        best = min(best, (time.perf_counter() - t0) / 500)
    w.close()
    assert best < 50e-6, f"{best * 1e6:.1f} us per step"
    assert len(read_records(w.path)) == 1 + 1500


def test_off_by_default_and_a_bad_value_is_one_line(make_cfg, tmp_path):
    assert load_config("tiny").log.tensorboard is False
    with pytest.raises(ConfigError, match=r"log\.tensorboard = 'yes': expected bool"):
        load_config("tiny", ["log.tensorboard=yes"])
    with Tutor(make_cfg("train.steps=3"), tmp_path / "run", say=lambda m: None) as t:
        t.run()
    assert not (tmp_path / "run" / TENSORBOARD).exists()


def test_resume_purges_the_discarded_steps(make_cfg, tmp_path):
    run = tmp_path / "run"
    opts = ("log.tensorboard=true", "train.save_every=10", "train.keep=5")
    with Tutor(make_cfg(*opts, "train.steps=24"), run, say=lambda m: None) as t:
        t.run()  # saves at 10, 20 and 24 (on the way out)
    for save in run.glob("save-*"):
        if save.name != "save-00000010":
            shutil.rmtree(save)
    with Tutor(make_cfg(*opts, "train.steps=15"), run, resume=True, say=lambda m: None) as t:
        assert t.step_count == 10
        t.run()
    # (one file per start, or one appended to: the same second and process id give the same name)
    events = [parse_event(r) for p in event_files(run) for r in read_records(p)]
    restart = [e for e in events if e.get("session_start")]
    assert [e["step"] for e in restart] == [11]  # steps 11..24 of the first file are discarded
    shown, logged = scalars(events), metrics(run)
    assert shown["loss"] == [(s, f32(logged[s]["loss"])) for s in range(1, 16)]


def test_a_rollback_purges_the_steps_after_the_save(make_cfg, tmp_path):
    run = tmp_path / "run"
    with Tutor(make_cfg("log.tensorboard=true", "train.save_every=0"), run, say=lambda m: None) as t:
        for _ in range(6):
            t.recorder.record(t.step())
        t.save()
        for _ in range(4):
            t.recorder.record(t.step())
        t._rollback()  # (the cockpit's r key after an alarm)
        assert t.step_count == 6
        for _ in range(3):
            t.recorder.record(t.step())
    events = [parse_event(r) for p in event_files(run) for r in read_records(p)]
    assert [e["step"] for e in events if e.get("session_start")] == [7]
    shown, logged = scalars(events), metrics(run)
    assert shown["loss"] == [(s, f32(logged[s]["loss"])) for s in range(1, 10)]
    assert sum(1 for e in events if e["step"] == 8 and "loss" in e["values"]) == 2  # both branches' step 8 on disk


def test_a_folder_that_cannot_be_made_is_one_event_and_training_goes_on(make_cfg, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / TENSORBOARD).write_text("a file where the folder would go")
    with Tutor(make_cfg("log.tensorboard=true", "train.steps=5"), run, say=lambda m: None) as t:
        assert t.run() == "finished"
        errors = [e for e in t.snapshot().events if e.kind == "error"]
    assert len(errors) == 1 and TENSORBOARD in errors[0].message and "logging is off" in errors[0].message
    assert max(metrics(run)) == 5


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a disk that is always full)")
def test_a_full_disk_drops_the_file_once(tmp_path):
    said: list[str] = []
    w = tboard.EventWriter(tmp_path, 0, said.append)
    assert w.active and said == []
    w._file = open("/dev/full", "ab")  # noqa: SIM115 - the writer closes it when it drops the file
    for step in range(1, 4):
        w.add({"step": step, "loss": 1.0, "lr": 1e-3})
        w.flush()
    w.close()
    assert not w.active and len(said) == 1 and "No space left" in said[0] and "logging is off" in said[0]
