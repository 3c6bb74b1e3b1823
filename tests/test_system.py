"""babyllm.system (the training process's resources), their trip in the snapshot, and the system pane."""

from __future__ import annotations

import json
import math
import os
import sys
import types
from pathlib import Path

import pytest
import torch

from babyllm import system
from babyllm.run.follower import Watcher
from babyllm.school.tutor import Tutor
from babyllm.snapshot import Snapshot
from babyllm.socket import wire
from babyllm.socket.client import ControlClient
from babyllm.socket.endpoint import Endpoint
from babyllm.system import BY_KEY, GPU_KEYS, READINGS, SystemSampler, machine_memory, rss_bytes, system_line
from tui.app import WIDE_COLUMNS, WIDE_ROWS, CockpitApp
from tui.fake import FAKE_CPU_SYSTEM, FAKE_GPU_SYSTEM, FAKE_SYSTEM, FakeTutor
from tui.widgets.plotting import MIN_HEIGHT, Plot
from tui.widgets.system import NO_READINGS, SystemView

sys.path.insert(0, str(Path(__file__).parent))
from runhelpers import append, line, pilot_wait  # noqa: E402

SMALL = (80, 24)
BIG = (160, 50)
CPU_KEYS = {"cpu_percent", "cpu_cores", "rss_gib", "mem_total_gib", "mem_available_gib"}


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def burn(cpu_seconds: float) -> None:
    start = os.times()
    while (os.times().user + os.times().system) - (start.user + start.system) < cpu_seconds:
        sum(i * i for i in range(1000))


# --- the sampler on this machine ------------------------------------------------------------------


def test_the_table_names_each_reading_once_with_a_format():
    assert len(BY_KEY) == len(READINGS) and all(r.label and r.fmt for r in READINGS)
    assert set(GPU_KEYS) == {r.key for r in READINGS if r.key.startswith("gpu_")}
    assert BY_KEY["rss_gib"].text(1.234) == "1.23 GiB" and BY_KEY["cpu_percent"].text(187.4) == "187%"
    assert BY_KEY["gpu_temp_c"].text(61) == "61°C" and BY_KEY["mem_total_gib"].text(math.nan) == "?"


def test_readings_on_this_cpu_machine_are_plausible_and_have_no_gpu():
    sampler = SystemSampler("cpu")
    burn(0.05)
    r = sampler.read()
    assert set(r) == CPU_KEYS and all(math.isfinite(v) for v in r.values())
    assert r["cpu_cores"] == len(os.sched_getaffinity(0))
    assert 0 < r["cpu_percent"] <= 100 * r["cpu_cores"] * 1.1  # this thread was busy for part of the time
    assert 0 < r["mem_available_gib"] <= r["mem_total_gib"] < 1 << 14
    assert 0.001 < r["rss_gib"] < r["mem_total_gib"]  # (a Python process with torch: tens of MiB at least)
    assert system_line(r).startswith("CPU ") and "RSS " in system_line(r) and "GPU" not in system_line(r)


def test_readings_are_cached_for_a_second():
    clock = Clock()
    sampler = SystemSampler("cpu", clock=clock)
    first = sampler.read()
    clock.now += 0.9
    assert sampler.read() is first
    clock.now += 0.2
    second = sampler.read()
    assert second is not first and set(second) == CPU_KEYS


def test_memory_falls_back_without_proc(tmp_path):
    assert rss_bytes(tmp_path / "no-statm") >= rss_bytes() * 0.5  # getrusage's peak, in bytes
    assert machine_memory(tmp_path / "no-meminfo") == {}
    (tmp_path / "meminfo").write_text("MemTotal:       2097152 kB\nMemFree:  1 kB\nMemAvailable:    1048576 kB\n")
    assert machine_memory(tmp_path / "meminfo") == {"mem_total_gib": 2.0, "mem_available_gib": 1.0}
    (tmp_path / "garbled").write_text("MemTotal: lots\n")
    assert machine_memory(tmp_path / "garbled") == {}


def test_a_failing_part_is_left_out_never_raised(monkeypatch):
    def broken() -> float:
        raise OSError("no clock")

    sampler = SystemSampler("cpu")
    monkeypatch.setattr(system, "_cpu_seconds", broken)
    r = sampler.read()
    assert "cpu_percent" not in r and {"rss_gib", "mem_total_gib"} <= set(r)


# --- the GPU: torch.cuda's management-library queries when they answer, torch's statistics otherwise ----


@pytest.fixture
def fake_cuda(monkeypatch):
    """torch.cuda as if one 80 GiB GPU held 3 GiB reserved, 2 GiB allocated."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "memory_reserved", lambda i: 3 << 30)
    monkeypatch.setattr(torch.cuda, "memory_allocated", lambda i: 2 << 30)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: types.SimpleNamespace(total_memory=80 << 30))


@pytest.fixture
def fake_smi(monkeypatch, fake_cuda):
    """torch.cuda's queries as if the management library answered: 87%, 12 GiB used, 61 °C, 312.5 W; each
    call recorded with the device it was asked about; set `fail` to the name of one that raises."""
    calls: list = []
    state = types.SimpleNamespace(calls=calls, fail="")

    def query(name, result):
        def call(device=None):
            calls.append((name, device))
            if name == state.fail:
                raise RuntimeError(f"{name} failed")  # (what torch raises without nvidia-ml-py is ModuleNotFoundError)
            return result
        return call

    for name, result in (("utilization", 87), ("device_memory_used", 12 << 30), ("temperature", 61),
                         ("power_draw", 312_500)):
        monkeypatch.setattr(torch.cuda, name, query(name, result))
    return state


def test_gpu_readings_come_from_torchs_queries_for_the_training_device(monkeypatch, fake_smi):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-5f3e1c2a-aaaa-bbbb-cccc-0123456789ab,MIG-1")  # UUIDs and MIG
    clock = Clock()
    sampler = SystemSampler("cuda:1", clock=clock)
    r = sampler.read()
    assert set(r) >= CPU_KEYS
    assert {k: r[k] for k in GPU_KEYS if k in r} == {
        "gpu_util": 87.0, "gpu_mem_used_gib": 12.0, "gpu_mem_total_gib": 80.0, "gpu_temp_c": 61.0,
        "gpu_power_w": 312.5}
    assert {device for _, device in fake_smi.calls} == {1}  # torch's own index: torch maps it to the driver's
    clock.now += 1.0
    sampler.read()
    assert len(fake_smi.calls) == 8  # sampled again after a second, not cached for good


@pytest.mark.parametrize("fail", ["utilization", "device_memory_used", "power_draw"])
def test_the_queries_failing_falls_back_to_torch(fake_smi, fail):
    fake_smi.fail = fail
    r = SystemSampler("cuda").read()
    assert {k: r[k] for k in GPU_KEYS if k in r} == {
        "gpu_mem_used_gib": 3.0, "gpu_mem_allocated_gib": 2.0, "gpu_mem_total_gib": 80.0}
    assert set(r) >= CPU_KEYS


def test_the_queries_failing_later_falls_back_too(fake_smi):
    clock = Clock()
    sampler = SystemSampler("cuda:0", clock=clock)
    assert sampler.read()["gpu_util"] == 87.0
    fake_smi.fail = "temperature"  # the driver went away
    clock.now += 1.0
    r = sampler.read()
    assert "gpu_util" not in r and r["gpu_mem_allocated_gib"] == 2.0
    fake_smi.fail = ""
    clock.now += 1.0
    assert "gpu_util" not in sampler.read()  # not asked again: torch's numbers from then on


def test_no_management_library_and_no_cuda_means_no_gpu_readings(monkeypatch):
    monkeypatch.setattr(torch.cuda, "utilization", lambda device=None: (_ for _ in ()).throw(ModuleNotFoundError()))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    r = SystemSampler("cuda:0").read()
    assert set(r) == CPU_KEYS


# --- the readings travel with the run -------------------------------------------------------------


def test_snapshot_json_round_trip_of_system():
    readings = {**FAKE_SYSTEM, "gpu_power_w": math.nan}
    snap = Snapshot(step=3, tokens=30, state="running", stats={"loss": 2.0}, system=readings)
    back = wire.snapshot_from_json(wire.decode(wire.encode({"snapshot": wire.snapshot_to_json(snap)}))["snapshot"])
    assert set(back.system) == set(readings) and math.isnan(back.system["gpu_power_w"])
    assert {k: v for k, v in back.system.items() if k != "gpu_power_w"} == {
        k: v for k, v in readings.items() if k != "gpu_power_w"}
    old = wire.snapshot_to_json(snap)
    del old["system"]  # a run from before the field
    assert wire.snapshot_from_json(json.loads(json.dumps(old))).system == {}


def test_the_tutor_puts_its_readings_in_the_snapshot(make_cfg, tmp_path):
    with Tutor(make_cfg(), tmp_path / "run", say=lambda m: None) as t:
        r = t.snapshot().system
    assert set(r) == CPU_KEYS and all(math.isfinite(v) for v in r.values())


def test_an_attached_client_gets_the_training_sides_readings(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    ep = Endpoint(run, FakeTutor(system=FAKE_CPU_SYSTEM), log=lambda m: None)
    ep.start()
    try:
        with ControlClient(run) as c:
            assert c.status().system == FAKE_CPU_SYSTEM
    finally:
        ep.close()


# --- the pane -------------------------------------------------------------------------------------


def pane_text(app: CockpitApp) -> str:
    return app.pane("system").query_one(SystemView).render().plain


@pytest.mark.parametrize("readings, gpu", [(FAKE_CPU_SYSTEM, False), (FAKE_SYSTEM, True)])
async def test_the_pane_shows_cpu_and_memory_and_the_gpu_only_when_given(readings, gpu):
    app = CockpitApp(lambda publish, say: FakeTutor(publish=publish, system=readings), handle_signals=False)
    async with app.run_test(size=BIG) as pilot:
        await pilot_wait(pilot, lambda: "CPU" in pane_text(app))
        text = pane_text(app)
        assert "187% of 2 cores" in text and "10.8/31.2 GiB" in text  # 31.2 - 20.4 in use
        assert "█" in text  # bars fit at this width
        assert str(app.pane("system").border_subtitle) == "RSS 1.23 GiB"
        assert ("GPU" in text) is gpu
        if gpu:
            assert "87%  61°C  312 W" in text and "12.3/79.6 GiB" in text
        assert app.pane("system").region.height >= len(text.splitlines()) + 2  # every line has room
    assert set(FAKE_GPU_SYSTEM) <= set(GPU_KEYS)


async def test_at_the_wide_layouts_least_size_the_pane_and_the_loss_plot_fit():
    app = CockpitApp(lambda publish, say: FakeTutor(publish=publish), handle_signals=False)
    async with app.run_test(size=(WIDE_COLUMNS, WIDE_ROWS)) as pilot:
        await pilot_wait(pilot, lambda: "GPU mem" in pane_text(app))
        await pilot.pause(0.2)
        assert not app.compact
        assert app.pane("system").region.height == len(pane_text(app).splitlines()) + 2 == 6
        assert app.pane("loss").query_one(Plot).size.height >= MIN_HEIGHT  # the plot, not "enlarge the terminal"
        assert app.pane("windows").region.height >= 9  # its seven bars
        assert "█" in pane_text(app)


async def test_the_pane_reads_torchs_gpu_memory_too():
    readings = {**FAKE_CPU_SYSTEM, "gpu_mem_used_gib": 3.0, "gpu_mem_allocated_gib": 2.0, "gpu_mem_total_gib": 80.0}
    app = CockpitApp(lambda publish, say: FakeTutor(publish=publish, system=readings), handle_signals=False)
    async with app.run_test(size=SMALL) as pilot:
        await pilot.press("8")
        await pilot_wait(pilot, lambda: "GPU mem" in pane_text(app))
        assert "3.0/80.0 GiB (2.0 GiB allocated)" in pane_text(app) and "GPU  " not in pane_text(app)


async def test_a_file_following_viewer_says_it_has_no_readings(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    append(run / "metrics.jsonl", "".join(line(s) for s in range(1, 6)))
    app = CockpitApp(lambda publish, say: Watcher(run, publish=publish, say=say, poll=0.05),
                     viewer=True, handle_signals=False)
    async with app.run_test(size=SMALL) as pilot:
        await pilot_wait(pilot, lambda: app.snapshot is not None and app.snapshot.step == 5)
        await pilot.press("8")
        await pilot_wait(pilot, lambda: app.pane("system").snapshot is not None)
        assert pane_text(app) == NO_READINGS and app.pane("system").border_subtitle == ""
