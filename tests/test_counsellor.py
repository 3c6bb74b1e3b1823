"""Tests for the Counsellor: section timing, the decorator, the disabled path and the log."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from babyllm.school.counsellor import Counsellor


def test_section_timing_roughly_right() -> None:
    c = Counsellor()
    with c.section("x"):
        time.sleep(0.02)
    t = c.timings()
    assert set(t) == {"t_x"}
    assert 15.0 <= t["t_x"] <= 200.0


def test_ema_moves_towards_new_samples() -> None:
    c = Counsellor(alpha=0.5)
    c._record("x", 10.0)
    assert c.timings()["t_x"] == 10.0  # first sample sets it
    c._record("x", 20.0)
    assert c.timings()["t_x"] == 15.0
    assert c.counts() == {"t_x": 2}


def test_nested_sections_timed_independently() -> None:
    c = Counsellor()
    with c.section("outer"):
        with c.section("inner"):
            time.sleep(0.01)
        time.sleep(0.01)
    t = c.timings()
    assert 8.0 <= t["t_inner"] < t["t_outer"]
    assert t["t_outer"] >= 18.0


def test_decorator() -> None:
    c = Counsellor()

    @c.timed("data")
    def load(n: int, *, scale: int = 1) -> int:
        """Docstring survives."""
        time.sleep(0.005)
        return n * scale

    assert load(3, scale=2) == 6
    assert load.__name__ == "load" and load.__doc__ == "Docstring survives."
    assert c.counts() == {"t_data": 1}
    assert c.timings()["t_data"] >= 4.0


def test_disabled_records_nothing() -> None:
    c = Counsellor(enabled=False)
    first, second = c.section("a"), c.section("b")
    assert first is second  # shared no-op: no allocation per call
    with first:
        time.sleep(0.001)

    @c.timed("f")
    def f() -> int:
        return 1

    assert f() == 1
    assert c.timings() == {} and c.counts() == {}


def test_enable_toggle_at_runtime() -> None:
    c = Counsellor(enabled=False)

    @c.timed("f")
    def f() -> None:
        pass

    f()
    c.enabled = True
    f()
    assert c.counts() == {"t_f": 1}


def test_sync_called_before_each_clock_read() -> None:
    calls: list[str] = []
    c = Counsellor(sync=lambda: calls.append("sync"))
    with c.section("x"):
        calls.append("body")
    assert calls == ["sync", "body", "sync"]


def test_exception_propagates_and_is_not_recorded() -> None:
    c = Counsellor()
    with pytest.raises(RuntimeError), c.section("boom"):
        raise RuntimeError("x")
    assert c.timings() == {}


def test_reset() -> None:
    c = Counsellor()
    with c.section("x"):
        pass
    assert "t_x" in c.timings()
    c.reset()
    assert c.timings() == {} and c.counts() == {}


def test_timings_is_a_copy() -> None:
    c = Counsellor()
    with c.section("x"):
        pass
    c.timings()["t_x"] = -1.0
    assert c.timings()["t_x"] >= 0.0


def test_bad_alpha() -> None:
    with pytest.raises(ValueError):
        Counsellor(alpha=0.0)


def test_log_written(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "debug.log"
    c = Counsellor(log_path=path)
    assert not path.exists()  # opened lazily
    c.log("hello")
    c.log("world")
    assert path.read_text(encoding="utf-8").count("\n") == 2  # line-buffered: already on disk
    c.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0].endswith("hello") and lines[1].endswith("world")
    assert lines[0][:4].isdigit()  # timestamped
    c.log("again")  # reopens in append mode
    c.close()
    c.close()  # idempotent
    assert len(path.read_text(encoding="utf-8").splitlines()) == 3


def test_log_without_path_is_noop(tmp_path: Path) -> None:
    c = Counsellor()
    c.log("nothing")
    c.close()
    assert list(tmp_path.iterdir()) == []


def test_log_independent_of_enabled(tmp_path: Path) -> None:
    path = tmp_path / "d.log"
    with Counsellor(enabled=False, log_path=path) as c:
        c.log("still logs")
    assert "still logs" in path.read_text(encoding="utf-8")


def test_log_thread_safe(tmp_path: Path) -> None:
    path = tmp_path / "t.log"
    c = Counsellor(log_path=path)

    def worker(k: int) -> None:
        for i in range(200):
            c.log(f"w{k} line {i}")
            with c.section(f"s{k}"):
                pass

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    c.close()
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 800
    assert all(" line " in line for line in lines)  # no interleaved fragments
    assert c.counts() == {f"t_s{k}": 200 for k in range(4)}


def test_cuda_sync_helper_with_fake_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    import types

    from babyllm.school.counsellor import cuda_sync

    synced: list[object] = []
    fake = types.ModuleType("torch")
    fake.device = lambda d: types.SimpleNamespace(  # type: ignore[attr-defined]
        type=str(d).split(":")[0])
    fake.cuda = types.SimpleNamespace(synchronize=synced.append)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", fake)  # keep the suite fast and GPU-free
    assert cuda_sync("cpu") is None
    sync = cuda_sync("cuda:0")
    assert sync is not None
    sync()
    assert len(synced) == 1
